"""Ports for rules: the customer-event stream and the fact scans rules evaluate over."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Protocol

from core.alerts.ports import AlertUnitOfWork, OutboxMessage
from core.rules.engine import Facts, Prefilter
from core.types import TagEvent


@dataclass(frozen=True, slots=True)
class NewCustomerEvent:
    """A customer event about to be stored (`event_id` is the sender's idempotency key)."""

    event_id: str
    customer_id: int
    kind: str
    at: datetime
    amount: float | None
    properties: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "import"
    digest: str = ""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored chat message, as rules see it: which tags it matched (from its suggestions)."""

    customer_id: int
    message_key: str
    at: datetime
    tags: frozenset[str]  # name keys


Counts = Mapping[int, Mapping[tuple[str, int], tuple[int, float]]]  # customer → (kind, days) → (count, sum)


@dataclass(frozen=True, slots=True)
class Candidates:
    """Customers a prefilter selected (ascending ids) and, for an event prefilter, each one's (count, sum) in its
    window, read by the same statement (so the rules need not count those events again)."""

    ids: Sequence[int]
    window: tuple[str, int] | None = None
    counts: Sequence[tuple[int, float]] = ()  # parallel to ids when `window` is set

    def known(self, start: int, stop: int) -> Counts | None:
        """The window's counts of ids[start:stop] (None without an event window)."""
        if self.window is None:
            return None
        window = self.window
        return {cid: {window: self.counts[i]} for i, cid in enumerate(self.ids[start:stop], start)}


class CustomerEventRepository(Protocol):
    async def resolve(self, identifiers: Sequence[str]) -> dict[str, list[int]]:
        """Customer ids per identifier: crm_id, then WeCom external user id, then exact name."""
        ...

    async def digests(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The stored content digest of each of those event ids that exists."""
        ...

    async def insert_many(self, events: Sequence[NewCustomerEvent], now: datetime) -> list[str]:
        """Insert those whose event id is new (race-safe); returns the inserted event ids."""
        ...

    async def insert_one(self, event: NewCustomerEvent, now: datetime) -> bool:
        """Insert one event unless its id exists (one statement); True when it was new."""
        ...

    async def count(self) -> int: ...


class RuleFactsRepository(Protocol):
    async def page(self, after_id: int, limit: int) -> list[int]:
        """The next `limit` customer ids after `after_id` (keyset page)."""
        ...

    async def facts(
        self, customer_ids: Sequence[int], windows: Sequence[tuple[str, int]], now: datetime
    ) -> list[Facts]:
        """Each customer's fields, active tags, last conversation and event counts/sums per window."""
        ...

    async def candidates(
        self, rule_filter: Prefilter, now: datetime, today: date, among: Sequence[int] | None = None
    ) -> Candidates:
        """Customers passing the prefilter (of `among` only, when given), in one set-based statement per chunk."""
        ...

    async def event_counts(
        self, customer_ids: Sequence[int], windows: Sequence[tuple[str, int]], now: datetime
    ) -> dict[int, dict[tuple[str, int], tuple[int, float]]]:
        """(count, sum of amounts) per customer and (kind, days) window, one GROUP BY per chunk of customers."""
        ...

    async def contacts(self, customer_ids: Sequence[int]) -> dict[int, list[int]]:
        """The contacts of each company customer (customers whose `parent` attribute names it)."""
        ...

    async def remove_many(self, customer_ids: Sequence[int], tag: str, now: datetime) -> list[tuple[int, str, str]]:
        """End the active tag (any dimension, any source) on those customers; returns (customer, dimension, tag)."""
        ...

    async def tag_events_after(self, last_id: int, limit: int) -> list[TagEvent]: ...

    async def last_tag_event_id(self) -> int:
        """The newest tag event id (0 for an empty log)."""
        ...

    async def cursor(self, name: str) -> int | None: ...

    async def move_cursor(self, name: str, old: int | None, new: int, now: datetime) -> bool:
        """Compare-and-set the cursor; False when another process moved it first."""
        ...

    async def messages(self, since: datetime, limit: int) -> list[StoredMessage]:
        """Stored messages since `since` (newest first), with the tags each matched."""
        ...

    async def event_customers(self, kinds: Sequence[str], since: datetime) -> dict[int, set[str]]:
        """Customers with events since `since` (of `kinds`; empty = any), and the kinds they had."""
        ...

    async def tag_changes(self, tag_keys: Sequence[str], since: datetime) -> dict[int, str]:
        """Customers whose tags among `tag_keys` changed since `since`, with the latest changed tag."""
        ...


class WebhookCallRepository(Protocol):
    async def failed(self, limit: int) -> list[OutboxMessage]:
        """Webhook outbox rows that failed for good."""
        ...

    async def requeue(self, message_id: int, now: datetime, note: str) -> bool:
        """A failed row back to pending, due now, attempts reset."""
        ...


class RulesUnitOfWork(AlertUnitOfWork, Protocol):
    @property
    def customer_events(self) -> CustomerEventRepository: ...

    @property
    def webhooks(self) -> WebhookCallRepository: ...

    @property
    def rule_facts(self) -> RuleFactsRepository: ...

    async def __aenter__(self) -> RulesUnitOfWork: ...


class RulesStore(Protocol):
    @property
    def dialect(self) -> str: ...

    def unit_of_work(self, read_only: bool = False) -> RulesUnitOfWork: ...
