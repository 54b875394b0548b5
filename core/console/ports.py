"""Ports the console reads through (storage implements them) and the WeCom web sign-in port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from core.types import Customer


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat linked to a customer (Teams or WeCom)."""

    channel: str
    conversation_id: str
    linked_by: str
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """Tags added (added or replacing) on one day (UTC) for one tag."""

    day: date
    dimension: str
    tag_key: str
    added: int


@dataclass(frozen=True, slots=True)
class PairCount:
    """Customers actively holding both tags (any dimensions); keys are (dimension, tag name key)."""

    a: tuple[str, str]
    b: tuple[str, str]
    shared: int


@dataclass(frozen=True, slots=True)
class OutboxState:
    """Alert outbox rows in one state, and the oldest of them."""

    state: str
    count: int
    oldest: datetime | None


class ConsoleQueries(Protocol):
    async def customers_by_name(self, key: str, skip: int, limit: int) -> tuple[list[Customer], int]:
        """Customers whose normalised name or company contains `key`, by id, and how many there are (counted
        up to 10,000 and one more, so a broad search stays fast)."""
        ...

    async def conversations(self, customer_id: int) -> list[Conversation]: ...

    async def usage(self, since: datetime) -> list[UsagePoint]:
        """Daily additions per tag since `since`."""
        ...

    async def cooccurrence(self, now: datetime, tags: Sequence[tuple[str, str]]) -> list[PairCount]:
        """Shared active holders of every pair among `tags`."""
        ...

    async def outbox_states(self) -> list[OutboxState]: ...


class SignInError(Exception):
    """A sign-in that must be refused; the message is safe to show (no secrets)."""


class WeComSignIn(Protocol):
    """WeCom web sign-in: exchange the OAuth `code` for the member's userid."""

    async def userid_for_code(self, code: str) -> str:
        """The WeCom userid; raises SignInError for a bad or expired code or a non-member."""
        ...
