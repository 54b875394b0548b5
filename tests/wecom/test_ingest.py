"""`kebiao ingest`: customer messages become suggestions/auto tags; idempotent, resumable, bad lines reported."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli import main
from core.importing.ingest import CheckpointError, checkpoint_path, ingest_archive
from core.records import CustomerDraft, NewSuggestion
from core.tags.assignments import TaggingRules
from core.types import SuggestionStatus
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy

NOW = datetime(2025, 3, 1, tzinfo=UTC)
LATEST = datetime.fromtimestamp(1735700060, tz=UTC)


def _line(msgid: str, sender: str, text: str, msgtime: int = 1735700000000) -> str:
    record = {
        "msgid": msgid,
        "from": sender,
        "tolist": ["zhangwei"],
        "roomid": "",
        "msgtime": msgtime,
        "msgtype": "text",
        "text": {"content": text},
    }
    return json.dumps(record, ensure_ascii=False)


def _archive(tmp_path: Path) -> Path:
    lines = [
        _line("m1", "wmCUST001", "你们的报价多少钱？"),
        _line("m2", "zhangwei", "我稍后发报价单"),  # the agent: not matched
        "{not json",
        _line("m3", "wmCUST001", "上次的订单要退款", msgtime=1735700060000),
        _line("m4", "wmSTRANGER", "报价发我"),  # unknown customer
        json.dumps({"msgid": "m5", "from": "wmCUST001", "msgtype": "text", "msgtime": "yesterday"}),
        "",
    ]
    path = tmp_path / "archive.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_ingest_suggests_applies_and_is_idempotent(
    database: Database, sample_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="李娜", wecom_external_userid="wmCUST001"), NOW)
    matcher = Matcher.build(sample_taxonomy)
    path = _archive(tmp_path)
    store = SqlAlertStore(database.engine)
    summary = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, batch_lines=2)
    assert (summary.suggested, summary.applied, summary.unknown_customers) == (1, 1, 1)
    assert [b.split(":")[0] for b in summary.bad] == ["line 3", "line 6"]
    async with database.unit_of_work() as uow:
        pending = await uow.suggestions.pending_for(customer.id)
        held = [a.tag for a in await uow.assignments.active_for(customer.id)]
    assert [p.tag for p in pending] == ["询价客户"] and held == ["售后工单"]
    async with store.unit_of_work() as uow:
        facts = await uow.scans.customer_facts(0, NOW, (), "risk", 10)
    # m3 (msgtime + 1 min) is the customer's latest message; the unknown sender and the agent are not recorded.
    assert [(f.customer_id, f.last_contact_at) for f in facts] == [(customer.id, LATEST)]
    again = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path)
    assert (again.suggested, again.applied, again.duplicates) == (0, 0, 2)
    resumed = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)
    assert resumed.lines == 0 and resumed.resumed_from_line == 7
    assert json.loads(checkpoint_path(path).read_text())["line"] == 7


def test_cli_reports_bad_lines_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEBIAO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    monkeypatch.chdir(tmp_path)
    path = _archive(tmp_path)
    assert main(["ingest", str(path)]) == 1
    out = capsys.readouterr()
    assert "line 3: not valid JSON" in out.err and "line 6:" in out.err
    assert "7 lines read" in out.out
    assert main(["ingest", str(tmp_path / "missing.jsonl")]) == 1


async def test_resume_refuses_a_replaced_larger_file_and_resumes_an_unchanged_one(
    database: Database, sample_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    async with database.unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="周敏", wecom_external_userid="wmCUST001"), NOW)
    matcher = Matcher.build(sample_taxonomy)
    store = SqlAlertStore(database.engine)
    path = tmp_path / "archive.jsonl"
    path.write_text("\n".join(_line(f"a{i}", "wmCUST001", "你好") for i in range(4)) + "\n", encoding="utf-8")
    await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, batch_lines=2)
    unchanged = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)
    assert unchanged.resumed_from_line == 4 and unchanged.lines == 0
    # A new export under the same name, larger than the old one: its first lines are new messages.
    replaced = [_line(f"b{i}", "wmCUST001", "退款怎么办" if i == 0 else "你好") for i in range(8)]
    path.write_text("\n".join(replaced) + "\n", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"changed since the checkpoint.*size .*delete the checkpoint"):
        await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)
    async with database.unit_of_work() as uow:
        customer = (await uow.customers.find_by_external_ids(["wmCUST001"]))["wmCUST001"]
        assert await uow.assignments.active_for(customer.id) == []  # nothing of the new file was touched
    checkpoint_path(path).unlink()
    fresh = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)
    assert fresh.lines == 8 and fresh.applied == 1  # the line the old checkpoint would have skipped


async def test_resume_refuses_same_size_edits_and_old_checkpoints(
    database: Database, sample_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    matcher = Matcher.build(sample_taxonomy)
    store = SqlAlertStore(database.engine)
    path = tmp_path / "archive.jsonl"
    path.write_text(_line("c1", "wmCUST009", "报价") + "\n", encoding="utf-8")
    await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path)
    stat = path.stat()
    path.write_text(_line("c2", "wmCUST009", "报价") + "\n", encoding="utf-8")  # same size, other message
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old modification time
    with pytest.raises(CheckpointError, match="content of the first 64 KiB"):
        await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)
    checkpoint_path(path).write_text(json.dumps({"offset": 0, "line": 0, "file": path.name}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="older version"):
        await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)


def test_cli_resume_on_a_changed_file_exits_1_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEBIAO_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    monkeypatch.chdir(tmp_path)
    path = _archive(tmp_path)
    main(["ingest", str(path)])
    with path.open("a", encoding="utf-8") as out:
        out.write(_line("m9", "wmCUST001", "再问一下报价") + "\n")
    capsys.readouterr()
    assert main(["ingest", str(path), "--resume"]) == 1
    assert "changed since the checkpoint" in capsys.readouterr().err


async def test_insert_new_stores_what_add_many_if_absent_stores_and_skips_known_keys(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="王芳", wecom_external_userid="wmCUST002"), NOW)

    def rows(prefix: str) -> list[NewSuggestion]:
        evidence = {"matched": ["报价"], "excerpt": "报价单发我，电话 138****0000"}
        return [
            NewSuggestion(
                customer.id,
                f"{prefix}:m1",
                "intent",
                "询价客户",
                0.91,
                evidence,
                NOW,
                SuggestionStatus.PENDING,
                False,
                None,
            ),
            NewSuggestion(
                customer.id,
                f"{prefix}:m1",
                "service",
                "售后工单",
                0.75,
                {},
                NOW,
                SuggestionStatus.ACCEPTED,
                True,
                "kebiao",
            ),
            NewSuggestion(
                customer.id, f"{prefix}:m1", "intent", "询价客户", 0.5, {}, NOW, SuggestionStatus.PENDING, False, None
            ),  # same key again: the first one wins
        ]

    async with database.unit_of_work() as uow:
        old = await uow.suggestions.add_many_if_absent(rows("old"))
        new = await uow.suggestions.insert_new(rows("new"))
        again = await uow.suggestions.insert_new(rows("new"))
        stored = {
            (
                s.message_key.split(":")[1],
                s.dimension,
                s.tag,
                s.score,
                json.dumps(dict(s.evidence), sort_keys=True, ensure_ascii=False),
                s.status,
                s.auto_applied,
                s.decided_by,
                s.decided_at,
                s.created_at,
            )
            for key in ("old:m1", "new:m1")
            for s in await uow.suggestions.for_message(key)
        }
    assert new == {("new:m1", "intent", "询价客户"), ("new:m1", "service", "售后工单")} and again == set()
    assert len(old) == 2 and len(stored) == 2  # both paths stored the very same two rows


HOSTILE_LINES = [
    '{"msgid": "h1", "from": "wmCUST001", "msgtype": "text", "msgtime": ' + "9" * 5000 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"msgid": "h3", "from": "wmCUST001", "msgtype": "text", "msgtime": 99999999999999999999,'
    ' "text": {"content": "报价"}}',
    '{"msgid": "h4", "from": "wmCUST001", "msgtype": "text", "msgtime": 1735700000000,'
    ' "text": {"content": "报价\\ud800"}}',
    '{"msgid": "h5", "from": "wmCUST001", "msgtype": "text", "msgtime": 1735700000000,'
    ' "text": {"content": "报价\\u0000"}}',
]


async def test_unparseable_lines_are_skipped_and_the_batch_keeps_its_good_lines(
    database: Database, sample_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="李娜", wecom_external_userid="wmCUST001"), NOW)
    lines = [_line("good1", "wmCUST001", "你们的报价多少钱？"), *HOSTILE_LINES, _line("good2", "wmCUST001", "报价发我")]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = SqlAlertStore(database.engine)
    matcher = Matcher.build(sample_taxonomy)
    summary = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path)  # one batch
    assert [b.split(":")[0] for b in summary.bad] == [f"line {n}" for n in range(2, 7)]
    assert summary.customer_messages == 2
    async with database.unit_of_work() as uow:
        keys = {p.message_key for p in await uow.suggestions.pending_for(customer.id)}
    assert keys == {"wecom:good1", "wecom:good2"}
    resumed = await ingest_archive(store, sample_taxonomy, matcher, TaggingRules(), path, resume=True)
    assert resumed.lines == 0 and resumed.resumed_from_line == len(lines)
