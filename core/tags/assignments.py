"""Applying, removing and expiring tags on customers, with policy and the append-only event log."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

from core.errors import NotFoundError
from core.ports import NewApplied, NewAssignment, UnitOfWork
from core.records import NewEvent
from core.types import Assignment, AssignmentState, Customer, EventKind, Source
from tagging.normaliser import name_key
from tagging.pii import mask
from tagging.policy import (
    DEFAULT_HARD_CAP,
    AmbiguousTagError,
    ApplyDecision,
    HeldTag,
    Holding,
    PolicyRefusal,
    UnknownTagError,
    decide_apply,
    find_tag,
    refuse_out_of_scope,
)
from tagging.taxonomy import Dimension, SyncMode, TagDef, Taxonomy

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
    assignment_id: int | None = None  # the assignment this change added (None: renewed or removed)


def clean_evidence(evidence: Mapping[str, Any] | None) -> dict[str, Any]:
    """Evidence as stored: message excerpts have personal data masked (it must never sit in the log)."""
    out = dict(evidence or {})
    for key in ("excerpt", "text", "note"):
        if isinstance(out.get(key), str):
            out[key] = mask(out[key])
    return out


# Sources that are edits made in chat (a command, an accepted or auto-applied suggestion).
CHAT_SOURCES = frozenset({Source.MANUAL, Source.KEYWORD})


def refuse_crm_mastered(dimension: Dimension | None, source: Source) -> None:
    """Chat may not edit a dimension whose master is the CRM (`sync: crm`): PolicyRefusal saying where to."""
    if dimension is not None and dimension.sync is SyncMode.CRM and source in CHAT_SOURCES:
        raise PolicyRefusal(
            f"tags of '{dimension.name}' come from the CRM and cannot be changed in chat; change them in the "
            f"CRM and the next sync brings them here (「{dimension.name}」以 CRM 为准，请在 CRM 中修改)"
        )


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


def _decide_held(
    dimension: Dimension, tag: TagDef, rules: TaggingRules, held: tuple[int, Sequence[Assignment]], now: datetime
) -> ApplyDecision:
    """The policy's decision from what `assignments.holding` read (the count, the rows near the tag)."""
    count, near = held
    holding = Holding(count, tuple(HeldTag(a.dimension, a.tag) for a in near))
    return decide_apply(dimension, tag, holding, now, rules.tz, rules.hard_cap)


def _held_row(near: Sequence[Assignment], dimension: str, tag: str) -> Assignment:
    """The row of `near` that holds `tag` of `dimension` (names compared by key)."""
    return next(a for a in near if a.dimension == dimension and name_key(a.tag) == name_key(tag))


def _moves_expiry(decision: ApplyDecision, current: datetime | None) -> bool:
    """Whether a renewal sets a new expiry (a tag without one keeps what it has)."""
    return decision.expires_at != current and decision.expires_at is not None


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
    customer: Customer | None = None,
) -> TagChange:
    """Apply a resolved tag: renew, or add replacing exclusive siblings; every change is an event.

    `customer`: the customer as the caller has it, whose region is checked (read here when not given).
    """
    refuse_crm_mastered(dimension, source)
    if customer is None or customer.id != customer_id:
        customer = await uow.customers.get(customer_id)
    if customer is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    refuse_out_of_scope(dimension, tag, customer.region)
    # The count and the few rows the decision turns on, not every tag held: a customer may hold a hundred.
    count, near = await uow.assignments.holding(
        customer_id, dimension.key, name_key(tag.name), whole_dimension=dimension.exclusive
    )
    decision = _decide_held(dimension, tag, rules, (count, near), now)
    stored_evidence = clean_evidence(evidence)
    if decision.renew:
        current = _held_row(near, dimension.key, tag.name)
        if _moves_expiry(decision, current.expires_at):
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
        row = _held_row(near, old.dimension, old.tag)
        if await uow.assignments.end(row.id, AssignmentState.REMOVED, now):
            replaced.append(row.tag)
    previous = replaced[0] if replaced else None
    kind = EventKind.REPLACED if replaced else EventKind.ADDED
    event = NewEvent(customer_id, dimension.key, tag.name, kind, actor, source, now, stored_evidence, previous)
    inserted = await uow.assignments.insert_active(
        customer_id, dimension.key, tag.name, source, actor, now, decision.expires_at, event
    )
    if inserted is None:  # a concurrent request added it between our read and our insert
        return TagChange(customer_id, dimension.key, tag.name, "renewed", expires_at=decision.expires_at)
    return TagChange(
        customer_id,
        dimension.key,
        tag.name,
        "added",
        replaced=tuple(replaced),
        expires_at=decision.expires_at,
        warnings=decision.warnings,
        assignment_id=inserted.id,
    )


@dataclass(frozen=True, slots=True)
class PlainApply:
    """An apply that is one new active assignment and its `added` event (`added` set), or a renewal that
    changes nothing (`added` None); `change` is its outcome once the row lands."""

    change: TagChange
    added: NewApplied | None = None

    def landed(self, assignment_id: int | None) -> TagChange:
        """The outcome once written: `assignment_id` is the row's id, None when an active one was there."""
        if self.added is None:
            return self.change
        if assignment_id is None:  # added by a concurrent request between the read and the write
            return TagChange(self.change.customer_id, self.change.dimension, self.change.tag, "renewed",
                             expires_at=self.change.expires_at)
        return dataclasses.replace(self.change, assignment_id=assignment_id)


def plain_apply(
    dimension: Dimension,
    tag: TagDef,
    rules: TaggingRules,
    customer: Customer,
    held: tuple[int, Sequence[Assignment]],
    *,
    actor: str,
    source: Source,
    now: datetime,
    evidence: Mapping[str, Any] | None = None,
) -> PlainApply | None:
    """What `apply_definition` does, given `held` (what `assignments.holding` read), when that is adding one
    assignment with its event or renewing without a change; None for a refusal, a replacement or a new expiry
    (those take `apply_definition`, in a transaction)."""
    try:
        refuse_crm_mastered(dimension, source)
        refuse_out_of_scope(dimension, tag, customer.region)
        decision = _decide_held(dimension, tag, rules, held, now)
    except PolicyRefusal:
        return None
    if decision.renew:
        current = _held_row(held[1], dimension.key, tag.name)
        if _moves_expiry(decision, current.expires_at):
            return None
        return PlainApply(TagChange(customer.id, dimension.key, current.tag, "renewed", expires_at=decision.expires_at))
    if decision.replaces:
        return None
    change = TagChange(
        customer.id, dimension.key, tag.name, "added", expires_at=decision.expires_at, warnings=decision.warnings
    )
    row = NewAssignment(customer.id, dimension.key, tag.name, source, actor, now, decision.expires_at)
    stored_evidence = clean_evidence(evidence)
    event = NewEvent(customer.id, dimension.key, tag.name, EventKind.ADDED, actor, source, now, stored_evidence)
    return PlainApply(change, NewApplied(row, event))


@dataclass(frozen=True, slots=True)
class ApplyItem:
    """One resolved tag to apply to one customer at `at`, with its evidence (for `apply_many`)."""

    customer_id: int
    dimension: Dimension
    tag: TagDef
    at: datetime
    evidence: Mapping[str, Any] | None = None
    # True only when the caller already ran `clean_evidence` on `evidence` (archive ingest masks each
    # excerpt once per batch); everyone else leaves it False and apply_many masks, so privacy never
    # depends on a caller remembering to.
    evidence_masked: bool = False


@dataclass(slots=True)
class _Held:
    """An active assignment while planning a batch: stored (`row` set) or to be inserted (`pending` index)."""

    dimension: str
    tag: str
    expires_at: datetime | None
    row: Assignment | None = None
    pending: int | None = None


@dataclass(slots=True)
class _Planned:
    """What one item does once the batch is written: a renewal, or an insert replacing some held tags."""

    item: ApplyItem
    tag: str
    expires_at: datetime | None
    renewed_event: bool = False
    insert: int | None = None  # index into the batch's NewAssignment rows
    replaced: list[_Held] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


async def apply_many(
    uow: UnitOfWork,
    items: Sequence[ApplyItem],
    rules: TaggingRules,
    *,
    actor: str,
    source: Source,
) -> list[TagChange | PolicyRefusal]:
    """`apply_definition` for many items in a handful of statements; one outcome per item, in order.

    Items are decided one after another against the customers' active tags as earlier items left them,
    with the same pure policy as `apply_definition` (renewal, exclusive replacement, caps, expiry), so
    both paths leave the same assignments and events. A policy refusal is that item's outcome; a missing
    customer raises NotFoundError before anything is written.
    """
    if not items:
        return []
    stored = await uow.assignments.active_for_many([i.customer_id for i in items])
    missing = sorted({i.customer_id for i in items} - set(stored))
    if missing:
        raise NotFoundError(f"customer {missing[0]} does not exist")
    regions = {c.id: c.region for c in await uow.customers.get_many(sorted(stored))}
    held: dict[int, list[_Held]] = {
        cid: [_Held(a.dimension, a.tag, a.expires_at, row=a) for a in rows] for cid, rows in stored.items()
    }
    inserts: list[NewAssignment] = []
    expiries: dict[int, datetime] = {}
    ends: dict[int, datetime] = {}
    plans: list[_Planned | PolicyRefusal] = []
    for item in items:
        active = held[item.customer_id]
        try:
            refuse_crm_mastered(item.dimension, source)
            refuse_out_of_scope(item.dimension, item.tag, regions.get(item.customer_id, ""))
            decision = decide_apply(
                item.dimension,
                item.tag,
                Holding.of([HeldTag(h.dimension, h.tag) for h in active]),
                item.at,
                rules.tz,
                rules.hard_cap,
            )
        except PolicyRefusal as refusal:
            plans.append(refusal)
            continue
        if decision.renew:
            current = next(h for h in active if _same(h, item.dimension.key, item.tag.name))
            plan = _Planned(item, current.tag, decision.expires_at)
            if decision.expires_at != current.expires_at and decision.expires_at is not None:
                current.expires_at = decision.expires_at
                if current.row is not None:
                    expiries[current.row.id] = decision.expires_at
                else:
                    assert current.pending is not None
                    inserts[current.pending] = _replace_row(inserts[current.pending], expires_at=decision.expires_at)
                plan.renewed_event = True
            plans.append(plan)
            continue
        plan = _Planned(item, item.tag.name, decision.expires_at, warnings=decision.warnings)
        for old in decision.replaces:
            gone = next(h for h in active if _same(h, old.dimension, old.tag))
            active.remove(gone)
            if gone.row is not None:
                ends[gone.row.id] = item.at
            else:
                assert gone.pending is not None
                inserts[gone.pending] = _replace_row(
                    inserts[gone.pending], state=AssignmentState.REMOVED, ended_at=item.at
                )
            plan.replaced.append(gone)
        plan.insert = len(inserts)
        inserts.append(
            NewAssignment(
                item.customer_id,
                item.dimension.key,
                item.tag.name,
                source,
                actor,
                item.at,
                decision.expires_at,
            )
        )
        active.append(_Held(item.dimension.key, item.tag.name, decision.expires_at, pending=plan.insert))
        plans.append(plan)
    await uow.assignments.set_expiries(expiries)
    ended = await uow.assignments.end_many(ends, AssignmentState.REMOVED)
    written = await uow.assignments.insert_many(inserts)
    # An active row another writer added between our read and our insert is skipped, as in apply_definition.
    landed = {(a.customer_id, a.dimension, name_key(a.tag)) for a in written if a.state is AssignmentState.ACTIVE}
    events: list[NewEvent] = []
    out: list[TagChange | PolicyRefusal] = []
    for planned in plans:
        if isinstance(planned, PolicyRefusal):
            out.append(planned)
            continue
        out.append(_outcome(planned, inserts, ended, landed, events, actor, source))
    await uow.events.append_many(events)
    return out


def _outcome(
    plan: _Planned,
    inserts: Sequence[NewAssignment],
    ended: set[int],
    landed: set[tuple[int, str, str]],
    events: list[NewEvent],
    actor: str,
    source: Source,
) -> TagChange:
    """The TagChange of one planned item, appending its event (if any) to `events`."""
    item = plan.item
    key = item.dimension.key
    evidence = dict(item.evidence or {}) if item.evidence_masked else clean_evidence(item.evidence)
    if plan.insert is None:
        if plan.renewed_event:
            renewed = NewEvent(item.customer_id, key, plan.tag, EventKind.RENEWED, actor, source, item.at, evidence)
            events.append(renewed)
        return TagChange(item.customer_id, key, plan.tag, "renewed", expires_at=plan.expires_at)
    replaced = [h.tag for h in plan.replaced if h.row is None or h.row.id in ended]
    row = inserts[plan.insert]
    if row.state is AssignmentState.ACTIVE and (item.customer_id, key, name_key(row.tag)) not in landed:
        return TagChange(item.customer_id, key, plan.tag, "renewed", expires_at=plan.expires_at)
    kind = EventKind.REPLACED if replaced else EventKind.ADDED
    previous = replaced[0] if replaced else None
    events.append(NewEvent(item.customer_id, key, plan.tag, kind, actor, source, item.at, evidence, previous))
    return TagChange(
        item.customer_id,
        key,
        plan.tag,
        "added",
        replaced=tuple(replaced),
        expires_at=plan.expires_at,
        warnings=plan.warnings,
    )


def _same(held: _Held, dimension: str, tag: str) -> bool:
    return held.dimension == dimension and name_key(held.tag) == name_key(tag)


def _replace_row(row: NewAssignment, **changes: Any) -> NewAssignment:
    return dataclasses.replace(row, **changes)


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
    candidates = [a for a in active if name_key(a.tag) == key and (dimension is None or a.dimension == dimension)]
    if not candidates:
        dim, tag = find_tag(taxonomy, tag_name, dimension, sees_sensitive)  # unknown → error with close matches
        return TagChange(customer_id, dim.key, tag.name, "not_held")
    if not sees_sensitive:
        find_tag(taxonomy, tag_name, candidates[0].dimension, sees_sensitive)  # agents may not touch hidden tags
    row = candidates[0]
    refuse_crm_mastered(taxonomy.dimension(row.dimension), source)
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


@dataclass(frozen=True, slots=True)
class TagRefusal:
    """One name of a hand-made change set that was refused: which list (`add`/`remove`), where, and why."""

    op: Literal["add", "remove"]
    index: int
    name: str
    error: UnknownTagError | AmbiguousTagError | PolicyRefusal


async def change_tags(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    customer_id: int,
    add: Sequence[str],
    remove: Sequence[str],
    *,
    actor: str,
    now: datetime,
    evidence: Mapping[str, Any],
) -> tuple[list[TagChange], list[TagRefusal]]:
    """Remove, then add, tags by hand (source manual) under the tagging policy; refusals are collected so the
    caller can list them all and roll the unit of work back. Removals go first so a full customer can swap."""
    changes: list[TagChange] = []
    refused: list[TagRefusal] = []
    plan: tuple[tuple[Literal["add", "remove"], Sequence[str]], ...] = (("remove", remove), ("add", add))
    for op, names in plan:
        for index, name in enumerate(names):
            try:
                if op == "remove":
                    change = await remove_tag(
                        uow, taxonomy, customer_id, name, actor=actor, source=Source.MANUAL, now=now, evidence=evidence
                    )
                else:
                    change = await apply_tag(
                        uow,
                        taxonomy,
                        rules,
                        customer_id,
                        name,
                        actor=actor,
                        source=Source.MANUAL,
                        now=now,
                        evidence=evidence,
                    )
            except (UnknownTagError, AmbiguousTagError, PolicyRefusal) as exc:
                refused.append(TagRefusal(op, index, name, exc))
            else:
                changes.append(change)
    return changes, refused
