"""Port for durable tag pushes: customers whose Kebiao tags must still be mirrored to WeCom.

A row says only "this customer needs a push"; the tags themselves are recomputed from Kebiao's current
state when the push runs, so a retry never re-adds a tag removed meanwhile. Rows come from two places: the
flows that call the sync hook right after a change (low latency), and a persisted cursor over the
append-only tag-event log (`mark_from_events`), which catches every change whichever code path made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PendingPush:
    """One customer waiting for a push; `generation` grows with every new change (guards the delete)."""

    customer_id: int
    generation: int
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EventScan:
    """What one pass over the tag-event log did.

    `started`: the cursor did not exist and was set to the newest event (history is not replayed).
    `busy`: another replica held the cursor; nothing was read. `waiting`: the scan stopped before an event
    id that may still belong to an uncommitted transaction (PostgreSQL); a later pass continues there.
    """

    cursor: int
    events: int = 0
    marked: int = 0
    started: bool = False
    busy: bool = False
    waiting: bool = False


class PendingTagPushes(Protocol):
    """Each call is its own short transaction; claims are race-safe across replicas (SKIP LOCKED on PostgreSQL)."""

    async def mark(self, customer_id: int, now: datetime, lease_until: datetime) -> PendingPush | None:
        """Record (or re-record, bumping the generation) that the customer needs a push; None if it is gone.

        The row is not claimable before `lease_until`, so the drain does not race the push about to run.
        """
        ...

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[PendingPush]:
        """Take up to `limit` rows due at `now`, hiding them from other claimers until `lease_until`."""
        ...

    async def done(self, customer_id: int, generation: int) -> bool:
        """Delete the row after a successful push, unless a newer change re-marked it meanwhile."""
        ...

    async def failed(self, customer_id: int, now: datetime, next_attempt_at: datetime, error: str) -> int | None:
        """Count a failed push and schedule the next; returns the attempts so far (None: row gone)."""
        ...

    async def make_due(self, now: datetime) -> int:
        """Make every waiting row due now (an operator asked for a full sync); returns how many."""
        ...

    async def get(self, customer_id: int) -> PendingPush | None: ...

    async def count(self) -> int:
        """How many customers still wait for a push."""
        ...

    async def mark_from_events(self, cursor: str, now: datetime, limit: int) -> EventScan:
        """In one transaction: read up to `limit` tag events after the named cursor (by id), mark their
        customers that have an owner and a WeCom external user id (as `mark` does, but due at `now`), and
        advance the cursor past them. A missing cursor is created at the newest event id, marking nothing."""
        ...

    async def tags_in_history(self, customer_id: int) -> list[tuple[str, str]]:
        """Every (dimension, tag) the customer's event log names: the tags Kebiao has ever managed on it."""
        ...
