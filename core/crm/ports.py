"""Ports for the sync's own state: cursor and lease, customer links, pending CRM writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from core.ports import UnitOfWork


class LinkState(StrEnum):
    LINKED = "linked"
    DELETED = "deleted"  # the CRM record was deleted: the customer is kept
    MERGED = "merged"  # merged into another record (`merged_into`): the customer is kept


@dataclass(frozen=True, slots=True)
class CrmLink:
    """A customer's link to its CRM record; `synced` holds each synced dimension's tags at the last sync."""

    customer_id: int
    crm_id: str
    kind: str
    state: LinkState
    synced: Mapping[str, tuple[str, ...]]
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class SyncState:
    """One connector's sync row: cursor, lease, last outcome."""

    connector: str
    cursor: str | None
    lease_owner: str | None
    lease_until: datetime | None
    last_started_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    records: int


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """A customer whose Kebiao-mastered tags must still be written to the CRM."""

    customer_id: int
    generation: int
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


class LeaseLost(RuntimeError):
    """Another replica took over the sync; this one stops without committing its page."""


class CrmStateRepository(Protocol):
    """Sync state inside one unit of work (so a page's writes and its cursor commit together)."""

    async def customers_by_crm_id(self, crm_ids: Sequence[str]) -> dict[str, int]: ...

    async def add_customers(
        self,
        rows: Sequence[tuple[str, str]],
        now: datetime,
        attributes: Mapping[str, tuple[Mapping[str, str], str]] | None = None,
    ) -> dict[str, int]:
        """Create customers from (crm_id, name) pairs, with their (attributes, region) by crm_id;
        returns crm_id -> customer id."""
        ...

    async def customer_attributes(self, customer_ids: Sequence[int]) -> dict[int, tuple[Mapping[str, str], str]]:
        """Each customer's free attributes and region."""
        ...

    async def save_attributes(self, rows: Mapping[int, tuple[Mapping[str, str], str]], now: datetime) -> None:
        """Replace these customers' attributes and region."""
        ...

    async def links(self, connector: str, customer_ids: Sequence[int]) -> dict[int, CrmLink]: ...

    async def save_links(self, connector: str, links: Sequence[CrmLink], now: datetime) -> None: ...

    async def mark_pending(self, connector: str, customer_ids: Sequence[int], now: datetime) -> None:
        """Record (or bump) that these customers need a CRM write, due now."""
        ...

    async def save_cursor(self, connector: str, owner: str, cursor: str | None, records: int, now: datetime) -> None:
        """Advance the cursor if `owner` still holds the lease, else raise LeaseLost."""
        ...


class CrmUnitOfWork(UnitOfWork, Protocol):
    @property
    def crm(self) -> CrmStateRepository: ...

    async def __aenter__(self) -> CrmUnitOfWork: ...


class CrmStore(Protocol):
    """Short transactions of their own, plus units of work that include the sync state."""

    def unit_of_work(self, read_only: bool = False) -> CrmUnitOfWork: ...

    async def acquire(self, connector: str, owner: str, now: datetime, until: datetime) -> bool:
        """Take (or extend) the sync lease; False when another replica holds it."""
        ...

    async def release(
        self, connector: str, owner: str, now: datetime, error: str | None, *, record: bool = True
    ) -> None:
        """Give the lease back, recording success (error None) or the failure unless `record` is False."""
        ...

    async def reset_cursor(self, connector: str, owner: str) -> None: ...

    async def refresh_statistics(self) -> None:
        """Let the database re-plan after a bulk load (a first sync grows customers and tags by thousands)."""
        ...

    async def state(self, connector: str) -> SyncState | None: ...

    async def claim_writes(self, connector: str, now: datetime, until: datetime, limit: int) -> list[PendingWrite]: ...

    async def write_done(self, connector: str, customer_id: int, generation: int, synced: CrmLink) -> None:
        """Delete the pending row unless re-marked meanwhile, and store the link's new synced tags."""
        ...

    async def write_failed(
        self, connector: str, customer_id: int, now: datetime, next_attempt_at: datetime, error: str
    ) -> None: ...

    async def mark_link(self, connector: str, customer_id: int, state: LinkState, merged_into: str | None) -> None:
        """Mark a link deleted or merged and drop its pending write."""
        ...

    async def pending(self, connector: str) -> tuple[int, int]:
        """How many writes wait, and how many of them have failed at least once."""
        ...

    async def failures(self, connector: str, limit: int) -> list[PendingWrite]: ...

    async def mark_from_events(self, connector: str, dimensions: Sequence[str], now: datetime, limit: int) -> int:
        """Mark linked customers named by tag events after the push cursor in `dimensions` (made by
        anyone but the CRM itself); advances the cursor; returns how many customers were marked."""
        ...

    async def mark_all_linked(self, connector: str, now: datetime) -> int:
        """Mark every linked customer for a write (full sync); returns how many."""
        ...
