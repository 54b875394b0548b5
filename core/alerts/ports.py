"""Ports for alerts: the outbox, alert scans, acknowledgements and the per-channel delivery seam."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from core.alerts.selection import ChurnSeeds, CustomerFacts, ExpiringTag
from core.ports import UnitOfWork
from core.records import NewEvent
from core.types import Assignment, Source, User

# Payload key under which the outbox keeps the claim time of the first attempt whose outcome is unknown:
# resending is safe only within the platform's duplicate-check window measured from that attempt.
UNSURE_SINCE = "outbox_unsure_since"


class OutboxState(StrEnum):
    """pending → sending → sent / failed / unknown (a crash while sending leaves `unknown`)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One queued proactive message for one recipient on one channel."""

    id: int
    dedupe_key: str
    recipient: str
    channel: str
    payload: Mapping[str, Any]
    state: OutboxState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def unsure_since(self) -> datetime:
        """When the first attempt with an unknown outcome was claimed (rows from before: the last claim)."""
        raw = self.payload.get(UNSURE_SINCE)
        return datetime.fromisoformat(str(raw)) if raw else self.updated_at


@dataclass(frozen=True, slots=True)
class NewOutboxMessage:
    """A message about to be enqueued; `not_before` holds it (quiet hours)."""

    dedupe_key: str
    recipient: str
    channel: str
    payload: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class BulkTag:
    """One tag applied to many customers at once by a rule: who, when, and the assignment's expiry."""

    dimension: str
    tag: str
    source: Source
    actor: str
    now: datetime
    expires_at: datetime | None


class OutboxRepository(Protocol):
    async def enqueue(self, message: NewOutboxMessage, now: datetime) -> bool:
        """Insert unless the dedupe key exists (race-safe); True when inserted."""
        ...

    async def enqueue_many(self, messages: Sequence[NewOutboxMessage], now: datetime) -> int:
        """Insert those whose dedupe key is new, in one statement; returns how many were inserted."""
        ...

    async def claim(
        self,
        now: datetime,
        limit: int,
        channels: Sequence[str] | None = None,
        busy: Sequence[tuple[str, str | None]] = (),
    ) -> list[OutboxMessage]:
        """Move due pending rows (of `channels` only, when given; of no endpoint in `busy`: (channel, recipient),
        or (channel, None) for the whole channel) to `sending` (attempts + 1) so no other replica takes them."""
        ...

    async def due_by_channel(self, now: datetime) -> dict[str, int]:
        """Pending rows due now, per channel."""
        ...

    async def by_keys(self, dedupe_keys: Sequence[str]) -> list[OutboxMessage]:
        """The rows with those de-duplication keys (any state)."""
        ...

    async def mark_sent(self, message_id: int, now: datetime, note: str) -> bool: ...

    async def mark_retry(self, message_id: int, now: datetime, next_attempt_at: datetime, error: str) -> bool: ...

    async def mark_failed(self, message_id: int, now: datetime, error: str) -> bool: ...

    async def mark_stale_unknown(self, claimed_before: datetime, now: datetime) -> list[OutboxMessage]:
        """`sending` rows claimed before the cutoff (their sender died) become `unknown`; returns them.

        The first time a row becomes `unknown`, its claim time is kept in the payload under UNSURE_SINCE, so
        the resend window is measured from that attempt however often the row is re-queued.
        """
        ...

    async def mark_unknown(self, message_id: int, error: str) -> bool:
        """A `sending` row whose outcome nobody knows; keeps UNSURE_SINCE as mark_stale_unknown does."""
        ...

    async def requeue_unknown(self, message_id: int, now: datetime, note: str, at: datetime | None = None) -> bool:
        """Put an `unknown` row back to pending, due at `at` (default now), keeping UNSURE_SINCE."""
        ...

    async def fail_unknown(self, message_id: int, now: datetime, error: str) -> bool:
        """An `unknown` row that will not be resent becomes `failed` with the reason."""
        ...

    async def settle_unknown(self, message_id: int, now: datetime, note: str) -> bool:
        """An `unknown` row a person confirmed as delivered becomes `sent`."""
        ...

    async def unknown(self, limit: int) -> list[OutboxMessage]: ...

    async def get(self, message_id: int) -> OutboxMessage | None: ...

    async def counts(self) -> dict[str, int]:
        """Rows per state."""
        ...


class AlertScanRepository(Protocol):
    """Streaming reads over the whole customer base (memory stays flat) and bulk expiry writes."""

    def expiring(self, after: datetime, until: datetime) -> AsyncIterator[ExpiringTag]:
        """Active assignments expiring in (after, until], with their customer's owner and region."""
        ...

    async def customer_facts(
        self, after_id: int, since: datetime, watched_tags: Sequence[str], negative_dimension: str, limit: int
    ) -> list[CustomerFacts]:
        """The next `limit` customers by id after `after_id`, with what churn scoring needs (keyset page)."""
        ...

    async def churn_candidates(self, seeds: ChurnSeeds) -> list[int]:
        """Ids (ascending) of the customers meeting `seeds`, selected by index rather than by walking all."""
        ...

    async def facts_for(
        self, customer_ids: Sequence[int], since: datetime, watched_tags: Sequence[str], negative_dimension: str
    ) -> list[CustomerFacts]:
        """What churn scoring needs about these customers (those that still exist), in id order."""
        ...

    async def fold_tag_counts(self) -> int:
        """Fold the tag counts' change log into their totals; returns how many changes were folded."""
        ...

    async def tag_many(self, customer_ids: Sequence[int], tag: BulkTag, hard_cap: int) -> list[int]:
        """Add `tag` (active) to each existing customer below `hard_cap` active tags that lacks it; returns them."""
        ...

    async def untag_many(
        self,
        customer_ids: Sequence[int],
        dimension: str,
        tag: str,
        source: str,
        now: datetime,
        actor: str | None = None,
    ) -> list[int]:
        """Remove the active tag where `source` (and `actor`, when given) applied it; returns whose was removed."""
        ...

    async def lapsed_ids(self, now: datetime, limit: int) -> list[int]:
        """Ids of active assignments whose expiry has passed (oldest first)."""
        ...

    async def expire(self, assignment_ids: Sequence[int], now: datetime) -> list[Assignment]:
        """Move those still active to `expired`; returns the rows this call changed."""
        ...

    async def append_events(self, events: Sequence[NewEvent]) -> None: ...

    async def managers(self) -> list[User]: ...

    async def reference_channels(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        """Channels each user has a stored conversation reference on."""
        ...


class AcknowledgementRepository(Protocol):
    async def record(self, alert_key: str, user_id: str, action: str, until: datetime | None, now: datetime) -> None:
        """Insert or replace the user's acknowledgement/snooze of `alert_key`."""
        ...

    async def suppressed_many(
        self, user_ids: Sequence[str], keys: Sequence[str], now: datetime
    ) -> set[tuple[str, str]]:
        """(user, key) pairs, among those users and keys, acknowledged or snoozed until after `now`."""
        ...

    async def suppressed(self, user_id: str, keys: Sequence[str], now: datetime) -> set[str]:
        """Which of `keys` this user acknowledged, or snoozed until after `now`."""
        ...

    async def get(self, alert_key: str, user_id: str) -> tuple[str, datetime | None, datetime] | None:
        """(action, until, at) of the user's acknowledgement of `alert_key`."""
        ...


class ActivityRepository(Protocol):
    async def record_message(self, customer_id: int, channel: str, now: datetime) -> None:
        """Note that the customer talked with us now (for the 'no conversation for N days' signal)."""
        ...

    async def record_messages(self, last_at: Mapping[int, datetime], channel: str) -> None:
        """record_message for many customers at once, each with the time of its latest message."""
        ...

    async def record_agent_removed(self, customer_id: int, agent: str, now: datetime) -> None:
        """Note that the customer deleted their agent (WeCom del_follow_user)."""
        ...

    async def record_agent_readded(self, customer_id: int, now: datetime) -> None:
        """Clear the agent-removed signal: the customer added an agent again (WeCom add_external_contact)."""
        ...


class AlertUnitOfWork(UnitOfWork, Protocol):
    """The ordinary unit of work plus the alert repositories, all in one transaction."""

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def scans(self) -> AlertScanRepository: ...

    @property
    def acknowledgements(self) -> AcknowledgementRepository: ...

    @property
    def activity(self) -> ActivityRepository: ...

    async def __aenter__(self) -> AlertUnitOfWork: ...


class AlertStore(Protocol):
    """Hands out alert units of work; `dialect` tells the docs/benchmarks which database it is."""

    @property
    def dialect(self) -> str: ...

    def unit_of_work(self) -> AlertUnitOfWork: ...


# ---------------------------------------------------------------- delivery seam


class DeliveryOutcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # 429, 5xx, network: try again later with backoff
    PERMANENT = "permanent"  # will not heal by retrying (blocked, unknown user, no conversation)


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: DeliveryOutcome
    reason: str = ""
    external_id: str = ""


class Deliverer(Protocol):
    """Sends one outbox message through one channel; never raises for platform failures.

    A deliverer whose recipients are separate servers (webhooks) sets `per_recipient = True`: the drain then
    gives each recipient its own lane; otherwise the whole channel (one platform API) is one lane.
    """

    @property
    def channel(self) -> str: ...

    @property
    def resend_is_safe(self) -> bool:
        """True when the platform drops an identical resend (WeCom duplicate check), so `unknown` may retry."""
        ...

    async def deliver(self, message: OutboxMessage) -> Delivery: ...
