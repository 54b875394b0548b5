"""Ports for chat-channel bookkeeping: conversation links, stored references, inbound de-duplication."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


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


class ChannelStore(Protocol):
    """Each call is its own short transaction; all writes are race-safe on SQLite and PostgreSQL."""

    async def claim_inbound(self, channel: str, key: str, now: datetime) -> bool:
        """True the first time `key` is seen on `channel`; False for a retry or a concurrent duplicate."""
        ...

    async def release_inbound(self, channel: str, key: str) -> None:
        """Forget a claim whose processing failed, so the platform's next retry is processed."""
        ...

    async def purge_inbound(self, older_than: datetime) -> int:
        """Drop claims older than any platform retry window; returns how many."""
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
