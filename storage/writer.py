"""SQLite's single writer, queued in the process: write transactions take turns instead of polling a lock.

SQLite lets one transaction write at a time. Left to itself, a second `BEGIN IMMEDIATE` gets SQLITE_BUSY and
the busy handler sleeps and retries (1, 2, 5 … 100 ms, unfairly): under a burst some transactions lose that
race again and again and wait for a second while the database sits idle between sleeps. Here every write
transaction of the process first waits its turn on one asyncio lock (first come, first served), so the write
lock is handed over the moment the previous transaction commits or rolls back and BEGIN IMMEDIATE never waits.
Read-only transactions (a plain deferred BEGIN under WAL) never queue. Other processes (the CLI beside a
running server) still meet SQLite's busy timeout, as before.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only


class SqliteWriter:
    """The process's turn at SQLite's write lock: taken at BEGIN, given back when the transaction ends."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._holder: Any = None  # the DBAPI connection whose transaction holds the turn
        self._held: asyncio.Lock | None = None

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def acquire(self, dbapi_connection: Any) -> None:
        """Wait for this process's turn to write; raises like SQLite's busy timeout when it never comes."""
        if self._holder is dbapi_connection:
            return
        lock = self._lock()
        try:
            async with asyncio.timeout(self.timeout_s):  # not wait_for: a cancelled wait never keeps the lock
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError(
                f"database is locked: another write transaction of this process held SQLite's single writer for "
                f"{self.timeout_s:g} s (a write inside another open write transaction of the same task waits "
                "for itself; finish the outer transaction first)"
            ) from None
        self._holder, self._held = dbapi_connection, lock

    def take_turn(self, connection: Any) -> None:
        """From the begin hook (sync code inside SQLAlchemy's greenlet): wait for the turn of `connection`."""
        await_only(self.acquire(_raw(connection)))

    def release(self, connection: Any) -> None:
        """Give the turn back if this connection holds it (idempotent: commit, rollback and check-in all call it)."""
        raw = _raw(connection)
        if raw is None or self._holder is not raw:
            return
        lock, self._holder, self._held = self._held, None, None
        if lock is not None and lock.locked():
            lock.release()

    @property
    def busy(self) -> bool:
        return self._holder is not None


def _raw(connection: Any) -> Any:
    """The DBAPI connection behind a pooled proxy or a SQLAlchemy Connection (or the DBAPI connection itself)."""
    if hasattr(connection, "dbapi_connection"):  # the pool's proxy, as the dialect's commit and rollback get it
        return connection.dbapi_connection
    if isinstance(connection, Connection):  # the begin hook
        return connection.connection.dbapi_connection
    return connection


_WRITERS: weakref.WeakKeyDictionary[Any, SqliteWriter] = weakref.WeakKeyDictionary()


def writer_of(engine: AsyncEngine) -> SqliteWriter | None:
    """The SqliteWriter `install_writer` gave `engine`; None for an engine without one (PostgreSQL)."""
    return _WRITERS.get(engine.sync_engine)


def install_writer(engine: AsyncEngine, timeout_s: float) -> SqliteWriter:
    """Give `engine`'s write transactions one SqliteWriter; the begin hook calls its take_turn before BEGIN.

    The turn is given back after the DBAPI COMMIT or ROLLBACK returned, so the next writer's BEGIN IMMEDIATE
    finds the lock free; a connection invalidated, closed or checked in while holding it gives it back too.
    """
    writer = SqliteWriter(timeout_s)
    sync_engine = engine.sync_engine
    _WRITERS[sync_engine] = writer
    dialect = sync_engine.dialect
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def commit(dbapi_connection: Any) -> None:
        try:
            do_commit(dbapi_connection)
        finally:
            writer.release(dbapi_connection)

    def rollback(dbapi_connection: Any) -> None:
        try:
            do_rollback(dbapi_connection)
        finally:
            writer.release(dbapi_connection)

    # This engine's own dialect instance: other engines (PostgreSQL, other SQLite files) are untouched.
    dialect.do_commit = commit  # type: ignore[method-assign]
    dialect.do_rollback = rollback  # type: ignore[method-assign]

    @event.listens_for(sync_engine.pool, "checkin")
    def _checkin(dbapi_connection: Any, _record: Any) -> None:
        writer.release(dbapi_connection)

    @event.listens_for(sync_engine.pool, "invalidate")
    def _invalidate(dbapi_connection: Any, _record: Any, _exc: Any) -> None:
        writer.release(dbapi_connection)

    @event.listens_for(sync_engine.pool, "close")
    def _close(dbapi_connection: Any, _record: Any) -> None:
        writer.release(dbapi_connection)

    return writer
