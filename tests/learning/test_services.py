"""core.learning on SQLite and PostgreSQL: capture from chat decisions, import, training, the merged stream,
retention and forgetting, a corrupt stored model ignored with a warning."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cards.present import present
from core import verbs
from core.chat.service import AppliedState, ChatService, SuggestionState, TagResult
from core.learning.capture import Recorder
from core.learning.history import HistoryError, history_examples, import_history, parse_history
from core.learning.ports import NewExample, Outcome
from core.learning.retention import forget_customer, purge_expired
from core.learning.suggester import MergedSuggester, ModelCell, merged
from core.learning.trainer import labelled_texts, train_if_due, train_model
from core.records import CustomerDraft
from core.taxonomy.dryrun import BATCH_LINES, suggest_stream
from learning.training import TrainingConfig
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.learning import SqlLearningStore
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy
from tests.core.test_chat import NOW, RULES, _ctx, _run
from tests.learning.support import messages

MOBILE = "13812345678"


def _chat(
    database: Database, taxonomy: Taxonomy, cell: ModelCell | None = None
) -> tuple[ChatService, SqlLearningStore]:
    store = SqlLearningStore(database.engine)
    matcher = Matcher.build(taxonomy)
    models = cell or ModelCell()
    chat = ChatService(
        database,
        SqlChannelStore(database.engine),
        lambda: taxonomy,
        lambda: merged(matcher, models, taxonomy),
        RULES,
        learning=Recorder(store),
    )
    return chat, store


async def _customer(database: Database, name: str = "上海明远科技") -> int:
    async with database.unit_of_work() as uow:
        return (await uow.customers.add(CustomerDraft(name=name), NOW)).id


def _rows(examples: list[NewExample]) -> set[tuple[str, str, bool, Outcome]]:
    return {(e.text, e.tag, e.positive, e.outcome) for e in examples}


async def test_accept_reject_undo_and_manual_tags_become_masked_examples(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    chat, store = _chat(database, sample_taxonomy)
    cid = await _customer(database)
    await _run(chat, _ctx(), "link 上海明远科技")
    text = f"我们公司采购想先要一份报价，电话{MOBILE}"
    [state] = await chat.respond(_ctx(), "teams:m-1", text)
    assert isinstance(state, SuggestionState)
    by_tag = {r.tag: r.id for r in state.records}
    await chat.decide(_ctx(), verbs.SUGGESTION_ACCEPT, {"suggestion_id": by_tag["询价客户"]})
    await chat.decide(_ctx(), verbs.SUGGESTION_REJECT, {"suggestion_id": by_tag["企业客户"]})
    await chat.decide(
        _ctx(), verbs.SUGGESTION_REJECT, {"suggestion_id": by_tag["企业客户"]}
    )  # a second click: nothing new
    [applied] = await chat.respond(_ctx(), "teams:m-2", "设备坏了，我要退款")
    assert isinstance(applied, AppliedState)
    data = {"assignment_id": applied.entries[0].assignment_id, "customer_id": cid, "message_key": "teams:m-2"}
    await chat.decide(_ctx(now=NOW + timedelta(minutes=1)), verbs.ASSIGNMENT_UNDO, data)
    # `tag +A` in the linked conversation: the latest message is an example of A.
    assert await chat.respond(_ctx(), "teams:m-3", "你们的合同模板能发一份吗") == ()
    tagged = await _run(chat, _ctx(now=NOW + timedelta(minutes=2)), "tag +VIP客户")
    assert isinstance(tagged, TagResult)
    # The message action: the message the person tagged from is an example.
    other = await _customer(database, "杭州云栖")
    action = await chat.tag(_ctx(), other, ("活跃客户",), source_text="最近每天都来问进度")
    assert isinstance(action, TagResult)

    masked = text.replace(MOBILE, "*" * 11)
    assert _rows(await store.examples()) == {
        (masked, "询价客户", True, Outcome.ACCEPTED),
        (masked, "企业客户", False, Outcome.REJECTED),
        ("设备坏了，我要退款", "售后工单", False, Outcome.UNDONE),
        ("你们的合同模板能发一份吗", "VIP客户", True, Outcome.MANUAL),
        ("最近每天都来问进度", "活跃客户", True, Outcome.MANUAL),
    }
    assert MOBILE not in str(await store.examples()) and MOBILE not in str(await store.unlabelled_texts(10))


async def test_forget_and_retention_delete_examples_and_texts(database: Database, sample_taxonomy: Taxonomy) -> None:
    chat, store = _chat(database, sample_taxonomy)
    cid = await _customer(database)
    await _run(chat, _ctx(), "link 上海明远科技")
    [state] = await chat.respond(_ctx(), "teams:m-1", "请给我报价")
    await chat.decide(_ctx(), verbs.SUGGESTION_ACCEPT, {"suggestion_id": state.records[0].id})  # type: ignore[union-attr]
    await store.add_examples(
        [NewExample("旧消息", "stage", "询价客户", True, Outcome.IMPORTED, None, NOW - timedelta(days=400))]
    )
    assert await forget_customer(store, cid) == (1, 1)
    assert _rows(await store.examples()) == {("旧消息", "询价客户", True, Outcome.IMPORTED)}
    assert await purge_expired(store, NOW, 365) == (1, 0)
    assert await store.examples() == []


async def _imported_rows(database: Database) -> tuple[int, int]:
    """(import batches, imported lines) stored."""
    async with database.engine.connect() as conn:
        batches = (await conn.execute(select(func.count()).select_from(t.learning_import_batches))).scalar_one()
        lines = (await conn.execute(select(func.count()).select_from(t.learning_imported_lines))).scalar_one()
    return int(batches), int(lines)


async def test_a_failing_write_leaves_no_batch_behind(database: Database, sample_taxonomy: Taxonomy) -> None:
    store = SqlLearningStore(database.engine)
    every = [(tag.dimension, tag.name) for tag in sample_taxonomy.iter_tags()]

    def broken(done: int) -> None:
        raise RuntimeError("interrupted while writing")

    with pytest.raises(RuntimeError):
        await store.add_history([("你好", [])] * 3, every, NOW, broken)
    assert await _imported_rows(database) == (0, 0) and await store.count_examples() == 0


async def test_imports_and_decisions_read_back_as_their_expansion_oldest_first(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    store = SqlLearningStore(database.engine)
    first = ['{"text": "能便宜点吗", "tags": ["询价客户"]}', '{"text": "设备坏了", "tags": ["售后工单", "VIP客户"]}']
    second = ['{"text": "能便宜点吗", "tags": []}', '{"text": "合同寄到了", "tags": ["询价客户"]}']
    smaller = dataclasses.replace(
        sample_taxonomy, dimensions=tuple(d for d in sample_taxonomy.dimensions if d.key != "basic")
    )
    early = NewExample("能便宜点吗", "stage", "询价客户", False, Outcome.REJECTED, None, NOW - timedelta(days=3))
    late = NewExample("设备坏了", "value", "VIP客户", False, Outcome.REJECTED, 7, NOW - timedelta(days=1), "teams:m")
    same = NewExample("合同寄到了", "stage", "询价客户", False, Outcome.ACCEPTED, None, NOW)
    await store.add_examples([late, same])
    await import_history(store, first, sample_taxonomy, NOW - timedelta(days=2))
    await import_history(store, second, smaller, NOW)
    await store.add_examples([early])

    expected = [
        early,
        *history_examples(parse_history(first, sample_taxonomy), sample_taxonomy, NOW - timedelta(days=2)),
        late,
        *history_examples(parse_history(second, smaller), smaller, NOW),
        same,  # a decision made at the instant of an import comes after it
    ]
    assert len({e.dimension for e in expected[-11:-1]}) == 4  # the second batch has the smaller taxonomy's tags
    assert await store.examples() == expected
    data, _ = labelled_texts(await store.examples(), sample_taxonomy)
    labels = {item.text: item.labels for item in data}
    assert labels["能便宜点吗"][("stage", "询价客户")] is False  # re-imported without the tag
    assert labels["设备坏了"][("value", "VIP客户")] is False  # the later rejection wins over the import
    assert labels["设备坏了"][("stage", "售后工单")] is True
    assert labels["合同寄到了"][("stage", "询价客户")] is False

    every, fewer = sum(1 for _ in sample_taxonomy.iter_tags()), sum(1 for _ in smaller.iter_tags())
    assert await store.count_examples() == len(expected) == 3 + 2 * every + 2 * fewer
    assert await store.count_examples(since=NOW - timedelta(days=2)) == 1 + 2 * fewer + 1
    assert await store.count_examples(since=NOW - timedelta(days=3)) == 1 + 2 * every + 2 * fewer + 1
    # Retention deletes the first import (counted as its examples) and the early rejection, not the rest.
    assert await purge_expired(store, NOW, 1) == (1 + 2 * every, 0)
    assert await store.examples() == [late, *expected[-(2 * fewer + 1) :]]
    assert await _imported_rows(database) == (1, 2)
    assert await store.count_examples() == len(await store.examples())
    assert await purge_expired(store, NOW + timedelta(days=1), 0) == (2 + 2 * fewer, 0)
    assert await store.examples() == [] and await _imported_rows(database) == (0, 0)


async def test_import_refuses_a_bad_file_whole_and_stores_a_good_one(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    store = SqlLearningStore(database.engine)
    bad = [
        '{"text": "能便宜点吗", "tags": ["询价客户"]}',
        "not json",
        '{"text": "x", "tags": ["询价客戶X"]}',
        '{"tags": []}',
    ]
    with pytest.raises(HistoryError) as caught:
        await import_history(store, bad, sample_taxonomy, NOW)
    assert caught.value.problems[0].startswith("line 2: not valid JSON")
    assert caught.value.problems[1].startswith("line 3: unknown tag '询价客戶X'")
    assert caught.value.problems[2] == "line 4: field 'text' is missing or not a non-empty string"
    assert await store.examples() == [] and await _imported_rows(database) == (0, 0)
    good = [f'{{"text": "能便宜点吗 {MOBILE}", "tags": ["询价客户"]}}', "", '{"text": "你好", "tags": []}']
    lines, examples = await import_history(store, good, sample_taxonomy, NOW)
    every = sum(1 for _ in sample_taxonomy.iter_tags())
    assert (lines, examples) == (2, 2 * every)
    stored = await store.examples()
    assert {e.tag for e in stored if e.positive} == {"询价客户"}
    assert all(MOBILE not in e.text for e in stored)


async def _import_generated(store: SqlLearningStore, taxonomy: Taxonomy, count: int = 240) -> None:
    names = {"price": ["询价客户"], "repair": ["售后工单"], None: []}
    import json

    lines = [json.dumps({"text": text, "tags": names[kind]}, ensure_ascii=False) for text, kind in messages(count)]
    await import_history(store, lines, taxonomy, NOW)


async def test_trained_model_joins_the_suggestion_stream_but_never_auto_applies(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    store = SqlLearningStore(database.engine)
    await _import_generated(store, sample_taxonomy)
    report = await train_model(store, sample_taxonomy, TrainingConfig(), NOW)
    assert report.version is not None
    assert {m.tag for m in report.enabled} == {"询价客户", "售后工单"}
    assert any(m.tag == "VIP客户" and "too few examples" in m.reason for m in report.lacking)
    cell = ModelCell()
    assert await cell.refresh(store) and cell.version == report.version
    assert not await cell.refresh(store)  # nothing newer

    chat, _ = _chat(database, sample_taxonomy, cell)
    await _customer(database)
    await _run(chat, _ctx(), "link 上海明远科技")
    # 售后工单 auto-applies from its keywords, but a learned 售后工单 is only suggested.
    [state] = await chat.respond(_ctx(), "teams:m-9", "屏幕一直闪，充不进电了")
    assert isinstance(state, SuggestionState)
    [record] = state.records
    assert record.tag == "售后工单" and not record.auto_applied and record.evidence["source"] == "learned"
    assert record.evidence["matched"] and all(part in "屏幕一直闪，充不进电了" for part in record.evidence["matched"])
    card = str(present(state, sample_taxonomy, NOW, "zh"))
    assert "模型建议" in card
    # Keywords win per tag: the keyword suggestion is kept, no learned duplicate.
    source = MergedSuggester(Matcher.build(sample_taxonomy), cell.model, sample_taxonomy)
    found = source.suggest("能便宜一点吗，给我报价")
    assert [(s.tag, s.source) for s in found] == [("询价客户", "keyword")]
    learned = source.suggest("这个怎么卖，能便宜一点吗")
    assert [(s.tag, s.source, s.action) for s in learned] == [("询价客户", "learned", "suggest")]
    assert learned[0].to_json()["source"] == "learned"


PRICE_TAG, REPAIR_TAG = ("stage", "询价客户"), ("stage", "售后工单")


def _repair_quotes_and_price_enquiries(seed: int) -> list[Any]:
    """120 repair quotes (报价 that is no price enquiry) and 120 price enquiries, labelled for both tags."""
    import random

    from learning.training import LabelledText
    from tests.learning.support import CHAT, PRICE, REPAIR

    rng = random.Random(seed)
    return [
        LabelledText(
            f"{rng.choice(CHAT)}，维修报价单收到了，{rng.choice(REPAIR)}", {PRICE_TAG: False, REPAIR_TAG: True}
        )
        for _ in range(120)
    ] + [
        LabelledText(f"{rng.choice(CHAT)}，{rng.choice(PRICE)}，请报价", {PRICE_TAG: True, REPAIR_TAG: False})
        for _ in range(120)
    ]


def test_a_keyword_suggestion_agents_keep_rejecting_is_held_back(sample_taxonomy: Taxonomy) -> None:
    """报价 in a repair quote is no price enquiry: once agents have said so, the model holds that suggestion back."""
    from learning.training import train

    data = _repair_quotes_and_price_enquiries(3)
    outcome = train(data, [PRICE_TAG, REPAIR_TAG], TrainingConfig())
    assert outcome.model is not None
    [price_metrics] = [m for m in outcome.metrics if m.tag == "询价客户"]
    assert price_metrics.veto
    matcher = Matcher.build(sample_taxonomy)
    repair_quote = "维修报价单收到了，按键没反应"
    assert "询价客户" in {s.tag for s in matcher.suggest(repair_quote)}  # the keyword alone suggests it
    merged_source = MergedSuggester(matcher, outcome.model, sample_taxonomy)
    assert "询价客户" not in {s.tag for s in merged_source.suggest(repair_quote)}
    assert [(s.tag, s.source) for s in merged_source.suggest("能便宜一点吗，请报价")] == [("询价客户", "keyword")]


def test_a_batch_is_suggested_as_each_message_alone(sample_taxonomy: Taxonomy) -> None:
    """`suggest_many` (what `kebiao suggest` calls per batch of lines) merges exactly as `suggest` does."""
    from learning.training import train

    data = _repair_quotes_and_price_enquiries(5)
    model = train(data, [PRICE_TAG, REPAIR_TAG], TrainingConfig()).model
    assert model is not None
    texts = [text for text, _ in messages(80, seed=11)] + [
        "维修报价单收到了，按键没反应",  # a keyword hit held back
        "能便宜一点吗，请报价",  # a keyword hit kept
        "屏幕一直闪，充不进电了" * 30,  # a long message
        "",
        "   ",
        f"我的电话 {MOBILE}，这个怎么卖",
        "😀😀 **** 你好",
    ]

    class KeywordsOnly:  # a keyword source that is not the matcher: no shared normalisation
        def __init__(self) -> None:
            self.matcher = Matcher.build(sample_taxonomy)

        def suggest(self, text: str) -> list[Any]:
            return self.matcher.suggest(text)

    for keywords in (Matcher.build(sample_taxonomy), KeywordsOnly()):
        source = MergedSuggester(keywords, model, sample_taxonomy)
        expected = [source.suggest(text) for text in texts]
        assert source.suggest_many(texts) == expected
        assert {s.source for found in expected for s in found} == {"keyword", "learned"}
        assert "询价客户" not in {s.tag for s in expected[-7]}  # held back in the batch as alone
        # `kebiao suggest`: batches of lines (and workers' batches) write what line-by-line suggesting writes.
        lines = [f"{text}\n" for text in texts * 4]
        by_line, batched, workers = io.StringIO(), io.StringIO(), io.StringIO()
        assert suggest_stream(source, lines, by_line, batch=1) == len(lines)
        assert suggest_stream(source, lines, batched) == len(lines) > BATCH_LINES
        suggest_stream(source, lines, workers, workers=2)
        assert batched.getvalue() == by_line.getvalue() == workers.getvalue()
        rows = [json.loads(line) for line in batched.getvalue().splitlines()]
        assert [row["text"] for row in rows] == texts * 4
        assert rows[-7]["tags"] == [s.to_json() for s in expected[-7]]
    with pytest.raises(ValueError, match="batch must be at least 1"):
        suggest_stream(source, lines, io.StringIO(), batch=0)
    plain = Matcher.build(sample_taxonomy)
    assert plain.suggest_many(texts) == [plain.suggest(text) for text in texts]
    assert MergedSuggester(plain, None, sample_taxonomy).suggest_many(texts) == plain.suggest_many(texts)


async def test_too_few_examples_keep_the_current_model(database: Database, sample_taxonomy: Taxonomy) -> None:
    store = SqlLearningStore(database.engine)
    await _import_generated(store, sample_taxonomy)
    first = await train_model(store, sample_taxonomy, TrainingConfig(), NOW)
    assert first.version is not None
    strict = TrainingConfig(min_examples=10_000)
    again = await train_model(store, sample_taxonomy, strict, NOW)
    assert again.version is None and all("needs at least 10000" in m.reason for m in again.lacking)
    assert await store.latest_model_version() == first.version
    assert await train_if_due(store, sample_taxonomy, TrainingConfig(), 1, NOW) is None  # nothing new since


async def test_a_model_made_for_other_features_is_retrained_without_waiting(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    store = SqlLearningStore(database.engine)
    await _import_generated(store, sample_taxonomy)
    first = await train_model(store, sample_taxonomy, TrainingConfig(), NOW)
    assert await train_if_due(store, sample_taxonomy, TrainingConfig(), 1_000, NOW) is None
    async with database.engine.begin() as conn:  # as a model stored by an earlier version would be
        row = (
            await conn.execute(select(t.learning_models.c.meta).where(t.learning_models.c.id == first.version))
        ).one()
        meta = dict(row.meta, features="older-features/v1")
        await conn.execute(update(t.learning_models).where(t.learning_models.c.id == first.version).values(meta=meta))
    again = await train_if_due(store, sample_taxonomy, TrainingConfig(), 1_000, NOW + timedelta(minutes=1))
    assert again is not None and again.version is not None and again.version != first.version
    cell = ModelCell()
    assert await cell.refresh(store) and cell.version == again.version


async def test_a_corrupt_stored_model_is_ignored_with_a_warning(
    database: Database, sample_taxonomy: Taxonomy, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlLearningStore(database.engine)
    await _import_generated(store, sample_taxonomy)
    first = await train_model(store, sample_taxonomy, TrainingConfig(), NOW)
    cell = ModelCell()
    await cell.refresh(store)
    second = await train_model(store, sample_taxonomy, TrainingConfig(), NOW + timedelta(minutes=1))
    async with database.engine.begin() as conn:
        await conn.execute(
            update(t.learning_models)
            .where(t.learning_models.c.id == second.version)
            .values(arrays=b"PK\x03\x04 not arrays")
        )
    with caplog.at_level(logging.WARNING):
        assert not await cell.refresh(store)
    assert f"learned model {second.version} ignored" in caplog.text and "checksum" in caplog.text
    assert cell.version == first.version and cell.model is not None  # the earlier model stays in use
    fresh = ModelCell()
    assert not await fresh.refresh(store) and fresh.model is None  # a new replica: keyword suggestions alone
    keywords: Any = Matcher.build(sample_taxonomy)
    assert [s.source for s in merged(keywords, fresh, sample_taxonomy).suggest("请给我报价")] == ["keyword"]  # type: ignore[union-attr]


async def test_wecom_ingest_keeps_texts_so_later_decisions_are_learned(
    database: Database, sample_taxonomy: Taxonomy, tmp_path: Any
) -> None:
    from core.importing.ingest import ingest_archive
    from storage.outbox import SqlAlertStore
    from tests.wecom.test_ingest import _line

    async with database.unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="李娜", wecom_external_userid="wmCUST001"), NOW)
    path = tmp_path / "archive.jsonl"
    path.write_text(_line("m1", "wmCUST001", f"你们的报价多少钱？我的电话 {MOBILE}") + "\n", encoding="utf-8")
    chat, store = _chat(database, sample_taxonomy)
    source = MergedSuggester(Matcher.build(sample_taxonomy), None, sample_taxonomy)
    await ingest_archive(SqlAlertStore(database.engine), sample_taxonomy, source, RULES, path, learning=store)
    remembered = await store.message_text("wecom:m1")
    assert remembered is not None and MOBILE not in remembered.text and remembered.channel == "wecom"
    async with database.unit_of_work() as uow:
        [pending] = await uow.suggestions.for_message("wecom:m1")
    await chat.decide(_ctx(), verbs.SUGGESTION_REJECT, {"suggestion_id": pending.id})
    assert _rows(await store.examples()) == {(remembered.text, "询价客户", False, Outcome.REJECTED)}
