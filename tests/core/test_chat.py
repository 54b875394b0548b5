"""core.chat.service: the ChatService on SQLite and PostgreSQL (commands, card actions, undo, links, activity)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cards.present import present
from core import verbs
from core.alerts.ports import NewOutboxMessage
from core.alerts.selection import AlertNotice, Reason
from core.chat.commands import parse_command
from core.chat.service import (
    DECISIONS,
    PAGE_SIZE,
    AlertResult,
    AppliedState,
    BadAction,
    ChatContext,
    ChatResult,
    ChatService,
    ChoiceResult,
    ErrorResult,
    HelpResult,
    LinkResult,
    SearchResult,
    SuggestionState,
    SuggestResult,
    SummaryResult,
    TagResult,
    _int,
)
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.tags.summary import CustomerSummary
from core.tags.users import set_role
from core.types import Role, Source, SuggestionStatus, User
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=SHANGHAI)
RULES = TaggingRules(tz=SHANGHAI, hard_cap=100)
AGENT = User("agent-王丽", Role.AGENT, display_name="王丽")
MANAGER = User("mgr-张伟", Role.MANAGER, display_name="张经理")


def _service(database: Database, taxonomy: Taxonomy) -> ChatService:
    matcher = Matcher.build(taxonomy)
    return ChatService(
        database,
        SqlChannelStore(database.engine),
        lambda: taxonomy,
        lambda: matcher,
        RULES,
        activity=SqlAlertStore(database.engine),
    )


def _ctx(
    actor: User = AGENT, conversation: str = "a:私聊-王丽", *, shared: bool = False, now: datetime = NOW
) -> ChatContext:
    return ChatContext("teams", conversation, actor, now, shared)


async def _customers(database: Database, *names: str, region: str = "") -> list[int]:
    async with database.unit_of_work() as uow:
        return [(await uow.customers.add(CustomerDraft(name=n, region=region), NOW)).id for n in names]


async def _run(chat: ChatService, ctx: ChatContext, text: str) -> ChatResult:
    return await chat.run(ctx, parse_command(text))


async def _held(database: Database, customer_id: int) -> set[str]:
    async with database.unit_of_work() as uow:
        return {a.tag for a in await uow.assignments.active_for(customer_id)}


def _tags(summary: CustomerSummary) -> set[str]:
    return {tag.name for group in summary.groups for tag in group.tags}


# ---------------------------------------------------------------- pure pieces


def test_every_chat_action_verb_is_a_card_verb() -> None:
    assert set(DECISIONS) <= verbs.ALL_VERBS
    assert {verbs.SUGGESTION_ACCEPT, verbs.SUGGESTION_REJECT, verbs.ASSIGNMENT_UNDO} <= set(DECISIONS)


def test_shared_conversations_are_rendered_for_the_least_privileged_reader() -> None:
    assert _ctx(MANAGER, "19:频道", shared=True).viewer.role is Role.AGENT
    assert _ctx(MANAGER).viewer.role is Role.MANAGER


@pytest.mark.parametrize("value", [None, "十二", True, -1])
def test_bad_card_data_is_refused_with_the_key_named(value: object) -> None:
    with pytest.raises(BadAction, match="suggestion_id"):
        _int({"suggestion_id": value}, "suggestion_id")
    assert _int({"suggestion_id": "12"}, "suggestion_id") == 12


# ---------------------------------------------------------------- commands


async def test_each_command_returns_its_result(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    tagged = await _run(chat, _ctx(), "tag 上海明远科技 +VIP客户 +询价客户")
    assert isinstance(tagged, TagResult)
    assert [(c.tag, c.outcome) for c in tagged.changes] == [("VIP客户", "added"), ("询价客户", "added")]
    assert _tags(tagged.summary) == {"VIP客户", "询价客户"}

    shown = await _run(chat, _ctx(), "查看 上海明远科技")
    assert isinstance(shown, SummaryResult) and _tags(shown.summary) == {"VIP客户", "询价客户"}

    found = await _run(chat, _ctx(), "find VIP客户 AND 询价客户")
    assert isinstance(found, SearchResult) and [h.customer.id for h in found.hits] == [cid] and found.total == 1

    dry = await _run(chat, _ctx(), "suggest 我要退款，麻烦加急")
    assert isinstance(dry, SuggestResult) and {s.tag for s in dry.suggestions} == {"售后工单", "紧急工单"}

    assert isinstance(await _run(chat, _ctx(), "帮助"), HelpResult)
    unknown = await chat.respond(_ctx(), "teams:m-0", "今天天气不错")
    assert unknown == (HelpResult(note="unknown"),)

    removed = await _run(chat, _ctx(), "tag 上海明远科技 -询价客户")
    assert isinstance(removed, TagResult) and removed.changes[0].outcome == "removed"
    assert await _held(database, cid) == {"VIP客户"}


async def test_bad_input_is_an_error_and_changes_nothing(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    refused = await _run(chat, _ctx(), "tag 上海明远科技 +VIP客户 +不存在的标签")
    assert isinstance(refused, ErrorResult) and "不存在的标签" in refused.detail
    assert await _held(database, cid) == set()
    missing = await _run(chat, _ctx(), "tags 不存在的公司")
    assert isinstance(missing, ErrorResult) and "不存在的公司" in missing.detail
    bad = await _run(chat, _ctx(), "find VIP客户 AND (")
    assert isinstance(bad, ErrorResult) and bad.hint is not None


async def test_choice_then_choose_reruns_the_original_command(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    shanghai, shenzhen = await _customers(database, "华为上海", "华为深圳")
    choice = await _run(chat, _ctx(), "打标签 华为 +VIP客户 -沉默客户")
    assert isinstance(choice, ChoiceResult)
    assert {c.id for c in choice.candidates} == {shanghai, shenzhen}
    chosen = await chat.decide(_ctx(), verbs.CUSTOMER_CHOOSE, {"customer_id": shenzhen, **choice.context})
    assert isinstance(chosen, TagResult) and chosen.summary.customer.id == shenzhen
    assert {(c.tag, c.outcome) for c in chosen.changes} == {("VIP客户", "added"), ("沉默客户", "not_held")}
    assert await _held(database, shenzhen) == {"VIP客户"} and await _held(database, shanghai) == set()
    bad = await chat.decide(_ctx(), verbs.CUSTOMER_CHOOSE, {"customer_id": shenzhen, "verb": "删库"})
    assert isinstance(bad, ErrorResult) and "删库" in bad.detail


async def test_search_pages(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    ids = await _customers(database, *[f"客户{i:02d}" for i in range(PAGE_SIZE + 2)])
    async with database.unit_of_work() as uow:
        for cid in ids:
            await apply_tag(uow, sample_taxonomy, RULES, cid, "活跃客户", actor="agent", source=Source.MANUAL, now=NOW)
    first = await _run(chat, _ctx(), "查找 活跃客户")
    assert isinstance(first, SearchResult)
    assert (first.total, first.page, len(first.hits)) == (PAGE_SIZE + 2, 1, PAGE_SIZE)
    second = await chat.decide(_ctx(), verbs.SEARCH_PAGE, {"query": "活跃客户", "page": 2})
    assert isinstance(second, SearchResult) and second.page == 2
    assert [h.customer.id for h in second.hits] == ids[PAGE_SIZE:]
    assert not {h.customer.id for h in first.hits} & {h.customer.id for h in second.hits}


async def test_english_locale_cards(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    await _customers(database, "上海明远科技")
    tagged = await _run(chat, _ctx(), "tag 上海明远科技 +VIP客户")
    english = str(present(tagged, sample_taxonomy, NOW, "en"))
    chinese = str(present(tagged, sample_taxonomy, NOW, "zh"))
    assert "Added: VIP客户" in english and "已添加" not in english
    assert "已添加：VIP客户" in chinese
    assert "I did not understand" in str(present(HelpResult(note="unknown"), sample_taxonomy, NOW, "en"))


async def test_a_shared_conversation_hides_sensitive_tags_even_from_a_manager(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat = _service(database, sample_taxonomy)
    await _customers(database, "上海明远科技")
    tagged = await _run(chat, _ctx(MANAGER), "tag 上海明远科技 +高危流失 +VIP客户")
    assert isinstance(tagged, TagResult) and "高危流失" in _tags(tagged.summary)
    in_channel = await _run(chat, _ctx(MANAGER, "19:华东销售部", shared=True), "tags 上海明远科技")
    assert isinstance(in_channel, SummaryResult) and _tags(in_channel.summary) == {"VIP客户"}
    assert "高危流失" not in str(present(in_channel, sample_taxonomy, NOW))
    refused = await _run(chat, _ctx(AGENT), "tag 上海明远科技 -高危流失")  # agents may not touch it either
    assert isinstance(refused, ErrorResult)


# ---------------------------------------------------------------- linked conversations and card actions


async def test_link_unlink_and_unlinking_another_customer_by_name(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat = _service(database, sample_taxonomy)
    mingyuan, _other = await _customers(database, "上海明远科技", "杭州云栖")
    linked = await _run(chat, _ctx(), "绑定 上海明远科技")
    assert isinstance(linked, LinkResult) and linked.linked and linked.customer.id == mingyuan
    wrong = await _run(chat, _ctx(), "解绑 杭州云栖")
    assert isinstance(wrong, ErrorResult) and "上海明远科技" in wrong.detail and "杭州云栖" in wrong.detail
    assert (await chat.channels.linked("teams", "a:私聊-王丽")) is not None
    tag_linked = await _run(chat, _ctx(), "tag +VIP客户")  # no name: the linked customer
    assert isinstance(tag_linked, TagResult) and tag_linked.summary.customer.id == mingyuan
    done = await _run(chat, _ctx(), "解绑 上海明远科技")
    assert isinstance(done, LinkResult) and not done.linked
    assert await chat.channels.linked("teams", "a:私聊-王丽") is None
    assert (await chat.respond(_ctx(), "teams:m-9", "麻烦发一下报价单")) == (HelpResult(note="unknown"),)


async def test_linked_message_suggests_and_accept_all_applies_every_suggestion(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    await _run(chat, _ctx(), "link 上海明远科技")
    [state] = await chat.respond(_ctx(), "teams:m-1", "我们公司采购想先要一份报价")
    assert isinstance(state, SuggestionState)
    assert {r.tag for r in state.records} == {"企业客户", "询价客户"}
    # Handled again (its reply was never confirmed sent): the same card from what was stored, nothing new.
    [again] = await chat.respond(_ctx(), "teams:m-1", "我们公司采购想先要一份报价")
    assert isinstance(again, SuggestionState) and [r.id for r in again.records] == [r.id for r in state.records]
    ids = [r.id for r in state.records]
    await chat.actor(AGENT.id, "王丽", NOW)
    decided = await chat.decide(_ctx(), verbs.SUGGESTION_ACCEPT_ALL, {"suggestion_ids": ids})
    assert isinstance(decided, SuggestionState)
    assert {r.status for r in decided.records} == {SuggestionStatus.ACCEPTED}
    assert decided.names == {AGENT.id: "王丽"}  # who decided, by the name stored when they first spoke
    assert await _held(database, cid) == {"企业客户", "询价客户"}
    empty = await chat.decide(_ctx(), verbs.SUGGESTION_ACCEPT_ALL, {"suggestion_ids": []})
    assert isinstance(empty, ErrorResult) and "suggestion_ids" in empty.detail


async def test_undo_removes_a_tag_the_message_applied_once(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    await _run(chat, _ctx(), "link 上海明远科技")
    [applied] = await chat.respond(_ctx(), "teams:m-2", "设备坏了，我要退款")
    assert isinstance(applied, AppliedState)
    [entry] = applied.entries
    assert entry.tag == "售后工单" and entry.assignment_id > 0 and entry.matched == ("退款",)
    # Handled again: the applied card again, the tag not applied twice (one event for the message).
    assert await chat.respond(_ctx(), "teams:m-2", "设备坏了，我要退款") == (applied,)
    async with database.unit_of_work(read_only=True) as uow:
        events = await uow.events.for_customer(cid, 0, 50)
    assert [e.evidence.get("message_key") for e in events] == ["teams:m-2"]
    data = {"assignment_id": entry.assignment_id, "customer_id": cid, "message_key": "teams:m-2"}
    later = _ctx(now=NOW + timedelta(minutes=5))
    undone = await chat.decide(later, verbs.ASSIGNMENT_UNDO, data)
    assert isinstance(undone, AppliedState)
    assert undone.entries[0].assignment_id == 0 and undone.entries[0].undone_by == AGENT.id
    assert await _held(database, cid) == set()
    again = await chat.decide(later, verbs.ASSIGNMENT_UNDO, data)  # a second click finds it gone and changes nothing
    assert isinstance(again, AppliedState) and again.entries == undone.entries


async def test_undo_never_removes_a_tag_the_customer_held_before_the_message(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    tagged = await _run(chat, _ctx(), "tag 上海明远科技 +售后工单")
    assert isinstance(tagged, TagResult)
    async with database.unit_of_work() as uow:
        [held] = await uow.assignments.active_for(cid)
    await _run(chat, _ctx(), "link 上海明远科技")
    # The message only renews the tag the agent set by hand: no applied card, nothing to undo.
    assert await chat.respond(_ctx(now=NOW + timedelta(minutes=1)), "teams:m-3", "我要退款") == ()
    forged = {"assignment_id": held.id, "customer_id": cid, "message_key": "teams:m-3"}
    result = await chat.decide(_ctx(now=NOW + timedelta(minutes=2)), verbs.ASSIGNMENT_UNDO, forged)
    assert isinstance(result, AppliedState) and result.entries == ()
    assert await _held(database, cid) == {"售后工单"}


async def test_a_new_messages_applied_card_is_the_one_rendered_again_from_storage(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    """The applied card of a new message is built from what its handling did; a retry renders it from what
    was stored: both show only the tag the message added, not the one it renewed."""
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    await _run(chat, _ctx(), "tag 上海明远科技 +售后工单")
    await _run(chat, _ctx(), "link 上海明远科技")
    [fresh] = await chat.respond(_ctx(now=NOW + timedelta(minutes=1)), "teams:m-4", "我要退款，还要投诉")
    assert isinstance(fresh, AppliedState)
    async with database.unit_of_work(read_only=True) as uow:
        held = {a.tag: a for a in await uow.assignments.active_for(cid)}
    [entry] = fresh.entries
    assert (entry.tag, entry.assignment_id, entry.matched) == ("紧急工单", held["紧急工单"].id, ("投诉",))
    assert entry.expires_at == held["紧急工单"].expires_at
    assert await chat.respond(_ctx(now=NOW + timedelta(minutes=2)), "teams:m-4", "我要退款，还要投诉") == (fresh,)


async def test_linked_messages_record_activity_at_most_hourly(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    await _run(chat, _ctx(), "link 上海明远科技")

    async def last_message() -> datetime | None:
        async with database.engine.connect() as conn:
            ca = t.customer_activity.c
            return (await conn.execute(select(ca.last_message_at).where(ca.customer_id == cid))).scalar()

    await chat.respond(_ctx(), "teams:a-1", "好的，收到")
    assert await last_message() == NOW
    await chat.respond(_ctx(now=NOW + timedelta(minutes=20)), "teams:a-2", "明天再聊")
    assert await last_message() == NOW  # within the hour: no second write
    two_hours = NOW + timedelta(hours=2)
    await chat.respond(_ctx(now=two_hours), "teams:a-3", "方案看过了")
    assert await last_message() == two_hours
    [other] = await _customers(database, "杭州云栖")
    await chat.respond(_ctx(conversation="a:未绑定"), "teams:a-4", "这里没有绑定客户")
    async with database.engine.connect() as conn:
        ca = t.customer_activity.c
        assert (await conn.execute(select(ca.customer_id).where(ca.customer_id == other))).first() is None


async def test_a_role_set_elsewhere_is_seen_after_forget_user(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    first = await chat.actor("aad-李雷", "李雷", datetime.now(UTC))
    assert first.role is Role.AGENT and first.display_name == "李雷"
    async with database.unit_of_work() as uow:
        await set_role(uow, "aad-李雷", Role.MANAGER, (), NOW)
    assert (await chat.actor("aad-李雷", "李雷", NOW)).role is Role.AGENT  # reused for a few seconds
    chat.forget_user("aad-李雷")
    assert (await chat.actor("aad-李雷", "李雷", NOW)).role is Role.MANAGER


# ---------------------------------------------------------------- shared conversations: commands need an address


@pytest.mark.parametrize(
    ("text", "held"),
    [
        ("建议你们尽快退款", {"售后工单"}),
        ("帮助我处理一下退款", {"售后工单"}),
        ("查看一下报价单", set()),
        ("查找一下合同，我们要续费", set()),
    ],
)
async def test_unaddressed_messages_in_a_linked_channel_are_matched_not_run_as_commands(
    database: Database, sample_taxonomy: Taxonomy, text: str, held: set[str]
) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    channel = _ctx(AGENT, "19:华东销售部", shared=True)
    assert isinstance(await _run(chat, channel, "绑定 上海明远科技"), LinkResult)
    results = await chat.respond(channel, f"teams:{text}", text, addressed=False)
    assert all(isinstance(r, AppliedState | SuggestionState) for r in results), results
    assert await _held(database, cid) == held
    if text.startswith("查看"):  # 报价单 keeps its meaning: a suggestion card for the linked customer
        [state] = results
        assert isinstance(state, SuggestionState) and {r.tag for r in state.records} == {"询价客户"}
    # Addressed (an @mention), the same words are a command again.
    addressed = await chat.respond(channel, f"teams:@{text}", text, addressed=True)
    assert any(isinstance(r, SuggestResult | HelpResult | ErrorResult | SummaryResult) for r in addressed)


async def test_unaddressed_command_words_in_an_unlinked_channel_get_no_reply(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat = _service(database, sample_taxonomy)
    await _customers(database, "上海明远科技")
    channel = _ctx(AGENT, "19:闲聊群", shared=True)
    assert await chat.respond(channel, "teams:x-1", "查看 上海明远科技", addressed=False) == ()


# ---------------------------------------------------------------- alert card actions


async def _queued_alert(database: Database, customer_id: int, recipient: str) -> int:
    """An alert in the outbox for `recipient`, as the churn job queues it; returns its id (the card's alert id)."""
    notice = AlertNotice(
        rule="churn",
        title="高危流失预警",
        customer_id=customer_id,
        customer_name="上海明远科技",
        reasons=(Reason("no_contact", 0.6, "30 天没有沟通"), Reason("contract", 0.3, "合同 15 天后到期")),
        raised_at=NOW,
        alert_key=f"churn|{customer_id}|2025-03",
        snooze_key=f"churn|{customer_id}",
        owner=AGENT.id,
    )
    store = SqlAlertStore(database.engine)
    async with store.unit_of_work() as uow:
        await uow.outbox.enqueue(
            NewOutboxMessage(f"churn|{customer_id}|{recipient}", recipient, "teams", notice.to_payload()), NOW
        )
        [row] = await uow.outbox.claim(NOW, 10)
    return row.id


async def test_alert_ack_and_snooze_for_the_recipient_refuse_others(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat = _service(database, sample_taxonomy)
    [cid] = await _customers(database, "上海明远科技")
    alert_id = await _queued_alert(database, cid, MANAGER.id)
    await chat.actor(AGENT.id, AGENT.display_name, NOW)  # the owner, known by name
    acked = await chat.decide(_ctx(MANAGER), verbs.ALERT_ACK, {"alert_id": alert_id})
    assert isinstance(acked, AlertResult)
    assert acked.status.acknowledged_by == MANAGER.id and acked.status.acknowledged_at == NOW
    rendered = str(present(acked, sample_taxonomy, NOW))
    shown = "".join(re.findall(r"'text': '([^']*)'", rendered))  # the runs of each line, read in order
    assert "负责人：王丽" in shown and AGENT.id not in rendered
    assert "已确认 · 张经理" in shown and verbs.ALERT_ACK not in rendered and verbs.CUSTOMER_SHOW in rendered
    snoozed = await chat.decide(_ctx(MANAGER), verbs.ALERT_SNOOZE, {"alert_id": alert_id, "days": 7})
    assert isinstance(snoozed, AlertResult) and snoozed.status.snoozed_until == NOW + timedelta(days=7)
    assert "暂停提醒至" in str(present(snoozed, sample_taxonomy, NOW))
    someone_else = await chat.decide(_ctx(AGENT), verbs.ALERT_ACK, {"alert_id": alert_id})
    assert isinstance(someone_else, ErrorResult) and str(alert_id) in someone_else.detail
    assert "只有收到提醒的人" in str(present(someone_else, sample_taxonomy, NOW, "zh"))
    missing = await chat.decide(_ctx(MANAGER), verbs.ALERT_ACK, {"alert_id": alert_id + 100})
    assert isinstance(missing, ErrorResult) and "does not exist" in missing.detail
    bad_days = await chat.decide(_ctx(MANAGER), verbs.ALERT_SNOOZE, {"alert_id": alert_id, "days": 400})
    assert isinstance(bad_days, ErrorResult) and "days" in bad_days.detail


# ---------------------------------------------------------------- caps must not reveal hidden tags


async def test_cap_refusal_and_soft_cap_warning_count_only_what_the_viewer_sees(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    matcher = Matcher.build(sample_taxonomy)
    rules = TaggingRules(tz=SHANGHAI, hard_cap=4)
    chat = ChatService(database, SqlChannelStore(database.engine), lambda: sample_taxonomy, lambda: matcher, rules)
    [cid] = await _customers(database, "上海明远科技")
    assert isinstance(await _run(chat, _ctx(MANAGER), "tag 上海明远科技 +高危流失 +投诉风险 +VIP客户"), TagResult)
    assert isinstance(await _run(chat, _ctx(AGENT), "tag 上海明远科技 +活跃客户"), TagResult)
    refused = await _run(chat, _ctx(AGENT), "tag 上海明远科技 +询价客户")  # the agent sees 2 of the 4 tags
    assert isinstance(refused, ErrorResult)
    shown = str(present(refused, sample_taxonomy, NOW, "zh")) + str(present(refused, sample_taxonomy, NOW, "en"))
    assert "已达上限" in shown and "请联系主管整理" in shown and "tag limit" in shown
    assert "4" not in shown.replace("1.5", "")  # neither the hidden count nor the cap
    precise = await _run(chat, _ctx(MANAGER), "tag 上海明远科技 +询价客户")
    assert isinstance(precise, ErrorResult) and "客户已有 4 个标签，已达上限 4" in precise.detail
    assert await _held(database, cid) == {"高危流失", "投诉风险", "VIP客户", "活跃客户"}


async def test_soft_cap_warning_for_an_agent_counts_visible_tags(
    database: Database, sample_taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tagging.policy as policy

    # Tag names are few in the sample taxonomy: a soft cap of 4 shows the counting on a small customer.
    monkeypatch.setattr(policy, "SOFT_CAP", 4)
    monkeypatch.setattr(policy, "_SOFT_CAP_SUFFIX", " 个标签（建议不超过 4 个），请考虑清理")
    chat = _service(database, sample_taxonomy)
    await _customers(database, "上海明远科技")
    await _run(chat, _ctx(MANAGER), "tag 上海明远科技 +高危流失 +投诉风险")
    by_agent = await _run(chat, _ctx(AGENT), "tag 上海明远科技 +VIP客户 +活跃客户")
    assert isinstance(by_agent, TagResult) and by_agent.warnings == ()  # 4 held, but the agent sees 2
    more = await _run(chat, _ctx(AGENT), "tag 上海明远科技 +询价客户 +企业客户")
    assert isinstance(more, TagResult) and more.warnings == ("客户已有 4 个标签（建议不超过 4 个），请考虑清理",)
    by_manager = await _run(chat, _ctx(MANAGER), "tag 上海明远科技 +今日已联系")
    assert isinstance(by_manager, TagResult) and by_manager.warnings == (
        "客户已有 7 个标签（建议不超过 4 个），请考虑清理",
    )


# ---------------------------------------------------------------- bilingual errors


async def test_unknown_tag_error_speaks_the_card_language(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat = _service(database, sample_taxonomy)
    await _customers(database, "上海明远科技")
    refused = await _run(chat, _ctx(), "tag 上海明远科技 +VIP客 +不存在的标签")
    assert isinstance(refused, ErrorResult)
    chinese = str(present(refused, sample_taxonomy, NOW, "zh"))
    english = str(present(refused, sample_taxonomy, NOW, "en"))
    assert "没有名为「不存在的标签」的标签" in chinese and "VIP客户" in chinese and "没有做任何修改" in chinese
    assert "unknown tag" not in chinese and "nothing was changed" not in chinese
    assert "unknown tag '不存在的标签'" in english and "nothing was changed" in english
