"""Inbox inserts coalesced: concurrent callbacks share one INSERT … ON CONFLICT statement.

The stored inbox row is the de-duplication claim: a key already in the inbox is a WeCom retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class ManyAccepts(Protocol):
    """The batched insert of core.chat.ports.InboundInbox."""

    async def accept_inbound_many(
        self, channel: str, items: Sequence[tuple[str, str]], now: datetime, lease_until: datetime
    ) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class _Waiting:
    key: str
    body: str
    now: datetime
    lease_until: datetime
    future: asyncio.Future[int | None]


class ClaimBatcher:
    """`accept` waits for the statement that carries its row; rows arriving meanwhile form the next one.

    One caller alone costs one statement; under load (WeCom retries bursts, many agents) N waiting
    callbacks cost one round trip instead of N, which is what keeps the acknowledgement fast.
    """

    def __init__(self, store: ManyAccepts, channel: str) -> None:
        self._store = store
        self._channel = channel
        self._waiting: list[_Waiting] = []
        self._flusher: asyncio.Task[None] | None = None

    async def accept(self, key: str, body: str, now: datetime, lease_until: datetime) -> int | None:
        """The new inbox row id when `key` was seen for the first time (here and in the store), else None."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(key, body, now, lease_until, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="wecom-inbox-accept")
        return await future

    async def idle(self) -> None:
        """Wait for the insert being written now, if any (other writers let the acknowledgements go first)."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.wait([flusher])

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                items = [(w.key, w.body) for w in batch]
                now = max(w.now for w in batch)
                lease_until = max(w.lease_until for w in batch)
                try:
                    stored = await self._store.accept_inbound_many(self._channel, items, now, lease_until)
                except Exception as exc:  # every waiter answers 503 and WeCom retries
                    for w in batch:
                        if not w.future.done():
                            w.future.set_exception(exc)
                    continue
                for w in batch:
                    row_id = stored.pop(w.key, None)  # a key twice in one batch: only its first waiter wins
                    if not w.future.done():
                        w.future.set_result(row_id)
        finally:
            self._flusher = None
