"""Tag-health report: the pure candidate rules on crafted rows, and the grouped SQL on both databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli import main
from core.records import CustomerDraft
from core.reports.tag_health import (
    EventRow,
    HolderRow,
    PairRow,
    ReportRows,
    SuggestionRow,
    build_tag_report,
    jaccard,
    near_cap_threshold,
    tag_health_report,
    within_edit_distance,
)
from core.tags.assignments import TaggingRules, apply_tag, remove_tag
from core.taxonomy.store import import_taxonomy
from core.types import Source, SuggestionStatus
from storage.database import Database, open_database
from storage.reports import SqlReportSource
from tagging.taxonomy import Dimension, TagDef, Taxonomy
from tests.conftest import build_sample_taxonomy

NOW = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


def _taxonomy() -> Taxonomy:
    def tag(name: str) -> TagDef:
        return TagDef(name=name, dimension="behavior", path=(name,))

    names = ("活跃客户", "高频互动", "沉默客户", "企业客户", "企业客户群", "华东", "华南")
    return Taxonomy(
        version=1, dimensions=(Dimension(key="behavior", name="行为特征", tags=tuple(tag(n) for n in names)),)
    )


def _holders(**counts: int) -> tuple[HolderRow, ...]:
    return tuple(HolderRow("behavior", name, name, n) for name, n in counts.items())


def test_edit_distance_and_jaccard() -> None:
    assert within_edit_distance("企业客户", "企业客户群", 1)
    assert within_edit_distance("vip客户", "vlp客户", 1)
    assert not within_edit_distance("企业客户", "企业大客户群", 1)
    assert not within_edit_distance("询价客户", "售后工单", 1)
    assert jaccard(5, 5, 4) == pytest.approx(4 / 6)
    assert jaccard(0, 0, 0) == 0.0


def test_merge_candidates_by_overlap_need_the_bar_and_five_holders() -> None:
    rows = ReportRows(
        holders=_holders(活跃客户=10, 高频互动=9, 沉默客户=4, 华东=4, 华南=20),
        pairs=(
            PairRow("behavior", "活跃客户", "高频互动", 9),  # 9 / 10 = 0.9 → candidate
            PairRow("behavior", "华东", "沉默客户", 4),  # identical sets, but only 4 holders each
            PairRow("behavior", "活跃客户", "华南", 10),  # 10 / 20 = 0.5
        ),
    )
    report = build_tag_report(rows, _taxonomy(), NOW, 100)
    overlap = [m for m in report.merge if m.reason == "overlap"]
    assert [(m.tag_a, m.tag_b, m.jaccard, m.shared) for m in overlap] == [("活跃客户", "高频互动", 0.9, 9)]
    assert [(m.tag_a, m.tag_b) for m in report.merge if m.reason == "similar_name"] == [("企业客户", "企业客户群")]


def test_retire_candidates_never_used_or_idle_without_holders() -> None:
    rows = ReportRows(
        holders=_holders(活跃客户=3),
        events=(
            EventRow("behavior", "沉默客户", 0, NOW - timedelta(days=120)),  # idle
            EventRow("behavior", "华东", 0, NOW - timedelta(days=10)),  # used recently
            EventRow("behavior", "活跃客户", 1, NOW - timedelta(days=200)),  # old, but held
        ),
        suggestions=(SuggestionRow("behavior", "华南", "华南", "rejected", False, 2, NOW - timedelta(days=5)),),
    )
    report = build_tag_report(rows, _taxonomy(), NOW, 100)
    retire = {(r.tag, r.reason) for r in report.retire}
    assert retire == {
        ("沉默客户", "idle"),
        ("高频互动", "never_used"),
        ("企业客户", "never_used"),
        ("企业客户群", "never_used"),
    }


def test_usage_counts_accept_rate_and_retired_tags() -> None:
    rows = ReportRows(
        holders=(*_holders(活跃客户=3), HolderRow("behavior", "旧标签", "旧标签", 2)),
        suggestions=(
            SuggestionRow("behavior", "活跃客户", "活跃客户", "accepted", False, 3, NOW),
            SuggestionRow("behavior", "活跃客户", "活跃客户", "rejected", False, 1, NOW),
            SuggestionRow("behavior", "活跃客户", "活跃客户", "pending", False, 2, NOW),
            SuggestionRow("behavior", "活跃客户", "活跃客户", "accepted", True, 7, NOW),  # auto-applied: not a decision
        ),
    )
    report = build_tag_report(rows, _taxonomy(), NOW, 100)
    active = next(t for t in report.tags if t.tag == "活跃客户")
    assert (active.accepted, active.rejected, active.pending, active.auto_applied) == (3, 1, 2, 7)
    assert active.accept_rate == 0.75
    assert next(t for t in report.tags if t.tag == "高频互动").accept_rate is None
    old = report.tags[-1]
    assert (old.tag, old.in_taxonomy, old.holders) == ("旧标签", False, 2)
    assert "旧标签" not in {r.tag for r in report.retire}  # held: kept until someone removes it


def test_near_cap_threshold() -> None:
    assert near_cap_threshold(100) == 20
    assert near_cap_threshold(10) == 9
    assert near_cap_threshold(1) == 1


async def _customer(database: Database, name: str) -> int:
    async with database.unit_of_work() as uow:
        return (await uow.customers.add(CustomerDraft(name=name), NOW)).id


async def test_report_from_the_database(database: Database) -> None:
    taxonomy = build_sample_taxonomy()
    rules = TaggingRules()
    long_ago = NOW - timedelta(days=100)
    async with database.unit_of_work() as uow:
        await import_taxonomy(uow, taxonomy, "test", long_ago)
    ids = [await _customer(database, f"客户{i}号") for i in range(7)]
    async with database.unit_of_work() as uow:
        for i, cid in enumerate(ids):
            await apply_tag(uow, taxonomy, rules, cid, "活跃客户", actor="张三", source=Source.MANUAL, now=NOW)
            if i < 6:  # 6 of the 7 also hold 企业客户 (other dimension) and 沉默客户 (same dimension)
                await apply_tag(uow, taxonomy, rules, cid, "沉默客户", actor="张三", source=Source.MANUAL, now=NOW)
                await apply_tag(uow, taxonomy, rules, cid, "企业客户", actor="张三", source=Source.MANUAL, now=NOW)
        # 投诉风险 was used 100 days ago and removed since: idle
        await apply_tag(uow, taxonomy, rules, ids[0], "投诉风险", actor="李四", source=Source.MANUAL, now=long_ago)
        await remove_tag(uow, taxonomy, ids[0], "投诉风险", actor="李四", source=Source.MANUAL, now=long_ago)
        # a VIP added 40 days ago: held, but not "added in the last 30 days"
        await apply_tag(
            uow, taxonomy, rules, ids[1], "VIP客户", actor="李四", source=Source.MANUAL, now=NOW - timedelta(days=40)
        )
        for n, status in enumerate(["accepted", "accepted", "accepted", "rejected", "pending"]):
            await uow.suggestions.add_if_absent(
                ids[n],
                f"msg-{n}",
                "stage",
                "询价客户",
                0.9,
                {"excerpt": "报价"},
                NOW,
                SuggestionStatus(status),
                False,
                None,
            )
        await uow.suggestions.add_if_absent(
            ids[0], "msg-auto", "stage", "售后工单", 0.9, {}, NOW, SuggestionStatus.ACCEPTED, True, "kebiao"
        )
    report = await tag_health_report(SqlReportSource(database.engine), taxonomy, NOW + timedelta(hours=1), hard_cap=4)
    by_tag = {t.tag: t for t in report.tags}
    assert (by_tag["活跃客户"].holders, by_tag["活跃客户"].added_recently) == (7, 7)
    assert (by_tag["VIP客户"].holders, by_tag["VIP客户"].added_recently) == (1, 0)
    inquiry = by_tag["询价客户"]
    assert (inquiry.accepted, inquiry.rejected, inquiry.pending, inquiry.accept_rate) == (3, 1, 1, 0.75)
    assert inquiry.holders == 0 and inquiry.last_used == NOW
    assert by_tag["售后工单"].auto_applied == 1 and by_tag["售后工单"].accept_rate is None
    overlap = [(m.tag_a, m.tag_b, m.shared) for m in report.merge if m.reason == "overlap"]
    assert len(overlap) == 1 and set(overlap[0][:2]) == {"活跃客户", "沉默客户"} and overlap[0][2] == 6
    retire = {r.tag: r.reason for r in report.retire}
    assert retire["投诉风险"] == "idle" and retire["高危流失"] == "never_used"
    assert "活跃客户" not in retire and "询价客户" not in retire  # suggested today
    # hard cap 4 → threshold 3: the six customers with three tags, the one with four first
    assert [n.count for n in report.near_cap] == [4, 3, 3, 3, 3, 3]
    assert report.near_cap[0].customer_id == ids[1] and report.near_cap[0].cap == 4


async def test_cli_reports_tags_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    database = await open_database(url)
    try:
        async with database.unit_of_work() as uow:
            await import_taxonomy(uow, build_sample_taxonomy(), "test", NOW)
    finally:
        await database.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEBIAO_DATABASE_URL", url)
    code = await asyncio.to_thread(main, ["reports", "tags", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["tag"] for r in data["retire_candidates"]} >= {"VIP客户", "高危流失"}
    code = await asyncio.to_thread(main, ["reports", "tags"])
    assert code == 0 and "retire candidates" in capsys.readouterr().out
