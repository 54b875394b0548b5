"""Finding a customer from what a person types, and a customer's tag history."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import NotFoundError
from core.ports import UnitOfWork
from core.types import Customer, TagEvent, User
from tagging.normaliser import name_key
from tagging.policy import is_visible
from tagging.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class Resolution:
    """Exactly one `customer`, or `candidates` for the person to choose from (possibly none)."""

    customer: Customer | None
    candidates: tuple[Customer, ...] = ()


async def resolve_customer(uow: UnitOfWork, text: str, limit: int = 5) -> Resolution:
    """Exact name / crm id / external id first, then normalised equal, prefix, contains (best first)."""
    wanted = text.strip()
    if not wanted:
        return Resolution(None)
    exact = await uow.customers.find_exact(wanted)
    if len(exact) == 1:
        return Resolution(exact[0])
    if exact:
        return Resolution(None, tuple(exact[:limit]))
    key = name_key(wanted)
    found = await uow.customers.find_by_name_key(key, limit)
    same = [c for c in found if name_key(c.name) == key]
    if len(same) == 1:
        return Resolution(same[0])
    if len(found) == 1:
        return Resolution(found[0])
    return Resolution(None, tuple(found))


async def customer_history(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    customer_id: int,
    viewer: User,
    skip: int = 0,
    limit: int = 50,
    before: int = 0,
) -> list[TagEvent]:
    """The customer's tag events, newest first (older than event id `before` when given), without events of
    dimensions hidden from the viewer."""
    if await uow.customers.get(customer_id) is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    sees = viewer.role.sees_sensitive
    events = await uow.events.for_customer(customer_id, skip, limit, before)
    if sees:
        return events
    return [e for e in events if is_visible(taxonomy.dimension(e.dimension), sees)]
