"""Inbound de-duplication claims coalesced: concurrent callbacks share one INSERT … ON CONFLICT statement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol


class ManyClaims(Protocol):
    """The de-duplication part of core.channel_ports.ChannelStore, batched."""

    async def claim_inbound_many(self, channel: str, keys: Sequence[str], now: datetime) -> set[str]: ...

    async def release_inbound(self, channel: str, key: str) -> None: ...


class ClaimBatcher:
    """`claim` waits for the statement that carries its key; claims arriving meanwhile form the next one.

    One caller alone costs one statement, as before; under load (WeCom retries bursts, many agents) N
    waiting callbacks cost one round trip instead of N, which is what keeps the acknowledgement fast.
    """

    def __init__(self, store: ManyClaims, channel: str) -> None:
        self._store = store
        self._channel = channel
        self._waiting: list[tuple[str, datetime, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def claim(self, key: str, now: datetime) -> bool:
        """True when this is the first time `key` was seen (in this batch and in the store)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, now, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="wecom-claims")
        return await future

    async def release(self, key: str) -> None:
        """Forget a claim so WeCom's next retry is processed (after a failed handler)."""
        await self._store.release_inbound(self._channel, key)

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                keys = [key for key, _, _ in batch]
                try:
                    won = await self._store.claim_inbound_many(self._channel, keys, max(n for _, n, _ in batch))
                except Exception as exc:  # every waiter answers 503 and WeCom retries
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for key, _, future in batch:
                    first = key in won
                    won.discard(key)  # a key twice in one batch: only its first waiter wins
                    if not future.done():
                        future.set_result(first)
        finally:
            self._flusher = None
