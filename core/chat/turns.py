"""Turn leases: an incoming activity is held while its turn runs and finished once its reply is out.

A platform (Teams) re-sends an activity with the same id when the bot was slow or failed. The claim on it is a
short lease, renewed while the turn runs and finished after the turn's writes committed and its reply was sent:

- a retry of a finished turn is a duplicate (acknowledged without running anything);
- a retry while the turn still runs (its lease keeps being renewed) waits briefly, then is a duplicate: the
  running turn answers;
- a retry after the process died mid-turn finds the lease lapsed within `lease` and runs the turn again; the
  turn's writes are keyed by the message, so nothing is tagged twice, and its reply is rendered again from
  what was stored;
- a retry after a failed turn (released) runs it again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from core.chat.ports import InboundLeases

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=10)  # a dead process's turns are retaken this long after its last renewal
RENEW_EVERY = 3.0  # seconds between renewals of the leases this process holds
WAIT = 12.0  # how long a retry waits for a running turn (Teams gives up on a request after ~15 s)
POLL = 0.25  # seconds between looks at another process's lease

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TurnLeases:
    """Leased claims on one channel's incoming activities, renewed in the background while turns run."""

    def __init__(
        self,
        store: InboundLeases,
        channel: str,
        *,
        lease: timedelta = LEASE,
        renew_every: float = RENEW_EVERY,
        wait: float = WAIT,
        poll: float = POLL,
        clock: Clock = _utc_now,
    ) -> None:
        self._store = store
        self._channel = channel
        self._lease = lease
        self._renew_every = renew_every
        self._wait = wait
        self._poll = poll
        self._clock = clock
        self._held: dict[str, asyncio.Event] = {}  # key → set when its turn ends here (finished or released)
        self._renewer: asyncio.Task[None] | None = None

    @property
    def held(self) -> frozenset[str]:
        """Keys whose turns run in this process now."""
        return frozenset(self._held)

    async def claim(self, key: str) -> bool:
        """True: run the turn for `key` (new, abandoned or failed before); False: a duplicate, answer quietly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while True:
            running = self._held.get(key)
            if running is not None:
                # This process runs it now: its outcome decides (finished → duplicate, released → run again).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(running.wait(), max(deadline - loop.time(), 0.0))
                if key in self._held:
                    return False  # still running: that turn answers
            now = self._clock()
            if await self._store.lease_inbound(self._channel, key, now, now + self._lease):
                self._hold(key)
                return True
            current = await self._store.inbound_lease(self._channel, key)
            if current is not None and current.finished:
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.info("activity %s is still being processed elsewhere; acknowledged as a duplicate", key)
                return False
            if current is None or current.until is None:
                continue  # released between the two statements: try to take it now
            until_lapse = (current.until - now).total_seconds()
            await asyncio.sleep(min(self._poll, remaining, max(until_lapse, 0.0) + 0.01))

    async def finish(self, key: str) -> None:
        """The turn's writes committed and its reply is out: retries of `key` are duplicates from now on."""
        event = self._held.pop(key, None)
        try:
            await self._store.finish_lease(self._channel, key)
        finally:
            if event is not None:
                event.set()

    async def release(self, key: str) -> None:
        """The turn failed: forget the claim so the platform's retry runs it again."""
        event = self._held.pop(key, None)  # first, so a cancelled release never leaves a key renewed forever
        try:
            await self._store.release_inbound(self._channel, key)
        finally:
            if event is not None:
                event.set()

    async def renew(self) -> None:
        """Extend the lease of every turn running here (one statement)."""
        keys = list(self._held)
        if keys:
            await self._store.renew_inbound(self._channel, keys, self._clock() + self._lease)

    async def renew_forever(self) -> None:
        """Renew every `renew_every` seconds until cancelled; a failed renewal is logged and retried."""
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                await self.renew()
            except Exception:
                log.exception("renewing %d turn leases failed", len(self._held))

    def start(self) -> None:
        """Start the background renewer (needs a running event loop)."""
        if self._renewer is None:
            self._renewer = asyncio.create_task(self.renew_forever(), name=f"{self._channel}-turn-leases")

    async def close(self) -> None:
        """Stop renewing; turns cut short keep their leases, which lapse and are retaken by a retry."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    def _hold(self, key: str) -> None:
        self._held[key] = asyncio.Event()
