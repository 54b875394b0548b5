"""What the learning services need from storage, and the records they exchange."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    """How a labelled example came about."""

    ACCEPTED = "accepted"  # a suggestion was accepted (positive)
    REJECTED = "rejected"  # a suggestion was rejected (negative)
    UNDONE = "undone"  # an auto-applied tag was undone (negative)
    MANUAL = "manual"  # a person tagged from a message or by command in a linked chat (positive)
    IMPORTED = "imported"  # a line of labelled history (positive or negative)


@dataclass(frozen=True, slots=True)
class MessageText:
    """A chat message's masked text, remembered so a later decision on it becomes an example."""

    message_key: str
    channel: str
    conversation_id: str
    customer_id: int | None
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewExample:
    """One labelled example; `text` is already masked."""

    text: str
    dimension: str
    tag: str
    positive: bool
    outcome: Outcome
    customer_id: int | None
    created_at: datetime
    message_key: str | None = None


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A trained model row; `arrays` is None when only the summary was read."""

    version: int
    created_at: datetime
    training_size: int
    metrics: Sequence[Mapping[str, Any]]
    meta: Mapping[str, Any]
    arrays: bytes | None = None


class MessageTexts(Protocol):
    """Remembered message texts inside a caller's transaction."""

    async def remember(self, messages: Sequence[MessageText]) -> None:
        """Keep each text unless its message key is kept already."""
        ...


class LearningStore(Protocol):
    """Examples, remembered message texts and trained models; each call is its own transaction."""

    async def remember_messages(self, messages: Sequence[MessageText]) -> None: ...

    async def message_text(self, message_key: str) -> MessageText | None: ...

    async def last_message(self, channel: str, conversation_id: str, since: datetime) -> MessageText | None: ...

    async def add_examples(self, examples: Sequence[NewExample]) -> int: ...

    async def add_history(
        self,
        lines: Sequence[tuple[str, Sequence[tuple[str, str]]]],
        tags: Sequence[tuple[str, str]],
        now: datetime,
        progress: Callable[[int], None] | None = None,
    ) -> int: ...

    async def examples(self) -> list[NewExample]: ...

    async def count_examples(self, since: datetime | None = None) -> int: ...

    async def unlabelled_texts(self, limit: int) -> list[str]: ...

    async def forget_customer(self, customer_id: int) -> tuple[int, int]: ...

    async def purge(self, before: datetime) -> tuple[int, int]: ...

    async def save_model(
        self, meta: Mapping[str, Any], arrays: bytes, metrics: Sequence[Mapping[str, Any]], size: int, now: datetime
    ) -> int: ...

    async def latest_model(self, with_arrays: bool = True) -> StoredModel | None: ...

    async def latest_model_version(self) -> int | None: ...
