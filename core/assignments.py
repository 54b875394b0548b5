"""Applying, removing and expiring tags on customers, with policy and the append-only event log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.errors import NotFoundError
from core.ports import UnitOfWork
from core.records import NewEvent
from core.types import AssignmentState, EventKind, Source
from tagging.normaliser import name_key
from tagging.pii import mask
from tagging.policy import DEFAULT_HARD_CAP, HeldTag, decide_apply, find_tag
from tagging.taxonomy import Dimension, TagDef, Taxonomy

Outcome = Literal["added", "renewed", "removed", "not_held"]


@dataclass(frozen=True, slots=True)
class TaggingRules:
    """Deployment-wide policy settings: the local time zone (today tags) and the hard cap."""

    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    hard_cap: int = DEFAULT_HARD_CAP

    @classmethod
    def of(cls, timezone: str, hard_cap: int) -> TaggingRules:
        return cls(tz=ZoneInfo(timezone), hard_cap=hard_cap)


@dataclass(frozen=True, slots=True)
class TagChange:
    """What one apply/remove did; `replaced` names exclusive siblings that made way."""

    customer_id: int
    dimension: str
    tag: str
    outcome: Outcome
    replaced: tuple[str, ...] = ()
    expires_at: datetime | None = None
    warnings: tuple[str, ...] = ()


def clean_evidence(evidence: Mapping[str, Any] | None) -> dict[str, Any]:
    """Evidence as stored: message excerpts have personal data masked (it must never sit in the log)."""
    out = dict(evidence or {})
    for key in ("excerpt", "text", "note"):
        if isinstance(out.get(key), str):
            out[key] = mask(out[key])
    return out


async def apply_tag(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    customer_id: int,
    tag_name: str,
    *,
    actor: str,
    source: Source,
    now: datetime,
    evidence: Mapping[str, Any] | None = None,
    dimension: str | None = None,
    sees_sensitive: bool = True,
) -> TagChange:
    """Apply a tag by name; raises UnknownTagError (with close matches), PolicyRefusal or NotFoundError."""
    dim, tag = find_tag(taxonomy, tag_name, dimension, sees_sensitive)
    return await apply_definition(
        uow, dim, tag, rules, customer_id, actor=actor, source=source, now=now, evidence=evidence
    )


async def apply_definition(
    uow: UnitOfWork,
    dimension: Dimension,
    tag: TagDef,
    rules: TaggingRules,
    customer_id: int,
    *,
    actor: str,
    source: Source,
    now: datetime,
    evidence: Mapping[str, Any] | None = None,
) -> TagChange:
    """Apply a resolved tag: renew, or add replacing exclusive siblings; every change is an event."""
    if await uow.customers.get(customer_id) is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    active = await uow.assignments.active_for(customer_id)
    held = [HeldTag(a.dimension, a.tag) for a in active]
    decision = decide_apply(dimension, tag, held, now, rules.tz, rules.hard_cap)
    stored_evidence = clean_evidence(evidence)
    if decision.renew:
        current = next(
            a for a in active if a.dimension == dimension.key and name_key(a.tag) == name_key(tag.name)
        )
        if decision.expires_at != current.expires_at and decision.expires_at is not None:
            await uow.assignments.set_expiry(current.id, decision.expires_at)
            await uow.events.append(
                NewEvent(
                    customer_id,
                    dimension.key,
                    current.tag,
                    EventKind.RENEWED,
                    actor,
                    source,
                    now,
                    stored_evidence,
                )
            )
        return TagChange(customer_id, dimension.key, current.tag, "renewed", expires_at=decision.expires_at)
    replaced: list[str] = []
    for old in decision.replaces:
        row = next(a for a in active if a.dimension == old.dimension and name_key(a.tag) == name_key(old.tag))
        if await uow.assignments.end(row.id, AssignmentState.REMOVED, now):
            replaced.append(row.tag)
    inserted = await uow.assignments.insert_active(
        customer_id, dimension.key, tag.name, source, actor, now, decision.expires_at
    )
    if inserted is None:  # a concurrent request added it between our read and our insert
        return TagChange(customer_id, dimension.key, tag.name, "renewed", expires_at=decision.expires_at)
    previous = replaced[0] if replaced else None
    kind = EventKind.REPLACED if replaced else EventKind.ADDED
    await uow.events.append(
        NewEvent(customer_id, dimension.key, tag.name, kind, actor, source, now, stored_evidence, previous)
    )
    return TagChange(
        customer_id,
        dimension.key,
        tag.name,
        "added",
        replaced=tuple(replaced),
        expires_at=decision.expires_at,
        warnings=decision.warnings,
    )


async def remove_tag(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    customer_id: int,
    tag_name: str,
    *,
    actor: str,
    source: Source,
    now: datetime,
    evidence: Mapping[str, Any] | None = None,
    dimension: str | None = None,
    sees_sensitive: bool = True,
) -> TagChange:
    """Remove a held tag; a tag no longer in the taxonomy can still be removed by its exact name."""
    if await uow.customers.get(customer_id) is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    active = await uow.assignments.active_for(customer_id)
    key = name_key(tag_name)
    candidates = [
        a for a in active if name_key(a.tag) == key and (dimension is None or a.dimension == dimension)
    ]
    if not candidates:
        dim, tag = find_tag(
            taxonomy, tag_name, dimension, sees_sensitive
        )  # unknown → error with close matches
        return TagChange(customer_id, dim.key, tag.name, "not_held")
    if not sees_sensitive:
        find_tag(
            taxonomy, tag_name, candidates[0].dimension, sees_sensitive
        )  # agents may not touch hidden tags
    row = candidates[0]
    if await uow.assignments.end(row.id, AssignmentState.REMOVED, now):
        await uow.events.append(
            NewEvent(
                customer_id,
                row.dimension,
                row.tag,
                EventKind.REMOVED,
                actor,
                source,
                now,
                clean_evidence(evidence),
            )
        )
        return TagChange(customer_id, row.dimension, row.tag, "removed")
    return TagChange(customer_id, row.dimension, row.tag, "not_held")


async def expire_lapsed(uow: UnitOfWork, now: datetime, limit: int = 1000) -> int:
    """Move assignments whose expiry has passed to `expired`, one event each; returns how many."""
    count = 0
    for row in await uow.assignments.lapsed(now, limit):
        if await uow.assignments.end(row.id, AssignmentState.EXPIRED, now):
            await uow.events.append(
                NewEvent(
                    row.customer_id,
                    row.dimension,
                    row.tag,
                    EventKind.EXPIRED,
                    "kebiao",
                    Source.RULE,
                    now,
                    {"expires_at": row.expires_at.isoformat() if row.expires_at else None},
                )
            )
            count += 1
    return count
