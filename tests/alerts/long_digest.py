"""A long expiry digest in a real database: many customers with long names full of `_ ( ) & #`, each with a
VIP客户 tag expiring one day after the previous, some also with the managers-only 高危流失, queued for one
recipient the way the scan queues it (the first five listed, the rest counted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.alerts.ports import NewOutboxMessage
from core.alerts.selection import Digest, ExpiringTag, dedupe_key, digest_notice
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.types import Source
from storage.database import Database
from storage.outbox import SqlAlertStore
from tagging.taxonomy import Taxonomy

TZ = ZoneInfo("Asia/Shanghai")
VISIBLE_TAG = "VIP客户"
HIDDEN_TAG = "高危流失"  # a managers-only dimension in the taxonomies these tests use


def long_name(n: int) -> str:
    """A customer name of 60-odd characters with every character Markdown would act on."""
    return f"华为技术（上海）R&D #{n:03d} (China)_Holdings & Partners 长名称客户有限公司 上海分公司"


@dataclass(frozen=True)
class SeededDigest:
    alert_id: int
    visible: tuple[str, ...]  # 'name · VIP客户' of every visible row, soonest first
    hidden: tuple[str, ...]  # 'name · 高危流失' of the managers-only rows


async def seed_digest(
    db: Database, taxonomy: Taxonomy, recipient: str, channel: str, now: datetime, customers: int, hidden_every: int
) -> SeededDigest:
    """`customers` customers, each holding VIP客户 (and every `hidden_every`-th 高危流失), every tag expiring
    1, 2, 3… days out; the digest to `recipient` on `channel` counts them all. Returns its outbox id."""
    items: list[ExpiringTag] = []
    visible: list[str] = []
    hidden: list[str] = []
    async with db.unit_of_work() as uow:
        for n in range(1, customers + 1):
            customer = await uow.customers.add(CustomerDraft(name=long_name(n), crm_id=f"SF_{n:04d}-A"), now)
            tags = [VISIBLE_TAG] + ([HIDDEN_TAG] if n % hidden_every == 0 else [])
            for tag in tags:
                await apply_tag(
                    uow, taxonomy, TaggingRules(), customer.id, tag, actor="seed", source=Source.IMPORT, now=now
                )
            for assignment in await uow.assignments.active_for(customer.id):
                expires = now + timedelta(days=1 + len(items))
                await uow.assignments.set_expiry(assignment.id, expires)
                items.append(
                    ExpiringTag(
                        assignment.id,
                        customer.id,
                        customer.name,
                        recipient,
                        "华东",
                        assignment.dimension,
                        assignment.tag,
                        assignment.assigned_at,
                        expires,
                    )
                )
                (visible if assignment.tag == VISIBLE_TAG else hidden).append(f"{customer.name} · {assignment.tag}")
    digest = Digest(recipient, now.astimezone(TZ).date())
    for item in items:
        digest.add(item, 5)
    notice = digest_notice(digest, now, TZ)
    key = dedupe_key("expiry", "*", recipient, digest.day.isoformat())
    async with SqlAlertStore(db.engine).unit_of_work() as uow:
        await uow.outbox.enqueue(NewOutboxMessage(key, recipient, channel, notice.to_payload()), now)
        [row] = await uow.outbox.claim(now, 10)
    return SeededDigest(row.id, tuple(visible), tuple(hidden))
