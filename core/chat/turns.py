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

Claims and finished turns are written together, one batch (transaction) at a time, by whichever claimer finds
no batch being written, or by the background writer; a process runs at most `limit` turns at once. A claim
tries the take at once, with no look at the stored lease first (a new activity costs that one write), when that
never waits for a turn: a slot is free, or a finished turn's slot passes to it in the same batch, or the batch
being written frees one. Otherwise (every slot busy, or claims queue for one) it looks first, so a duplicate
of a finished turn never waits for a turn slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from core.chat.ports import InboundLeases

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=10)  # a dead process's turns are retaken this long after its last renewal
RENEW_EVERY = 3.0  # seconds between renewals of the leases this process holds
WAIT = 12.0  # how long a retry waits for a running turn (Teams gives up on a request after ~15 s)
POLL = 0.25  # seconds between looks at another process's lease
# Turns running at once in one process (more wait for a slot before they claim). A crash can only make the
# turns that already replied but were not yet recorded as finished reply twice, so this also bounds that.
LIMIT = 8

Clock = Callable[[], datetime]


class _Take(NamedTuple):
    """A claim waiting for the next batch: its result, and whether it takes over a finished turn's slot."""

    key: str
    taken: asyncio.Future[bool]
    handoff: bool


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
        limit: int = LIMIT,
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
        self._slots = asyncio.Semaphore(limit)
        self._held: dict[str, asyncio.Event] = {}  # key → set when its turn ends here (finished or released)
        self._finishing: list[str] = []  # finished keys not written yet
        self._taking: list[_Take] = []  # claims waiting for the next batch
        self._captured = 0  # finished keys in the batch being written (the first ones of _finishing)
        self._handing = 0  # claims waiting for the next batch that take over a finished key's slot
        self._queued = 0  # claims waiting for a turn slot
        self._written: asyncio.Event | None = None  # set once the batch being written ended
        self._writing = asyncio.Lock()  # one batch at a time, in arrival order
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def held(self) -> frozenset[str]:
        """Keys whose turns run in this process now."""
        return frozenset(self._held)

    async def claim(self, key: str) -> bool:
        """True: run the turn for `key` (new, abandoned or failed before); False: a duplicate, answer quietly."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        first = True
        while True:
            running = self._held.get(key)
            if running is not None:
                # This process runs it now: its outcome decides (finished → duplicate, released → run again).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(running.wait(), max(deadline - loop.time(), 0.0))
                if key in self._held:
                    return False  # still running: that turn answers
            elif first and await self._take_at_once(key):
                return True
            first = False
            now = self._clock()
            current = await self._store.inbound_lease(self._channel, key)
            if current is not None and current.finished:
                return False  # answered before (a duplicate never waits for a turn slot)
            if current is None or current.holder_gone or (current.until is not None and current.until < now):
                if await self._take_in_slot(key):  # new, released, or its holder died
                    return True
                current = await self._store.inbound_lease(self._channel, key)
                if current is not None and current.finished:
                    return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.info("activity %s is still being processed elsewhere; acknowledged as a duplicate", key)
                return False
            if current is None or current.until is None:
                continue  # released meanwhile: try to take it now
            until_lapse = (current.until - self._clock()).total_seconds()
            await asyncio.sleep(min(self._poll, remaining, max(until_lapse, 0.0) + 0.01))

    def finish(self, key: str) -> None:
        """The turn's writes committed and its reply is out: retries of `key` are duplicates from now on.

        Written soon after by the batch writer, in the same statement batch as the next claims: a write of its
        own per turn would queue behind the turns' writes (SQLite has one writer), and every turn finished in
        the meantime would send its reply again after a crash. Until written, the key stays held here.
        """
        if key in self._held and key not in self._finishing:
            self._finishing.append(key)
            self._wake.set()

    async def flush(self) -> None:
        """Write the pending claims and finished keys now, in one transaction (one batch at a time)."""
        async with self._writing:
            await self._write_batch()

    async def _take_at_once(self, key: str) -> bool:
        """Try to take `key` without a look at its lease first, when that never waits for a turn slot.

        The take itself tells a new or lapsed key from a claimed one, so a new activity costs one write and no
        read. Tried when a slot is free, or when a finished turn not written yet hands its slot over in the
        same batch (the finish and the take commit together: never more than `limit` turns), or after the batch
        being written frees one. Never while claims queue for a slot: they came first, and a claim that looks
        first tells a duplicate from a turn to run without waiting. Once per claim only: polling a turn that
        runs elsewhere must not write at every look. False: not taken, or not tried.
        """
        written = self._written
        if self._queued:
            return False
        if self._slots.locked() and not self._spare() and written is not None and self._captured:
            await written.wait()  # a write, not a turn: it ends the finished turns it carries
            if self._queued:
                return False
        if not self._slots.locked():
            return await self._take_in_slot(key)
        if self._spare():
            return await self._take(key, handoff=True)
        return False

    def _spare(self) -> int:
        """Finished turns the next batch writes whose slots no claim has taken over yet."""
        return len(self._finishing) - self._captured - self._handing

    async def _take_in_slot(self, key: str) -> bool:
        """Take `key` once a turn slot is free; the slot stays taken with the key until its turn ends."""
        queued = int(self._slots.locked())
        self._queued += queued
        try:
            await self._slots.acquire()
        finally:
            self._queued -= queued
        try:
            taken = await self._take(key)
        except BaseException:
            self._slots.release()
            raise
        if not taken:
            self._slots.release()
        return taken

    async def _take(self, key: str, *, handoff: bool = False) -> bool:
        """Claim `key` in the next batch (whoever finds no batch being written writes one for everybody).

        `handoff`: the claim holds no slot; if taken, it gets the slot of a turn the same batch finishes.
        """
        taken = asyncio.get_running_loop().create_future()
        self._taking.append(_Take(key, taken, handoff))
        self._handing += handoff
        try:
            async with self._writing:
                if not taken.done():
                    await self._write_batch()
            return bool(await taken)
        except asyncio.CancelledError:
            # The claimer is gone: a claim not written yet is dropped; one taken already is not held here (its
            # stored lease lapses, never renewed). A handed-over slot is freed here, a slot of its own by the caller.
            if not taken.done():
                taken.cancel()
            elif not taken.cancelled() and taken.exception() is None and taken.result():
                self._end(key, free_slot=handoff)
            raise

    async def _write_batch(self) -> None:
        """One transaction: finish the finished keys, lease the claimed ones; then answer every claimer."""
        takes, self._taking = [take for take in self._taking if not take.taken.done()], []  # done: cancelled
        finishing = list(self._finishing)
        if not takes and not finishing:
            return
        self._captured, self._handing = len(finishing), 0
        written = self._written = asyncio.Event()
        now = self._clock()
        try:
            taken = await self._store.settle_leases(
                self._channel, [take.key for take in takes], now, now + self._lease, finishing
            )
        except asyncio.CancelledError:
            self._taking[:0] = takes  # cut short (shutdown): the next batch writes them
            self._handing += sum(take.handoff for take in takes)
            raise
        except Exception as exc:
            # The replies are out; an unfinished lease only lets a later retry send one again.
            log.exception("writing %d claims and %d finished turns failed", len(takes), len(finishing))
            for take in takes:
                if not take.taken.done():
                    take.taken.set_exception(exc)
            taken = set()
            takes = []
        finally:
            self._captured, self._written = 0, None
            written.set()
        del self._finishing[: len(finishing)]
        handed = 0  # finished turns' slots taken over by claims of this batch
        for take in takes:
            if take.taken.done():
                continue
            won = take.key in taken and take.key not in self._held  # a key claimed twice in a batch: first wins
            if won:
                self._hold(take.key)
                handed += take.handoff
            take.taken.set_result(won)
        for key in finishing:  # held until written here, so each has a slot to free or hand over
            if self._end(key, free_slot=not handed) and handed:
                handed -= 1

    async def flush_forever(self) -> None:
        """Write finished keys as they come when no claim carries them (each batch: all pending meanwhile)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def release(self, key: str) -> None:
        """The turn failed: forget the claim so the platform's retry runs it again."""
        self._end(key)  # first, so a cancelled release never leaves a key renewed forever
        await self._store.release_inbound(self._channel, key)

    async def renew(self) -> None:
        """Extend the lease of every turn running here (one statement)."""
        keys = [key for key in self._held if key not in self._finishing]
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
        """Start the background renewer and finish writer (needs a running event loop)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self.renew_forever(), name=f"{self._channel}-turn-lease-renewer"),
                asyncio.create_task(self.flush_forever(), name=f"{self._channel}-turn-lease-finisher"),
            ]

    async def close(self) -> None:
        """Write the finished keys, stop; turns cut short keep their leases, which lapse and are retaken."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()

    def _hold(self, key: str) -> None:
        self._held[key] = asyncio.Event()

    def _end(self, key: str, *, free_slot: bool = True) -> bool:
        """The turn of `key` ended here: wake its waiting retries and free its slot (unless handed over).

        False: it was not held here (ended before), so it had no slot to free or hand over.
        """
        event = self._held.pop(key, None)
        if event is None:
            return False
        event.set()
        if free_slot:
            self._slots.release()
        return True
