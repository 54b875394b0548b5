"""A customer's tags grouped by dimension in taxonomy order, as a given viewer may see them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from core.errors import NotFoundError
from core.ports import UnitOfWork
from core.types import Assignment, Customer, Source, User
from tagging.normaliser import name_key
from tagging.policy import SOFT_CAP, is_temporary, is_visible
from tagging.regions import in_scope
from tagging.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class HeldTagView:
    name: str
    color: str | None
    source: Source
    assigned_by: str
    assigned_at: datetime
    expires_at: datetime | None
    temporary: bool = False
    retired: bool = False  # no longer in the taxonomy, kept until someone removes it
    reason: str | None = None  # why an automation rule applied it (the rule and the facts that satisfied it)


@dataclass(frozen=True, slots=True)
class DimensionGroup:
    key: str
    name: str
    tags: tuple[HeldTagView, ...]


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """Only what the viewer may see: counts never include hidden tags."""

    customer: Customer
    groups: tuple[DimensionGroup, ...]
    count: int
    over_soft_cap: bool
    owner_name: str | None = None  # the owner's display name, where the users table has one


async def customer_summary(
    uow: UnitOfWork, taxonomy: Taxonomy, customer_id: int, viewer: User, now: datetime
) -> CustomerSummary:
    """The customer card's data for `viewer`; lapsed-but-not-yet-expired rows are left out."""
    customer = await uow.customers.get(customer_id)
    if customer is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    active = [a for a in await uow.assignments.active_for(customer_id) if a.expires_at is None or a.expires_at > now]
    reasons: dict[tuple[str, str], str] = {}
    if any(a.source is Source.RULE and a.assigned_by.startswith("rule:") for a in active):
        for event in reversed(await uow.events.for_customer(customer_id, 0, 200)):  # oldest first: newest wins
            note = event.evidence.get("note")
            if event.source is Source.RULE and event.actor.startswith("rule:") and isinstance(note, str):
                reasons[(event.dimension, name_key(event.tag))] = note
    summary = summarise(customer, active, taxonomy, viewer, reasons)
    owner = await uow.users.get(customer.owner) if customer.owner else None
    if owner is not None and owner.display_name:
        summary = replace(summary, owner_name=owner.display_name)
    return summary


async def customer_summaries(
    uow: UnitOfWork, taxonomy: Taxonomy, customers: Sequence[Customer], viewer: User, now: datetime
) -> list[CustomerSummary]:
    """`customer_summary` for a page of customers already read: their tags in one query, not one per card."""
    held = await uow.assignments.active_for_many([c.id for c in customers])
    out = []
    for customer in customers:
        active = [a for a in held.get(customer.id, []) if a.expires_at is None or a.expires_at > now]
        if any(a.source is Source.RULE and a.assigned_by.startswith("rule:") for a in active):
            out.append(await customer_summary(uow, taxonomy, customer.id, viewer, now))  # rule notes: rare
        else:
            out.append(summarise(customer, active, taxonomy, viewer))
    return out


def summarise(
    customer: Customer,
    active: list[Assignment],
    taxonomy: Taxonomy,
    viewer: User,
    reasons: dict[tuple[str, str], str] | None = None,
) -> CustomerSummary:
    """Group `active` by dimension in taxonomy order; hidden dimensions vanish entirely."""
    sees = viewer.role.sees_sensitive
    by_dimension: dict[str, list[Assignment]] = {}
    for a in active:
        by_dimension.setdefault(a.dimension, []).append(a)
    groups: list[DimensionGroup] = []
    for dimension in taxonomy.dimensions:
        rows = by_dimension.pop(dimension.key, [])
        if not rows or not is_visible(dimension, sees):
            continue
        order = {name_key(t.name): (i, t) for i, t in enumerate(dimension.iter_tags())}
        rows.sort(key=lambda a: (order.get(name_key(a.tag), (len(order), None))[0], a.assigned_at))
        views = []
        for a in rows:
            tag = order.get(name_key(a.tag), (0, None))[1]
            if tag is not None and not sees and not in_scope(dimension, tag, customer.region):
                continue  # a regional tag left from before the customer moved region: managers only
            views.append(
                HeldTagView(
                    name=a.tag,
                    color=tag.color if tag else None,
                    source=a.source,
                    assigned_by=a.assigned_by,
                    assigned_at=a.assigned_at,
                    expires_at=a.expires_at,
                    temporary=bool(tag and is_temporary(tag)),
                    retired=tag is None,
                    reason=(reasons or {}).get((a.dimension, name_key(a.tag)))
                    if a.assigned_by.startswith("rule:")
                    else None,
                )
            )
        if views:
            groups.append(DimensionGroup(dimension.key, dimension.name, tuple(views)))
    if sees:  # tags of dimensions that left the taxonomy: shown to managers only, after the rest
        for key, rows in sorted(by_dimension.items()):
            views = [
                HeldTagView(a.tag, None, a.source, a.assigned_by, a.assigned_at, a.expires_at, retired=True)
                for a in rows
            ]
            groups.append(DimensionGroup(key, key, tuple(views)))
    count = sum(len(g.tags) for g in groups)
    return CustomerSummary(customer, tuple(groups), count, count >= SOFT_CAP)
