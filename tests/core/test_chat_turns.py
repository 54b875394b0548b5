"""Linked messages through a chat service with a turn store, as the app runs it (SQLite and PostgreSQL).

A message that applies no tag is written by one `write_message`: its suggestions are stored once, a message
handled again gets the same card from storage, a regional tag stays with its region, and the customer's name and
region are reused for a few seconds (CACHE_SECONDS) like the conversation's link.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select

from core.chat.commands import parse_command
from core.chat.service import CACHE_SECONDS, AppliedState, ChatContext, ChatService, SuggestionState
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules
from core.types import Role, User
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.statements import count_statements
from storage.turns import SqlTurnStore
from tagging.loader import load_taxonomy_text
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy

NOW = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
AGENT = User("agent-王丽", Role.AGENT, display_name="王丽")
TAXONOMY = """
version: 1
regions: [华北, 华东]
dimensions:
  - key: need
    name: 需求
    tags:
      - name: 采暖设备意向
        regions: [华北]
        keywords: [暖气]
      - name: 询价客户
        keywords: [报价]
      - name: 售后工单
        keywords: [退款]
        auto_apply: true
      - name: 紧急工单
        keywords: [投诉]
        auto_apply: true
  - key: level
    name: 等级
    exclusive: true
    tags:
      - name: 普通客户
        keywords: [普通]
        auto_apply: true
      - name: 大客户
        keywords: [大单]
        auto_apply: true
"""


def _service(database: Database, taxonomy: Taxonomy) -> ChatService:
    matcher = Matcher.build(taxonomy)
    return ChatService(
        database,
        SqlChannelStore(database.engine),
        lambda: taxonomy,
        lambda: matcher,
        TaggingRules(tz=UTC, hard_cap=100),
        turns=SqlTurnStore(database.engine),
    )


def _ctx(conversation: str = "a:私聊-王丽") -> ChatContext:
    return ChatContext("teams", conversation, AGENT, NOW, False)


async def _linked(database: Database, chat: ChatService, region: str, conversation: str = "a:私聊-王丽") -> int:
    name = f"上海明远科技-{conversation}"
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name=name, region=region), NOW)
    await chat.run(_ctx(conversation), parse_command(f"link {name}"))
    return customer.id


async def _suggested(database: Database, customer_id: int) -> list[str]:
    s = t.suggestions.c
    async with database.engine.connect() as conn:
        return list((await conn.scalars(select(s.tag).where(s.customer_id == customer_id).order_by(s.id))).all())


async def test_a_message_is_suggested_once_and_handled_again_gets_the_same_card(database: Database) -> None:
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    cid = await _linked(database, chat, "华北")
    [state] = await chat.respond(_ctx(), "teams:m-1", "暖气的报价发我一下")
    assert isinstance(state, SuggestionState) and state.customer.id == cid
    assert [r.tag for r in state.records] == ["采暖设备意向", "询价客户"]
    # Handled again (its reply was never confirmed sent): the same card from what was stored, nothing new.
    [again] = await chat.respond(_ctx(), "teams:m-1", "暖气的报价发我一下")
    assert isinstance(again, SuggestionState) and again.records == state.records
    assert await _suggested(database, cid) == ["采暖设备意向", "询价客户"]
    async with database.engine.connect() as conn:
        kept = await conn.scalar(select(func.count()).select_from(t.learning_messages))
    assert kept == 0  # no learning store given: no text kept


async def test_a_regional_tag_is_suggested_only_to_customers_of_its_region(database: Database) -> None:
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    east = await _linked(database, chat, "华东", "a:私聊-华东")
    [state] = await chat.respond(_ctx("a:私聊-华东"), "teams:m-2", "暖气的报价发我一下")
    assert isinstance(state, SuggestionState) and [r.tag for r in state.records] == ["询价客户"]
    assert await _suggested(database, east) == ["询价客户"]


async def test_the_customer_is_reused_for_a_few_seconds_then_read_again(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("core.chat.service.time.monotonic", lambda: clock[0])
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    cid = await _linked(database, chat, "华东")
    [first] = await chat.respond(_ctx(), "teams:m-3", "请给个报价")
    assert isinstance(first, SuggestionState)
    async with database.unit_of_work() as uow:  # renamed and moved to 华北 elsewhere (the admin API, a replica)
        await uow.customers.update(cid, CustomerDraft(name="明远科技（北京）", region="华北"), NOW)

    with count_statements(database.engine) as count:
        [reused] = await chat.respond(_ctx(), "teams:m-4", "暖气的报价发我一下")
    assert isinstance(reused, SuggestionState) and reused.customer == first.customer
    assert [r.tag for r in reused.records] == ["询价客户"]  # still 华东 for these seconds
    statements, _writes, _reads = count.per(1)
    postgres = database.engine.dialect.name == "postgresql"
    # No customer read: the write alone (here without learning or events). SQLite: one trip of BEGIN IMMEDIATE,
    # the suggestion insert and the look for suggestions stored before.
    assert statements == (1 if postgres else 3)

    clock[0] += CACHE_SECONDS + 1
    [fresh] = await chat.respond(_ctx(), "teams:m-5", "暖气的报价发我一下")
    assert isinstance(fresh, SuggestionState)
    assert (fresh.customer.name, fresh.customer.region) == ("明远科技（北京）", "华北")
    assert [r.tag for r in fresh.records] == ["采暖设备意向", "询价客户"]


async def test_a_message_applying_a_tag_reuses_the_customer_and_reads_the_tags_that_decide_it(
    database: Database,
) -> None:
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    cid = await _linked(database, chat, "华东")
    await chat.respond(_ctx(), "teams:m-6", "请给个报价")  # reads the customer
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split())[:60])

    event.listen(database.engine.sync_engine, "before_cursor_execute", seen)
    try:
        [applied] = await chat.respond(_ctx(), "teams:m-7", "设备坏了要退款")
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", seen)
    assert isinstance(applied, AppliedState) and [e.tag for e in applied.entries] == ["售后工单"]
    assert not [s for s in statements if s.startswith("SELECT customers.")], statements
    # The policy's read: the count of held tags joined to the rows that decide this one.
    assert [s for s in statements if s.startswith("SELECT anon_1.held, tag_assignments.")], statements
    async with database.unit_of_work(read_only=True) as uow:
        assert [a.tag for a in await uow.assignments.active_for(cid)] == ["售后工单"]


async def test_a_message_applying_one_tag_is_one_read_and_one_write_on_postgres(
    database: Database, postgres_transactions: list[str]
) -> None:
    """PostgreSQL writes the applied tag, its event, the suggestion, text and message event in one statement
    after the policy's read, with no transaction around them. SQLite applies it in one transaction."""
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    cid = await _linked(database, chat, "华东")
    await chat.respond(_ctx(), "teams:m-8", "请给个报价")  # reads the customer
    began = len(postgres_transactions)
    with count_statements(database.engine) as count:
        [applied] = await chat.respond(_ctx(), "teams:m-9", "设备坏了要退款")
    assert isinstance(applied, AppliedState) and [e.tag for e in applied.entries] == ["售后工单"]
    statements, writes, _reads = count.per(1)
    if database.engine.dialect.name == "postgresql":
        assert (statements, writes, len(postgres_transactions) - began) == (2, 1, 0)
    [again] = await chat.respond(_ctx(), "teams:m-9", "设备坏了要退款")  # handled again: the same card
    assert isinstance(again, AppliedState) and again.entries == applied.entries
    async with database.unit_of_work(read_only=True) as uow:
        assert [a.tag for a in await uow.assignments.active_for(cid)] == ["售后工单"]
        events = await uow.events.for_customer(cid, 0, 10)
    assert [(e.kind.value, e.tag, e.evidence.get("message_key")) for e in events] == [
        ("added", "售后工单", "teams:m-9")
    ]


async def test_a_replacement_or_two_tags_at_once_take_the_transaction_and_end_the_same(
    database: Database,
) -> None:
    """What the one statement does not plan (an exclusive sibling to replace, two tags applied by one message)
    is applied in a transaction, as before; the outcome is the same on both databases."""
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    cid = await _linked(database, chat, "华东")
    [first] = await chat.respond(_ctx(), "teams:m-10", "普通的单子")
    [second] = await chat.respond(_ctx(), "teams:m-11", "这是大单")
    [both] = await chat.respond(_ctx(), "teams:m-12", "投诉，要退款")
    assert isinstance(first, AppliedState) and [e.tag for e in first.entries] == ["普通客户"]
    assert isinstance(second, AppliedState) and [e.tag for e in second.entries] == ["大客户"]
    assert isinstance(both, AppliedState) and sorted(e.tag for e in both.entries) == ["售后工单", "紧急工单"]
    async with database.unit_of_work(read_only=True) as uow:
        assert sorted(a.tag for a in await uow.assignments.active_for(cid)) == ["售后工单", "大客户", "紧急工单"]
        events = await uow.events.for_customer(cid, 0, 10)
    assert sorted((e.kind.value, e.tag, e.previous) for e in events) == [
        ("added", "售后工单", None), ("added", "普通客户", None), ("added", "紧急工单", None),
        ("replaced", "大客户", "普通客户"),
    ]


async def test_reads_after_the_cache_expires_are_single_statements_without_a_transaction_on_postgres(
    database: Database, postgres_transactions: list[str]
) -> None:
    """The conversation's link, the agent and the customer are read again once their cached copies expire: each
    one SELECT, with no BEGIN and ROLLBACK around it on PostgreSQL (SQLite reads in a deferred transaction)."""
    chat = _service(database, load_taxonomy_text(TAXONOMY))
    cid = await _linked(database, chat, "华东")
    assert (await chat.actor(AGENT.id, "王丽", NOW)).display_name == "王丽"  # stored: a new user writes once
    await chat.respond(_ctx(), "teams:m-20", "请给个报价")
    # As CACHE_SECONDS passing would (a clock moved forward would also age the pool's idle connections).
    chat.forget_user(AGENT.id)
    chat._links.forget(("teams", "a:私聊-王丽"))
    chat._customers.forget(cid)
    began = len(postgres_transactions)
    with count_statements(database.engine) as count:
        user = await chat.actor(AGENT.id, "王丽", NOW)
        [card] = await chat.respond(_ctx(), "teams:m-21", "请给个报价")
    assert user.display_name == "王丽" and isinstance(card, SuggestionState)
    statements, writes, reads = count.per(1)
    if database.engine.dialect.name == "postgresql":
        # the user, the link, the customer and the message's one write; no transaction at all
        assert (statements, writes, reads, len(postgres_transactions) - began) == (4, 1, 0, 0)
    else:  # the link in a deferred read transaction; the user and the customer read on their own; the write
        assert reads <= 1 and writes == 1, (statements, writes, reads)
