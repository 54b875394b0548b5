"""Durable processing of acknowledged WeCom callbacks: stored first, run in the background, retried until done.

A callback is written to the inbox (decrypted XML, de-duplication key) before WeCom gets its 200; the row is
both the de-duplication claim and the promise to process it. The row is leased while its handler runs. A
handler that fails leaves the row pending with a capped exponential backoff; after `max_attempts` starts it
is marked failed with the reason (poison). A process that dies mid-handler leaves the lease to expire; a clean
shutdown that had to cancel handlers makes their rows due at once. The drain (at start-up and every interval,
on every replica) picks up due rows, so nothing acknowledged is lost. Handlers run at least once; they are
written to be idempotent (the same event applied twice has one effect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bots.wecom.background import Background
from bots.wecom.claims import ClaimBatcher
from bots.wecom.outcomes import DoneBatcher, ManyFinishes
from bots.wecom.parser import WeComMessage, WeComXmlError, parse_message
from core.chat.ports import InboundInbox

log = logging.getLogger(__name__)

Dispatch = Callable[[WeComMessage], Awaitable[None]]

LEASE_SECONDS = 120.0  # longer than any handler (WeCom API calls retry for < 30 s); then the row is due again
DRAIN_INTERVAL = 30.0
MAX_ATTEMPTS = 8
RETRY_BASE = 5.0
RETRY_CAP = 900.0
DRAIN_BATCH = 50


class InboxStore(InboundInbox, ManyFinishes, Protocol):
    """The inbox port plus its batched done mark (storage.channels.SqlChannelStore has both)."""


def retry_delay(attempts: int, base: float = RETRY_BASE, cap: float = RETRY_CAP) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base·2^(n-1), at most `cap`."""
    return min(cap, base * 2 ** max(0, attempts - 1))


class CallbackInbox:
    """Accepts callbacks into the inbox and runs their handlers until each is done or given up."""

    def __init__(
        self,
        store: InboxStore,
        channel: str,
        dispatch: Dispatch,
        background: Background,
        *,
        lease: float = LEASE_SECONDS,
        max_attempts: int = MAX_ATTEMPTS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._store = store
        self._channel = channel
        self._dispatch = dispatch
        self._background = background
        self._lease = timedelta(seconds=lease)
        self._max_attempts = max_attempts
        self._clock = clock
        self._batcher = ClaimBatcher(store, channel)
        self._done = DoneBatcher(store, yield_to=self._batcher.idle)
        self._inflight: set[int] = set()  # rows whose handler was started here and has not finished

    async def accept(self, message: WeComMessage, body: str) -> bool:
        """Store the callback (raises when the database cannot); True when it is new and now being processed."""
        now = self._clock()
        row_id = await self._batcher.accept(message.dedupe_key, body, now, now + self._lease)
        if row_id is None:
            return False
        self._start(row_id, message, attempts=1)
        return True

    async def drain(self, now: datetime | None = None) -> int:
        """Start every due pending row (failed earlier, or interrupted); returns how many were started."""
        moment = now or self._clock()
        started = 0
        while True:
            rows = await self._store.claim_inbound_due(self._channel, moment, moment + self._lease, DRAIN_BATCH)
            for row in rows:
                if row.attempts > self._max_attempts:
                    reason = f"interrupted {row.attempts - 1} times; last error: {row.last_error}"
                    await self._give_up(row.id, row.dedupe_key, reason)
                    continue
                try:
                    message = parse_message(row.body)
                except WeComXmlError as exc:  # stored by an older version that parsed differently
                    await self._give_up(row.id, row.dedupe_key, f"stored body no longer parses: {exc}")
                    continue
                self._start(row.id, message, row.attempts)
                started += 1
            if len(rows) < DRAIN_BATCH:
                return started

    async def drain_forever(self, interval: float = DRAIN_INTERVAL) -> None:
        """`drain` now and then every `interval` seconds until cancelled; a failing pass is logged."""
        while True:
            try:
                started = await self.drain()
                if started:
                    log.info("wecom inbox: %d stored callbacks restarted", started)
            except Exception:
                log.exception("wecom inbox drain failed; trying again in %.0fs", interval)
            await asyncio.sleep(interval)

    async def release_interrupted(self) -> None:
        """After shutdown cancelled handlers: make their rows due at once for the next start or replica."""
        await self._done.settled()  # marks of handlers that did finish land first
        interrupted = sorted(self._inflight)
        if not interrupted:
            return
        try:
            await self._store.release_inbound_leases(interrupted, self._clock())
            log.warning("wecom inbox: %d interrupted callbacks left for the next start", len(interrupted))
        except Exception:
            log.exception("wecom inbox: could not release interrupted rows; they run after their lease")
        self._inflight.clear()

    def _start(self, row_id: int, message: WeComMessage, attempts: int) -> None:
        self._inflight.add(row_id)
        self._background.spawn(self._process(row_id, message, attempts), name=f"wecom:{type(message).__name__}")

    async def _process(self, row_id: int, message: WeComMessage, attempts: int) -> None:
        """Run the handler, then record the outcome; a cancellation leaves the row for a later attempt."""
        try:
            await self._dispatch(message)
        except Exception as exc:
            await self._failed(row_id, message, attempts, exc)
        else:
            try:
                await self._done.finish(row_id, self._clock())
            except Exception:
                log.exception("wecom inbox row %d ran but could not be marked done; it runs again later", row_id)
        self._inflight.discard(row_id)

    async def _failed(self, row_id: int, message: WeComMessage, attempts: int, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning(
            "wecom %s handler failed (attempt %d of %d): %s",
            type(message).__name__,
            attempts,
            self._max_attempts,
            reason,
            exc_info=exc,
        )
        if attempts >= self._max_attempts:
            await self._give_up(row_id, message.dedupe_key, reason)
            return
        now = self._clock()
        due = now + timedelta(seconds=retry_delay(attempts))
        try:
            await self._store.retry_inbound(row_id, now, due, reason)
        except Exception:
            log.exception("wecom inbox row %d: failure not recorded; it runs again after its lease", row_id)

    async def _give_up(self, row_id: int, key: str, reason: str) -> None:
        log.error("wecom callback %s given up after %d attempts: %s", key, self._max_attempts, reason)
        try:
            await self._store.fail_inbound(row_id, self._clock(), reason)
        except Exception:
            log.exception("wecom inbox row %d could not be marked failed", row_id)
