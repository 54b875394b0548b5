"""Ports: the small Protocols that storage implements and services call (one unit of work per request)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from core.records import CustomerDraft, NewEvent, NewSuggestion, SuggestionRecord, TaxonomyVersion
from core.types import Assignment, AssignmentState, Customer, Source, SuggestionStatus, TagEvent, User
from tagging.taxonomy import Taxonomy

# ---------------------------------------------------------------- tag queries (search)


@dataclass(frozen=True, slots=True)
class HasTag:
    """True when the customer actively holds a tag whose name key is one of `name_keys`."""

    name_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[TagQuery, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[TagQuery, ...]


@dataclass(frozen=True, slots=True)
class NoneOf:
    """Negation of one query."""

    part: TagQuery


TagQuery = HasTag | AllOf | AnyOf | NoneOf


# ---------------------------------------------------------------- bulk tag writes


@dataclass(frozen=True, slots=True)
class NewAssignment:
    """An assignment row to insert in bulk; `ended_at` set means it was already replaced in the same batch."""

    customer_id: int
    dimension: str
    tag: str
    source: Source
    assigned_by: str
    assigned_at: datetime
    expires_at: datetime | None
    state: AssignmentState = AssignmentState.ACTIVE
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewApplied:
    """A tag applied by adding it: the active assignment and its `added` event, stored together or not at all
    (with a message's write: only when the message's suggestion of that tag is new and no active row exists)."""

    assignment: NewAssignment
    event: NewEvent


# ---------------------------------------------------------------- repositories


class CustomerRepository(Protocol):
    async def get(self, customer_id: int) -> Customer | None: ...

    async def get_many(self, customer_ids: Sequence[int]) -> list[Customer]: ...

    async def find_exact(self, text: str) -> list[Customer]:
        """Customers whose name, crm id or WeCom external user id equals `text` exactly."""
        ...

    async def find_by_name_key(self, key: str, limit: int) -> list[Customer]:
        """Customers whose normalised name, then company, equals, starts with or contains `key` (best first)."""
        ...

    async def find_for_import(self, draft: CustomerDraft, limit: int = 5) -> list[Customer]:
        """Customers an import row may refer to: by crm id, else WeCom id, else normalised name narrowed by
        the row's company when it gives one; more than one means the row is ambiguous."""
        ...

    async def add(self, draft: CustomerDraft, now: datetime) -> Customer: ...

    async def find_by_external_ids(self, external_user_ids: Sequence[str]) -> dict[str, Customer]:
        """Customers by exact WeCom external user id, in one query; unknown ids are absent."""
        ...

    async def with_wecom_ids(self, after: int, limit: int) -> list[Customer]:
        """Up to `limit` customers holding a WeCom external user id, by id, after customer id `after`."""
        ...

    async def count_with_wecom_ids(self, after: int = 0) -> int:
        """How many customers after id `after` hold a WeCom external user id."""
        ...

    async def update(self, customer_id: int, draft: CustomerDraft, now: datetime) -> Customer: ...

    async def add_many(self, drafts: Sequence[CustomerDraft], now: datetime) -> list[int]:
        """Insert many customers in a few statements; their ids, in the drafts' order."""
        ...

    async def update_many(self, updates: Sequence[tuple[int, CustomerDraft]], now: datetime) -> None:
        """Overwrite many customers (id, draft) in a few statements."""
        ...

    async def find_for_import_many(self, drafts: Sequence[CustomerDraft], limit: int = 5) -> list[list[Customer]]:
        """`find_for_import` for many drafts in a few statements; one answer per draft, in order."""
        ...

    async def refresh_statistics(self) -> None:
        """Let the query planner see the rows a bulk write just added to customers and their tags."""
        ...


class AssignmentRepository(Protocol):
    async def active_for(self, customer_id: int) -> list[Assignment]: ...

    async def holding(
        self, customer_id: int, dimension: str, tag_key: str, *, whole_dimension: bool
    ) -> tuple[int, list[Assignment]]:
        """(how many tags the customer actively holds, its active ones in `dimension` with name key `tag_key`,
        or every active one of `dimension` when `whole_dimension`), in one query: what applying a tag needs."""
        ...

    async def insert_active(
        self,
        customer_id: int,
        dimension: str,
        tag: str,
        source: Source,
        assigned_by: str,
        now: datetime,
        expires_at: datetime | None,
        event: NewEvent | None = None,
    ) -> Assignment | None:
        """Insert an active assignment; None when one is already active (race-safe). `event`: appended to the
        tag-event log when the row was inserted (in the same statement where the database can)."""
        ...

    async def end(self, assignment_id: int, state: AssignmentState, now: datetime) -> bool:
        """Move an active assignment to expired/removed; False when it was no longer active."""
        ...

    async def set_expiry(self, assignment_id: int, expires_at: datetime | None) -> None: ...

    async def active_for_many(self, customer_ids: Sequence[int]) -> dict[int, list[Assignment]]:
        """Active assignments (by id) of each existing customer in one query; missing customers are absent."""
        ...

    async def set_expiries(self, expiries: Mapping[int, datetime]) -> None:
        """Set each assignment's expiry in one statement."""
        ...

    async def end_many(self, ended: Mapping[int, datetime], state: AssignmentState) -> set[int]:
        """End those still active (ended_at per id) in one statement; returns the ids this call ended."""
        ...

    async def insert_many(self, rows: Sequence[NewAssignment]) -> list[Assignment]:
        """Insert in order; an active row that is already active is skipped (race-safe); returns those inserted."""
        ...

    async def lapsed(self, now: datetime, limit: int) -> list[Assignment]:
        """Active assignments whose expiry has passed."""
        ...

    async def expiring_between(self, start: datetime, end: datetime) -> list[Assignment]: ...

    async def get_many(self, assignment_ids: Sequence[int]) -> list[Assignment]:
        """The assignments with these ids, in any state (gone ids are left out), by id."""
        ...

    async def count_by_tag(self, dimension: str, name_key: str) -> int:
        """How many customers actively hold the tag."""
        ...

    async def search(
        self,
        query: TagQuery,
        now: datetime,
        visible_dimensions: Sequence[str] | None,
        skip: int,
        limit: int,
        after: int = 0,
        *,
        count_up_to: int,
    ) -> tuple[list[int], int]:
        """Customer ids (ordered by id, greater than `after`, then `skip` of them skipped) matching `query` among
        active, unexpired tags, and how many customers match (`after` and `skip` aside), counted no further than
        `count_up_to` + 1: a count above `count_up_to` says only that there are more."""
        ...

    async def insert_fresh(self, rows: Sequence[NewAssignment]) -> None:
        """Insert assignments of customers created in this unit of work, in a few statements."""
        ...


class EventRepository(Protocol):
    async def append(self, event: NewEvent) -> TagEvent: ...

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        """Append in order (ids ascend in list order)."""
        ...

    async def for_customer(self, customer_id: int, skip: int, limit: int, before: int = 0) -> list[TagEvent]:
        """Newest first; only events with an id below `before` when it is given (keyset paging)."""
        ...


class SuggestionRepository(Protocol):
    async def add_if_absent(
        self,
        customer_id: int,
        message_key: str,
        dimension: str,
        tag: str,
        score: float,
        evidence: Mapping[str, Any],
        now: datetime,
        status: SuggestionStatus,
        auto_applied: bool,
        decided_by: str | None,
    ) -> SuggestionRecord | None:
        """Store a suggestion unless (message key, dimension, tag) exists already; None then (race-safe)."""
        ...

    async def add_many_if_absent(self, rows: Sequence[NewSuggestion]) -> list[SuggestionRecord]:
        """Store many suggestions in one statement, skipping existing (message key, dimension, tag); the new ones."""
        ...

    async def insert_new(self, rows: Sequence[NewSuggestion]) -> set[tuple[str, str, str]]:
        """add_many_if_absent reading back only the (message key, dimension, tag name_key) of the inserted rows."""
        ...

    async def get(self, suggestion_id: int) -> SuggestionRecord | None: ...

    async def for_message(self, message_key: str) -> list[SuggestionRecord]: ...

    async def decide(self, suggestion_id: int, status: SuggestionStatus, by: str, now: datetime) -> bool:
        """Set the outcome if still pending; False when someone decided first."""
        ...

    async def pending_for(self, customer_id: int) -> list[SuggestionRecord]: ...

    async def expire_pending(self, created_before: datetime, by: str, now: datetime) -> int:
        """Mark every suggestion still pending and created before the cutoff `expired`; returns how many."""
        ...


class UserRepository(Protocol):
    async def get(self, user_id: str) -> User | None: ...

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users among `user_ids` that exist, keyed by id (missing ids are left out)."""
        ...

    async def save(self, user: User, now: datetime) -> User: ...

    async def with_role(self, role: str) -> list[User]: ...


class TaxonomyRepository(Protocol):
    async def current(self) -> TaxonomyVersion | None: ...

    async def current_version(self) -> int | None:
        """The number of the version in force (None before the first), without reading its document."""
        ...

    async def get(self, version: int) -> TaxonomyVersion | None: ...

    async def add_version(self, taxonomy: Taxonomy, by: str, now: datetime, note: str) -> TaxonomyVersion:
        """Store a new version, make it current and materialise its dimensions and tags."""
        ...

    async def history(self) -> list[TaxonomyVersion]:
        """Every version, newest first."""
        ...


class UnitOfWork(Protocol):
    """One transaction: `async with uow:` commits at the end, rolls back when the block raises."""

    @property
    def customers(self) -> CustomerRepository: ...

    @property
    def assignments(self) -> AssignmentRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def suggestions(self) -> SuggestionRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def taxonomies(self) -> TaxonomyRepository: ...

    def discard(self) -> None:
        """Roll back at the end of the block instead of committing (dry runs)."""
        ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Store(Protocol):
    """The database as services see it."""

    def unit_of_work(self, read_only: bool = False) -> UnitOfWork:
        """One transaction; `read_only=True` for work that only reads (no write lock; a write raises)."""
        ...

    async def ping(self) -> None:
        """Run a real query; raises when the database is unreachable."""
        ...
