"""Preview a draft taxonomy over stored messages: which messages would gain or lose which tags.

`compare` is pure (two suggestion sources and the messages); `preview_draft` fetches the last N stored
messages through the `MessageSamples` port and builds the draft's matcher off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tagging.matcher import Matcher
from tagging.suggestion import Suggestion
from tagging.taxonomy import Taxonomy

DEFAULT_MESSAGES = 500
MAX_MESSAGES = 5000
EXAMPLES_PER_TAG = 3
CHANGED_SHOWN = 20


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A customer message as stored with its suggestions (text masked of personal data)."""

    key: str
    customer_id: int
    text: str
    at: datetime


class MessageSamples(Protocol):
    async def recent_messages(self, limit: int) -> list[StoredMessage]:
        """The newest `limit` stored messages, newest first."""
        ...


class SuggestionSource(Protocol):
    def suggest(self, text: str) -> Sequence[Suggestion]: ...


@dataclass(frozen=True, slots=True)
class MessageChange:
    message: StoredMessage
    gained: tuple[str, ...]
    lost: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TagShift:
    """How many messages would gain or lose one tag, with a few of them as examples."""

    dimension: str
    tag: str
    gained: int
    lost: int
    examples: tuple[StoredMessage, ...]


@dataclass(frozen=True, slots=True)
class Preview:
    messages: int
    changed: int
    shifts: tuple[TagShift, ...]
    examples: tuple[MessageChange, ...]


def _tags(source: SuggestionSource, text: str) -> set[tuple[str, str]]:
    return {(s.dimension, s.tag) for s in source.suggest(text)}


def compare(before: SuggestionSource, after: SuggestionSource, messages: Sequence[StoredMessage]) -> Preview:
    """Run both sources over every message and collect the differences."""
    counts: dict[tuple[str, str], list[int]] = {}
    samples: dict[tuple[str, str], list[StoredMessage]] = {}
    changes: list[MessageChange] = []
    changed = 0
    for message in messages:
        old, new = _tags(before, message.text), _tags(after, message.text)
        if old == new:
            continue
        changed += 1
        for key in new - old:
            counts.setdefault(key, [0, 0])[0] += 1
        for key in old - new:
            counts.setdefault(key, [0, 0])[1] += 1
        for key in new ^ old:
            shown = samples.setdefault(key, [])
            if len(shown) < EXAMPLES_PER_TAG:
                shown.append(message)
        if len(changes) < CHANGED_SHOWN:
            changes.append(
                MessageChange(message, tuple(sorted(t for _, t in new - old)), tuple(sorted(t for _, t in old - new)))
            )
    shifts = tuple(
        TagShift(d, t, c[0], c[1], tuple(samples.get((d, t), ())))
        for (d, t), c in sorted(counts.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0]))
    )
    return Preview(len(messages), changed, shifts, tuple(changes))


async def preview_draft(
    samples: MessageSamples, current: SuggestionSource, draft: Taxonomy, limit: int = DEFAULT_MESSAGES
) -> Preview:
    """The draft against the matcher in force over the newest `limit` stored messages."""
    limit = max(1, min(limit, MAX_MESSAGES))
    messages = await samples.recent_messages(limit)
    matcher = await asyncio.to_thread(Matcher.build, draft)
    return await asyncio.to_thread(compare, current, matcher, messages)
