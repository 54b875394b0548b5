"""Evidence is masked exactly once on every path: ingest hands apply_many evidence it already masked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.importing.ingest import ingest_archive
from core.records import CustomerDraft
from core.tags.assignments import ApplyItem, TaggingRules, apply_many, clean_evidence
from core.types import Source
from storage import tables as t
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.matcher import Matcher
from tagging.policy import find_tag
from tagging.taxonomy import Taxonomy

NOW = datetime(2025, 3, 1, tzinfo=UTC)
REFUND = "上次的订单要退款，手机13800138000，邮箱 lina@example.com"


async def _evidence(database: Database) -> list[dict[str, Any]]:
    async with database.engine.connect() as conn:
        rows = await conn.execute(select(t.tag_events.c.evidence).order_by(t.tag_events.c.id))
        return [dict(r[0]) for r in rows]


async def test_ingest_stores_auto_tag_evidence_masked_once(
    database: Database, sample_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    async with database.unit_of_work() as uow:
        await uow.customers.add(CustomerDraft(name="李娜", wecom_external_userid="wmCUST001"), NOW)
    record = {"msgid": "m1", "from": "wmCUST001", "tolist": ["zhangwei"], "roomid": "", "msgtime": 1735700000000,
              "msgtype": "text", "text": {"content": REFUND}}  # fmt: skip
    path = tmp_path / "archive.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    summary = await ingest_archive(
        SqlAlertStore(database.engine), sample_taxonomy, Matcher.build(sample_taxonomy), TaggingRules(), path
    )
    assert summary.applied == 1
    [stored] = await _evidence(database)
    assert "13800138000" not in stored["excerpt"] and "lina@example.com" not in stored["excerpt"]
    # Masking is idempotent, so a second pass (the one ingest now skips) would have stored the very same text.
    assert clean_evidence(stored) == stored


async def test_apply_many_masks_unless_told_the_evidence_is_already_masked(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    async with database.unit_of_work() as uow:
        ids = [(await uow.customers.add(CustomerDraft(name=n), NOW)).id for n in ("王芳", "陈伟")]
    dimension, tag = find_tag(sample_taxonomy, "售后工单")
    raw = {"excerpt": REFUND, "message_key": "wecom:m1", "score": 0.9}
    items = [
        ApplyItem(ids[0], dimension, tag, NOW, raw),  # every other caller: apply_many masks
        ApplyItem(ids[1], dimension, tag, NOW, clean_evidence(raw), evidence_masked=True),  # ingest
    ]
    async with database.unit_of_work() as uow:
        await apply_many(uow, items, TaggingRules(), actor="kebiao", source=Source.KEYWORD)
    masked_here, masked_before = await _evidence(database)
    assert masked_here == masked_before == clean_evidence(raw)
    assert "13800138000" not in masked_here["excerpt"]
