"""Finding customers by tag expression (VIP客户 AND 询价客户 NOT 沉默客户), with paging."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.ports import AllOf, AnyOf, HasTag, NoneOf, TagQuery, UnitOfWork
from core.tags.expression import And, Expr, Not, Or, TagRef, parse_expression
from core.types import Customer, User
from tagging.normaliser import name_key
from tagging.policy import UnknownTagError, close_matches, is_visible, visible_dimension_keys
from tagging.taxonomy import Taxonomy

MAX_PAGE = 100
# Matches are counted up to this many; past it a page says "more than COUNT_UP_TO" instead of reading every match.
COUNT_UP_TO = 1_000


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of matches; `total` counts every match unless `total_is_lower_bound` (then there are more)."""

    customers: tuple[Customer, ...]
    total: int
    skip: int
    count: int
    after: int = 0
    total_is_lower_bound: bool = False

    @property
    def next_after(self) -> int | None:
        """The `after` of the next page (the last customer id on this one), or None on the last page."""
        return self.customers[-1].id if len(self.customers) == self.count else None


def to_query(expr: Expr, taxonomy: Taxonomy, sees_sensitive: bool) -> TagQuery:
    """Translate the parsed expression, refusing names the viewer may not use (as unknown, not as hidden)."""
    match expr:
        case TagRef(name):
            key = name_key(name)
            known = [d for d in taxonomy.dimensions for t in d.iter_tags() if name_key(t.name) == key]
            if not any(is_visible(d, sees_sensitive) for d in known):
                raise UnknownTagError(name, close_matches(taxonomy, name, sees_sensitive))
            return HasTag((key,))
        case Not(operand):
            return NoneOf(to_query(operand, taxonomy, sees_sensitive))
        case And(operands):
            return AllOf(tuple(to_query(o, taxonomy, sees_sensitive) for o in operands))
        case Or(operands):
            return AnyOf(tuple(to_query(o, taxonomy, sees_sensitive) for o in operands))
    raise TypeError(f"not a tag expression: {expr!r}")


async def search_customers(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    expression: str,
    viewer: User,
    now: datetime,
    skip: int = 0,
    count: int = 25,
    after: int = 0,
) -> SearchPage:
    """Customers matching `expression` (by id, past customer id `after` when given: keyset paging); raises
    ExpressionError or UnknownTagError on bad input."""
    if skip < 0 or count < 1 or after < 0:
        raise ValueError("skip and after must be >= 0 and count >= 1")
    count = min(count, MAX_PAGE)
    sees = viewer.role.sees_sensitive
    query = to_query(parse_expression(expression), taxonomy, sees)
    visible = None if sees else visible_dimension_keys(taxonomy, sees)
    ids, total = await uow.assignments.search(query, now, visible, skip, count, after, count_up_to=COUNT_UP_TO)
    customers = await uow.customers.get_many(ids)
    more = total > COUNT_UP_TO
    return SearchPage(tuple(customers), min(total, COUNT_UP_TO), skip, count, after, more)
