"""View models the card builders render: small, typed, built by services from core/tagging types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from core.types import Customer, SuggestionStatus


@dataclass(frozen=True, slots=True)
class TagView:
    """One tag a customer holds; `level` 1 is top-level, `parent` names the tag one level up."""

    name: str
    dimension_name: str
    color: str | None = None
    expires_at: datetime | None = None
    level: int = 1
    parent: str | None = None
    sensitive: bool = False
    reason: str | None = None  # why an automation rule applied it
    icon: str | None = None  # the taxonomy's emoji for the tag


@dataclass(frozen=True, slots=True)
class DimensionView:
    """A dimension and the customer's tags in it; `sensitive` dimensions are for managers only."""

    name: str
    tags: tuple[TagView, ...]
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class CustomerSummaryView:
    """A customer with their tags grouped by dimension, for one viewer.

    Sensitive tags are shown only when `viewer_sees_sensitive`; otherwise they are dropped without a trace.
    `hidden_note` is shown as-is to viewers who cannot see sensitive tags; it must be a fixed sentence that
    does not depend on the customer's data (or None).
    """

    customer: Customer
    dimensions: tuple[DimensionView, ...]
    viewer_sees_sensitive: bool = False
    hidden_note: str | None = None
    owner_name: str | None = None  # the owner's display name where known (else the owner id is shown)


@dataclass(frozen=True, slots=True)
class SuggestionItem:
    """One suggested tag with its evidence and (once decided) who decided what and when."""

    id: int
    tag: str
    dimension_name: str
    matched: tuple[str, ...]
    excerpt: str
    score: float
    status: SuggestionStatus = SuggestionStatus.PENDING
    decided_by: str | None = None
    decided_at: datetime | None = None
    color: str | None = None
    learned: bool = False  # from the learned model (模型建议), not a keyword
    icon: str | None = None


@dataclass(frozen=True, slots=True)
class SuggestionCardView:
    """The suggestions raised by one customer message."""

    customer_id: int
    customer_name: str
    items: tuple[SuggestionItem, ...]


@dataclass(frozen=True, slots=True)
class AppliedItem:
    """A tag applied automatically; `undone_by`/`undone_at` are set once someone pressed Undo."""

    assignment_id: int
    tag: str
    dimension_name: str
    matched: tuple[str, ...] = ()
    color: str | None = None
    expires_at: datetime | None = None
    undone_by: str | None = None
    undone_at: datetime | None = None
    icon: str | None = None


@dataclass(frozen=True, slots=True)
class AppliedCardView:
    """Tags auto-applied from one message, each with an Undo button."""

    customer_id: int
    customer_name: str
    items: tuple[AppliedItem, ...]


@dataclass(frozen=True, slots=True)
class CustomerHit:
    """One search result: a customer, a few of their tags and which of those the search asked for."""

    customer: Customer
    tags: tuple[TagView, ...] = ()
    matched: frozenset[str] = frozenset()  # names of `tags` the query named, shown first


@dataclass(frozen=True, slots=True)
class SearchResultsView:
    """One page of customer search results; `page` is 1-based and `total` counts every match, or with
    `total_is_lower_bound` only the first of more."""

    query: str
    hits: tuple[CustomerHit, ...]
    total: int
    page: int = 1
    page_size: int = 10
    viewer_sees_sensitive: bool = False
    total_is_lower_bound: bool = False


@dataclass(frozen=True, slots=True)
class ChoiceView:
    """Several customers match a name: the user picks one; `context` is echoed in each button's data."""

    query: str
    candidates: tuple[Customer, ...]
    context: Mapping[str, str | int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class AlertReason:
    """Why an alert fired, with the weight the rule gave it (0..1)."""

    text: str
    weight: float
    customer_id: int | None = None  # set when the reason is about one customer (a digest row)


@dataclass(frozen=True, slots=True)
class AlertView:
    """A manager alert (churn risk, expiring tags) and its handling state."""

    id: int
    title: str
    customer_id: int
    customer_name: str
    reasons: tuple[AlertReason, ...]
    raised_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    owner: str = ""  # who looks after the customer (display name where known)
    unlisted: int = 0  # further items the alert counted but does not list
    page: int = 0  # a digest opened in full: this page of `pages` (0: not paged)
    pages: int = 0
