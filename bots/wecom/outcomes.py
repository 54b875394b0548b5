"""Inbox done marks coalesced: handlers finishing within a few milliseconds share one UPDATE.

On SQLite every write takes the single write lock; one mark per callback doubled the lock traffic that the
acknowledgements (inbox inserts) queue behind. A handler still waits until its row is marked done, so a
finished background task means a done row, and a crash before the flush only re-runs an idempotent handler
after its lease (as a crash between handler and mark always could).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

FLUSH_DELAY = 0.005  # seconds the first mark of a batch waits for others
FLUSH_ROWS = 200  # a batch this full is written at once


class ManyFinishes(Protocol):
    """The batched done mark of storage.channels.SqlChannelStore."""

    async def finish_inbound_many(self, message_ids: Sequence[int], now: datetime) -> None: ...


class DoneBatcher:
    """`finish` waits for the UPDATE that carries its row; marks arriving meanwhile form the next one."""

    def __init__(
        self,
        store: ManyFinishes,
        *,
        delay: float = FLUSH_DELAY,
        rows: int = FLUSH_ROWS,
        yield_to: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        self._store = store
        self._delay = delay
        self._rows = rows
        self._yield_to = yield_to  # e.g. the acknowledgements' insert: never make WeCom wait for a done mark
        self._waiting: list[tuple[int, datetime, asyncio.Future[None]]] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def finish(self, row_id: int, now: datetime) -> None:
        """Mark `row_id` done; returns once the mark is committed, raises when it could not be written."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((row_id, now, future))
        if len(self._waiting) >= self._rows:
            self._full.set()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="wecom-inbox-done")
        await future

    async def settled(self) -> None:
        """Wait until every mark handed in so far has been written (or has failed)."""
        while self._flusher is not None:
            await asyncio.wait([self._flusher])  # never raises: failures went to the marks' own waiters

    async def _flush(self) -> None:
        try:
            while self._waiting:
                if len(self._waiting) < self._rows:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._delay)
                batch, self._waiting = self._waiting[: self._rows], self._waiting[self._rows :]
                try:
                    if self._yield_to is not None:
                        await self._yield_to()
                    await self._store.finish_inbound_many([r for r, _, _ in batch], max(n for _, n, _ in batch))
                except Exception as exc:  # each handler logs it; the rows run again after their lease
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._flusher = None
