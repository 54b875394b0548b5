"""`kebiao ingest`: customer messages become suggestions/auto tags; idempotent, resumable, bad lines reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import main
from core.assignments import TaggingRules
from core.ingest import checkpoint_path, ingest_archive
from core.records import CustomerDraft
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
