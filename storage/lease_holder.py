"""This process's name on the turn leases it takes (PostgreSQL): a session advisory lock that dies with it.

A lease row names its holder (inbound_dedup.holder). For as long as the process runs it holds
`pg_advisory_lock(id)` on a connection of its own; when the process dies (kill -9, out of memory) that
connection closes and PostgreSQL frees the lock at once. Another replica that meets a lease whose holder's lock
is free takes it then (storage.channels), instead of waiting for the lease to lapse.

A connection that is merely cut (the database restarted, a network fault) frees the lock too, so the process's
running turns may run a second time elsewhere, as they may when a lease lapses under a stalled process. The
process then takes a new id and its lease renewals write it, so its leases are its own again within a renewal.
On SQLite (one process) there is no holder: leases only lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CHECK_EVERY = 5.0  # seconds between looks at the lock's connection


def new_id() -> int:
    """A random positive BIGINT: the advisory-lock key and inbound_dedup.holder of one process's run."""
    return secrets.randbits(62) + 1  # never 0, never the few small keys picked by hand (the migration lock)


class LeaseHolder:
    """Holds this process's advisory lock on PostgreSQL; `current()` is its id while the lock is held."""

    def __init__(self, engine: AsyncEngine, *, check_every: float = CHECK_EVERY) -> None:
        self._engine = engine
        self._check_every = check_every
        self._conn: AsyncConnection | None = None
        self._id: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def current(self) -> int | None:
        """The id to write beside a lease taken now; None while no lock is held (the lease can only lapse)."""
        return self._id

    async def start(self) -> None:
        """Take the lock (PostgreSQL only) and look after it in the background."""
        if not self.enabled:
            return
        await self._look()  # a failure here does not stop the server: its leases lapse as before meanwhile
        self._task = asyncio.create_task(self._watch(), name="lease-holder")

    async def check(self) -> None:
        """Make sure the lock is held: a lost connection is replaced and a new id locked on it."""
        if self._conn is not None:
            try:
                await self._conn.execute(text("SELECT 1"))
                return
            except Exception as exc:  # the connection is gone, and the lock with it
                log.warning("lost the lease-holder connection (%s): taking a new holder id", type(exc).__name__)
                self._id = None
                await self._drop()
        conn = await self._engine.connect()
        try:
            # Autocommit: the lock belongs to the session, and no transaction stays open beside it.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            candidate = new_id()
            taken = (await conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": candidate})).scalar()
        except BaseException:
            await _discard(conn)  # a lock it may hold goes with it
            raise
        if not taken:  # a 1 in 2**62 clash with a live process: try again at the next look
            await conn.close()
            return
        self._conn, self._id = conn, candidate

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            await self._look()

    async def _look(self) -> None:
        """`check()`, logging a failure: the database is down, and leases only lapse until the next look works."""
        try:
            await self.check()
        except Exception as exc:
            log.warning("could not take the lease-holder lock: %s", type(exc).__name__)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _discard(conn)

    async def close(self) -> None:
        """Free the lock: this process's leases are anyone's to take from now on."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._id = None
        await self._drop()


async def _discard(conn: AsyncConnection) -> None:
    """Close the connection itself, not back into the pool: the pool's reset would keep a session lock."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()
