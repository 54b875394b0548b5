"""Training data capture: each decision on a message becomes a labelled example (text masked).

Capture is best-effort by design: a person's click must succeed even when the example cannot be written,
so every failure here is logged and swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from core.learning.ports import LearningStore, MessageText, NewExample, Outcome
from tagging.pii import mask

log = logging.getLogger(__name__)

# A `tag +A` command in a linked conversation labels the conversation's latest message within this window.
CONVERSATION_WINDOW = timedelta(minutes=30)
TEXT_CHARS = 2000  # longer messages are cut: the start carries the request


def masked(text: str) -> str:
    """The text as stored for learning: personal numbers masked, length bounded."""
    return mask(text.strip())[:TEXT_CHARS]


class Recorder:
    """Turns chat events into stored examples; a None store records nothing."""

    def __init__(self, store: LearningStore | None) -> None:
        self.store = store

    def kept(
        self, message_key: str, channel: str, conversation_id: str, customer_id: int | None, text: str, now: datetime
    ) -> MessageText | None:
        """The message's text as it is remembered (masked), or None when nothing is remembered."""
        if self.store is None or not text.strip():
            return None
        return MessageText(message_key, channel, conversation_id, customer_id, masked(text), now)

    async def remember(
        self, message_key: str, channel: str, conversation_id: str, customer_id: int | None, text: str, now: datetime
    ) -> None:
        """Keep a message's masked text so that a later decision on it can become an example."""
        message = self.kept(message_key, channel, conversation_id, customer_id, text, now)
        if self.store is None or message is None:
            return
        try:
            await self.store.remember_messages([message])
        except Exception:
            log.exception("could not remember message %s for learning", message_key)

    async def decided(
        self, message_key: str, dimension: str, tag: str, outcome: Outcome, customer_id: int | None, now: datetime
    ) -> bool:
        """A suggestion of `message_key` was accepted/rejected/undone: store it as an example."""
        if self.store is None:
            return False
        try:
            message = await self.store.message_text(message_key)
            if message is None:
                log.info("no remembered text for message %s: decision not learned", message_key)
                return False
            positive = outcome in (Outcome.ACCEPTED, Outcome.MANUAL)
            example = NewExample(message.text, dimension, tag, positive, outcome, customer_id, now, message_key)
            await self.store.add_examples([example])
            return True
        except Exception:
            log.exception("could not store the decision on message %s as an example", message_key)
            return False

    async def tagged(
        self,
        text: str,
        tags: Sequence[tuple[str, str]],
        customer_id: int | None,
        now: datetime,
        message_key: str | None = None,
    ) -> int:
        """A person tagged a customer from a message: each tag is a positive example of the text."""
        if self.store is None or not text.strip() or not tags:
            return 0
        try:
            stored = masked(text)
            examples = [
                NewExample(stored, dimension, tag, True, Outcome.MANUAL, customer_id, now, message_key)
                for dimension, tag in tags
            ]
            return await self.store.add_examples(examples)
        except Exception:
            log.exception("could not store a manual tag as an example")
            return 0

    async def tagged_in_conversation(
        self, channel: str, conversation_id: str, tags: Sequence[tuple[str, str]], customer_id: int, now: datetime
    ) -> int:
        """`tag +A` in a linked conversation: the conversation's latest message is a positive example of A."""
        if self.store is None or not tags:
            return 0
        try:
            message = await self.store.last_message(channel, conversation_id, now - CONVERSATION_WINDOW)
        except Exception:
            log.exception("could not read the latest message of %s conversation %s", channel, conversation_id)
            return 0
        if message is None:
            return 0
        return await self.tagged(message.text, tags, customer_id, now, message.message_key)
