"""aiosqlite with one trip to the connection's thread per statement.

aiosqlite runs each sqlite3 call on the connection's own thread. SQLAlchemy's adapter makes a trip there for
every cursor step: open, execute, fetch, close. Four trips for a statement, each a queue put, a wake-up of
the thread and a handover of the interpreter lock back to the event loop; in a chat turn of a dozen short
statements the trips cost more than the statements. Here a statement's steps run as one function on that
thread: one trip, returning the rows, description, row count and last row id together. Results are what
the stock adapter gives (it too reads every row before returning to SQLAlchemy); server-side (streamed)
cursors are the stock ones.

A transaction's own statements take no trip of their own either. SQLAlchemy runs `BEGIN` (or `BEGIN
IMMEDIATE`) as a statement and then, when the connection goes back to the pool after a COMMIT, a ROLLBACK.
Here a bare BEGIN is held and run in the same trip as the transaction's first statement (or never, when no
statement follows: an empty transaction), and a COMMIT or ROLLBACK with no transaction open on SQLite is not
sent. A write transaction keeps SQLite's write lock and the process's writer turn (storage.writer) from its
first trip to its COMMIT, so every trip saved there is time the next writer no longer waits.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Sequence
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT, await_only

Outcome = tuple[Any, list[Any], int, int | None, bool]  # description, rows, rowcount, lastrowid, in a transaction

_BEGINS = frozenset({"BEGIN", "BEGIN DEFERRED", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"})


def _begin(operation: Any, parameters: Any) -> str | None:
    """`operation` as a bare BEGIN statement to hold for the next trip, or None for any other statement."""
    if parameters or not isinstance(operation, str):
        return None
    words = " ".join(operation.split()).upper()
    return words if words in _BEGINS else None


def _execute(connection: sqlite3.Connection, begin: str | None, operation: str, parameters: Any) -> Outcome:
    """On the connection's thread: run a held BEGIN, if any, then one statement, and read all its rows."""
    _begin_on(connection, begin)
    cursor = connection.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid, connection.in_transaction
    finally:
        cursor.close()


def _executemany(connection: sqlite3.Connection, begin: str | None, operation: str, seq_of_parameters: Any) -> Outcome:
    """On the connection's thread: run a held BEGIN, if any, then one statement for each parameter set."""
    _begin_on(connection, begin)
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return cursor.description, [], cursor.rowcount, cursor.lastrowid, connection.in_transaction
    finally:
        cursor.close()


def _begin_on(connection: sqlite3.Connection, begin: str | None) -> None:
    """On the connection's thread: run a held BEGIN (nothing when None)."""
    if begin is not None:
        connection.execute(begin).close()


class StatementFailed(Exception):
    """A statement of a one-trip write transaction failed (the transaction was rolled back): which, and why."""

    def __init__(self, index: int, error: sqlite3.Error) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


def _write_transaction(connection: sqlite3.Connection, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
    """On the connection's thread: BEGIN IMMEDIATE, each statement with all its rows, COMMIT; ROLLBACK on error."""
    connection.execute("BEGIN IMMEDIATE").close()
    results: list[list[Any]] = []
    try:
        for index, (operation, parameters) in enumerate(statements):
            try:
                cursor = connection.execute(operation, parameters)
            except sqlite3.Error as error:
                raise StatementFailed(index, error) from error
            try:
                results.append(cursor.fetchall())
            finally:
                cursor.close()
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return results


def _open_after(trip: asyncio.Future[Any]) -> bool | None:
    """Whether a transaction is open after a one-trip write transaction: no once it ended (committed or rolled
    back); not known if it never finished or its ROLLBACK failed."""
    if not trip.done() or trip.cancelled():
        return None
    error = trip.exception()
    return False if error is None or isinstance(error, StatementFailed) else None


def _finish(connection: sqlite3.Connection, commit: bool) -> None:
    """On the connection's thread: COMMIT or ROLLBACK."""
    if commit:
        connection.commit()
    else:
        connection.rollback()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement, with its rows, is one call on the connection's thread."""

    __slots__ = ("_outcome_description", "_outcome_lastrowid", "_outcome_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # No sqlite3 cursor is opened here: each execute opens, uses and closes its own on the thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._outcome_description: Any = None
        self._outcome_rowcount = -1
        self._outcome_lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._outcome_description

    @property
    def rowcount(self) -> int:
        return self._outcome_rowcount

    @property
    def lastrowid(self) -> int:
        return self._outcome_lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass  # every row is read at execute: nothing to size

    async def _async_soft_close(self) -> None:
        return  # the sqlite3 cursor closed on the thread already

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None  # sqlite3 ignores input sizes

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        adapt = cast(OneTripConnection, self._adapt_connection)
        begin = _begin(operation, parameters)
        if begin is not None and adapt._held_begin is None and adapt._open is False:
            adapt._held_begin = begin  # runs with the next statement
            self._keep((None, [], -1, None, False))
            return None
        connection = cast(aiosqlite.Connection, self._connection)
        async with adapt._execute_mutex:
            held = adapt._take_begin()
            outcome = await adapt._tracked(connection._execute(_execute, connection._conn, held, operation, parameters))
        self._keep(outcome)
        return None

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        adapt = cast(OneTripConnection, self._adapt_connection)
        connection = cast(aiosqlite.Connection, self._connection)
        async with adapt._execute_mutex:
            held = adapt._take_begin()
            outcome = await adapt._tracked(
                connection._execute(_executemany, connection._conn, held, operation, seq_of_parameters)
            )
        self._keep(outcome)
        return None

    def _keep(self, outcome: Outcome) -> None:
        self._outcome_description, rows, self._outcome_rowcount, self._outcome_lastrowid, _ = outcome
        self._rows = collections.deque(rows)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """The aiosqlite adapter's connection with one-trip cursors, a held BEGIN and no empty COMMIT or ROLLBACK."""

    __slots__ = ("_held_begin", "_open")
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._held_begin: str | None = None  # a BEGIN not yet sent: it goes with the next statement
        self._open: bool | None = None  # whether SQLite has a transaction open; None: not known

    def _take_begin(self) -> str | None:
        held, self._held_begin = self._held_begin, None
        return held

    async def _tracked(self, trip: Any) -> Outcome:
        """Await a statement's trip, noting whether a transaction is open after it (not known after an error)."""
        self._open = None
        outcome: Outcome = await trip
        self._open = outcome[4]
        return outcome

    async def write_at_once(self, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
        """One write transaction in one trip: BEGIN IMMEDIATE, the statements (each one's rows), COMMIT.

        Only with no transaction open (it runs its own); the caller holds the process's writer turn. Rolled
        back whole on any error; a failed statement is raised as StatementFailed.
        """
        if self._open is not False or self._held_begin is not None:
            raise RuntimeError("a transaction is open on this connection: write_at_once runs its own")
        connection = cast(aiosqlite.Connection, self._connection)
        async with self._execute_mutex:
            self._open = None
            trip = asyncio.ensure_future(connection._execute(_write_transaction, connection._conn, statements))
            try:
                return await asyncio.shield(trip)
            except asyncio.CancelledError:
                # The thread runs the transaction to its COMMIT or ROLLBACK whatever happens here; the caller
                # hands the writer turn on when this returns, so return only once it ended.
                await asyncio.wait([trip])
                raise
            finally:
                self._open = _open_after(trip)

    def cursor(self, server_side: bool = False) -> Any:
        if server_side and self._held_begin is not None:
            # A streamed cursor is aiosqlite's own: send the held BEGIN first so its rows are read inside it.
            self._send_begin()
        return super().cursor(server_side)

    def _send_begin(self) -> None:
        begin = self._take_begin()
        if begin is None:
            return
        connection = cast(aiosqlite.Connection, self._connection)
        try:
            self._open = None
            await_only(connection._execute(_begin_on, connection._conn, begin))
            self._open = True
        except Exception as error:
            self._handle_exception(error)

    def commit(self) -> None:
        self._finish(commit=True)

    def rollback(self) -> None:
        self._finish(commit=False)

    def _finish(self, commit: bool) -> None:
        """COMMIT or ROLLBACK; no trip when SQLite has no transaction open (a held BEGIN is simply dropped)."""
        self._held_begin = None
        if self._open is False or not self._connection._connection:
            return
        connection = cast(aiosqlite.Connection, self._connection)
        try:
            self._open = None
            await_only(connection._execute(_finish, connection._conn, commit))
            self._open = False
        except Exception as error:
            self._handle_exception(error)


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI shim whose connections use OneTripCursor (pass as `module=` to the engine)."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        stock = super().connect(*arg, **kw)
        adapted = OneTripConnection(self, stock._connection)
        adapted._open = False  # a new sqlite3 connection has no transaction open
        return adapted


def one_trip_dbapi() -> OneTripDbapi:
    return OneTripDbapi(aiosqlite, sqlite3)
