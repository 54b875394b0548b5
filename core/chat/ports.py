"""Ports for chat-channel bookkeeping: conversation links, stored references, inbound de-duplication and inbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from core.learning.ports import MessageText
from core.ports import NewApplied, UnitOfWork
from core.records import NewSuggestion, SuggestionRecord


@dataclass(frozen=True, slots=True)
class ConversationLink:
    """A chat or channel bound to one customer: every person's message there is matched for it."""

    channel: str
    conversation_id: str
    customer_id: int
    linked_by: str
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class SavedReference:
    """A serialised conversation reference for proactive sends, with the tenant id kept beside it."""

    channel: str
    user_key: str
    reference: Mapping[str, Any]
    tenant_id: str | None
    updated_at: datetime


InboundState = Literal["pending", "done", "failed"]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A stored inbound callback: its body is processed until done, or failed after too many attempts."""

    id: int
    channel: str
    dedupe_key: str
    body: str
    received_at: datetime
    state: InboundState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


class InboundInbox(Protocol):
    """Durable inbox of inbound callbacks; the unique (channel, key) row is also the de-duplication claim.

    Keys longer than the storage column are stored as a stable hash, so distinct long keys never collide.
    """

    async def accept_inbound_many(
        self, channel: str, items: Sequence[tuple[str, str]], now: datetime, lease_until: datetime
    ) -> dict[str, int]:
        """Store (key, body) pairs not seen before as pending (attempt 1, leased until `lease_until`) in
        one statement; returns {key: row id} for the keys stored by this call (retries are absent)."""
        ...

    async def claim_inbound_due(
        self, channel: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[InboundMessage]:
        """Lease up to `limit` pending rows due by `now` (oldest first), counting one more attempt each;
        rows another replica is claiming at the same moment are skipped, never taken twice."""
        ...

    async def finish_inbound(self, message_id: int, now: datetime) -> None:
        """The message's effect is committed: mark it done."""
        ...

    async def retry_inbound(self, message_id: int, now: datetime, next_attempt_at: datetime, error: str) -> None:
        """The attempt failed: keep the row pending, due again at `next_attempt_at`, with the reason."""
        ...

    async def fail_inbound(self, message_id: int, now: datetime, error: str) -> None:
        """Give up on the message (poison): state failed, with the reason."""
        ...

    async def release_inbound_leases(self, message_ids: Sequence[int], now: datetime) -> None:
        """Make interrupted pending rows due at once (shutdown cancelled their processing)."""
        ...

    async def inbound_message(self, channel: str, key: str) -> InboundMessage | None:
        """The stored row for `key` (inspection and tests)."""
        ...


@dataclass(frozen=True, slots=True)
class InboundLease:
    """A stored claim on an incoming activity: `until` is when its turn's lease lapses, None once finished.

    `holder_gone`: the process holding it is gone (PostgreSQL freed its lock as its connection closed), so it
    may be taken before `until`.
    """

    until: datetime | None
    holder_gone: bool = False

    @property
    def finished(self) -> bool:
        return self.until is None


class InboundLeases(Protocol):
    """Leased claims on incoming activities: held while a turn runs, finished once its reply is out.

    Each call is its own short transaction; taking a lease is atomic across replicas.
    """

    async def settle_leases(
        self, channel: str, take: Sequence[str], now: datetime, until: datetime, finish: Sequence[str]
    ) -> set[str]:
        """In one transaction: mark `finish` finished, then hold each `take` key until `until`; returns the
        keys taken: never claimed before, or whose lease lapsed before `now` or whose holder is gone (finished
        and still-held ones are not taken)."""
        ...

    async def inbound_lease(self, channel: str, key: str) -> InboundLease | None:
        """The stored claim on `key` (None: none, e.g. released after a failed turn)."""
        ...

    async def renew_inbound(self, channel: str, keys: Sequence[str], until: datetime) -> None:
        """Extend the leases of turns still running here to `until` (finished claims are left alone)."""
        ...

    async def release_inbound(self, channel: str, key: str) -> None:
        """Forget the claim after a failed turn, so the platform's retry runs it again."""
        ...


class ChannelStore(Protocol):
    """Each call is its own short transaction; all writes are race-safe on SQLite and PostgreSQL."""

    async def claim_inbound(self, channel: str, key: str, now: datetime) -> bool:
        """True the first time `key` is seen on `channel`; False for a retry or a concurrent duplicate."""
        ...

    async def release_inbound(self, channel: str, key: str) -> None:
        """Forget a claim whose processing failed, so the platform's next retry is processed."""
        ...

    async def purge_inbound(self, older_than: datetime) -> int:
        """Drop claims and done inbox rows older than any platform retry window; returns how many."""
        ...

    async def link(self, channel: str, conversation_id: str, customer_id: int, by: str, now: datetime) -> None:
        """Bind (or re-bind) a conversation to a customer."""
        ...

    async def unlink(self, channel: str, conversation_id: str) -> ConversationLink | None:
        """Remove the binding; returns what it was."""
        ...

    async def linked(self, channel: str, conversation_id: str) -> ConversationLink | None: ...

    async def save_reference(
        self, channel: str, user_key: str, reference: Mapping[str, Any], tenant_id: str | None, now: datetime
    ) -> None:
        """Insert or refresh the reference stored under `user_key`."""
        ...

    async def reference(self, channel: str, user_key: str) -> SavedReference | None: ...


@dataclass(frozen=True, slots=True)
class MessageWrite:
    """What `TurnUnitOfWork.write_message` stored: the new suggestions (in order), whether the event was new,
    and whether suggestions of the message were stored before (looked at only when none was new)."""

    added: tuple[SuggestionRecord, ...]
    new_event: bool
    seen: bool
    applied_id: int | None = None  # the assignment `write_message` added (None: none asked, or not added)


class TurnUnitOfWork(UnitOfWork, Protocol):
    """A linked message's unit of work: its suggestions, its text for learning and its event commit together."""

    async def keep_message(self, message_key: str, kept: MessageText | None, event: Any | None, now: datetime) -> bool:
        """Store the message's kept text and its event at once, each unless its key exists; True: a new event."""
        ...

    async def write_message(
        self,
        message_key: str,
        suggestions: Sequence[NewSuggestion],
        kept: MessageText | None,
        event: Any | None,
        now: datetime,
        applied: NewApplied | None = None,
    ) -> MessageWrite:
        """Store the message's suggestions, its kept text and its event at once, each unless its key exists;
        `applied` (only where the store `applies_at_once`) with them, gated on its suggestion being new."""
        ...


class TurnStore(Protocol):
    @property
    def applies_at_once(self) -> bool:
        """Whether `write_message` of a `one_write` unit of work takes `applied` (one statement on PostgreSQL)."""
        ...

    def unit_of_work(self, *, one_write: bool = False) -> TurnUnitOfWork:
        """A turn's unit of work; `one_write`: the block writes only through one `write_message` (which then
        needs no transaction around it where the store can write it as one statement)."""
        ...


class ChatEvents(Protocol):
    """Where chat reports what customers did (customer events and message-triggered rules); never raises."""

    async def message(
        self, customer_id: int, message_key: str, channel: str, tags: tuple[str, ...], now: datetime
    ) -> None: ...

    def message_event(self, customer_id: int, message_key: str, channel: str, now: datetime) -> Any:
        """A message's `message` event, which the turn's own unit of work stores (`after_message` follows)."""
        ...

    async def after_message(
        self, customer_id: int, message_key: str, tags: tuple[str, ...], now: datetime, new: bool
    ) -> None:
        """The rules a message whose `message_event` the turn stored triggers, after its write committed."""
        ...

    async def decided(
        self, customer_id: int, suggestion_id: int, tag: str, accepted: bool, by: str, now: datetime
    ) -> None: ...

    async def contact(self, customer_id: int, added: bool, user_id: str, now: datetime, key: str) -> None:
        """A WeCom contact added (True) or deleted by the customer (False); `key` is the callback's dedupe key."""
        ...
