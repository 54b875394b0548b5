"""Prepared statements for the writes every chat turn makes, run without SQLAlchemy's execution around each.

Used for the writes every chat turn makes (storage.turns, and the turn leases in storage.channels). A chat
turn's write on SQLite was three INSERTs in a transaction: five trips to the connection's thread
(BEGIN with the first read, three statements, COMMIT), and SQLAlchemy's execution around each statement
(compiled-cache lookup, execution context, bind and result processing). That was about 0.8 ms of the event
loop's time per message, a quarter of the turn; and the process's writer turn (storage.writer) was held
across every trip and everything the event loop ran between them.

Here a statement is compiled once for the dialect (`prepare`), its values are bound and its rows read with the
processors of its own column types (the ones SQLAlchemy's execution applies: the same stored text, the same
values back), and a whole write transaction (BEGIN IMMEDIATE, the statements, COMMIT) is one function on the
connection's thread (`write_at_once`). The writer turn is held for that one trip only.

On PostgreSQL the same statements go to asyncpg directly, on the pooled connection's own driver connection
(`execute_direct`). SQLAlchemy's execution around an asyncpg statement (execution context, parameter
processing, the adapter's cursor and its lock) cost about 60 µs of CPU per statement, on top of asyncpg's own
60 µs; a turn sends three. Errors are raised as SQLAlchemy raises them (the dialect's own translation of
asyncpg's exceptions), and a connection found closed is invalidated, so the pool never hands it out again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from asyncpg.protocol.protocol import BUILTIN_TYPE_NAME_MAP
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.sql.type_api import TypeEngine

from storage.repositories import _insert_for
from storage.sqlite_driver import OneTripConnection, StatementFailed
from storage.writer import writer_of

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement as SQL with positional parameters, with the processors of its bound and returned columns."""

    sql: str
    names: tuple[str, ...]  # the parameter of each `?`, in order
    binders: tuple[Processor, ...]
    columns: tuple[str, ...]  # the returned columns (RETURNING or SELECT), in order
    readers: tuple[Processor, ...]

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for `values` (a value per name), as the column types store them."""
        # Processors see None too, as in SQLAlchemy's execution (a JSON column may store None as JSON null).
        return tuple(
            value if binder is None else binder(value)
            for binder, value in zip(self.binders, [values[name] for name in self.names], strict=True)
        )

    def read(self, row: Sequence[Any]) -> dict[str, Any]:
        """A returned row as {column: value}, as the column types read it back."""
        return {
            column: value if reader is None else reader(value)
            for column, reader, value in zip(self.columns, self.readers, row, strict=True)
        }


def prepare(statement: ClauseElement, dialect: Dialect, keys: Sequence[str] = ()) -> Prepared:
    """Compile `statement` for `dialect` (an INSERT for the columns `keys`); refuse what would need more.

    Refused: a column whose value SQLAlchemy computes in Python when it is left out (a default or onupdate),
    and expanding or literal-rendered parameters. SQLAlchemy's execution would add those at run time; a
    prepared statement runs as compiled.
    """
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys) or None))
    if not dialect.positional or compiled.positiontup is None:
        raise ValueError(f"prepared statements need a positional dialect, not {dialect.name}")
    if compiled.insert_prefetch or compiled.update_prefetch:
        raise ValueError(f"{statement!r} computes values in Python at execution; give every column a value")
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError(f"{statement!r} has parameters rendered at execution; they cannot be prepared")
    binds = [compiled.binds[name] for name in compiled.positiontup]
    returned = list(getattr(statement, "exported_columns", ()))  # a bare text() declares none
    return Prepared(
        sql=str(compiled),
        names=tuple(bind.key for bind in binds),
        binders=tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds),
        columns=tuple(column.key for column in returned),
        readers=tuple(_reader(column.type, dialect) for column in returned),
    )


def _reader(column_type: TypeEngine[Any], dialect: Dialect) -> Processor:
    """The processor SQLAlchemy reads a column of `column_type` with.

    asyncpg's numeric types pick theirs by the column's type OID, which a statement's result carries; a prepared
    statement knows it from the type's own name in PostgreSQL (FLOAT is double precision).
    """
    oid = None
    if dialect.driver == "asyncpg":
        name = column_type.compile(dialect=dialect).lower().split("(")[0].strip()
        oid = BUILTIN_TYPE_NAME_MAP.get("float8" if name == "float" else name)
    return column_type.dialect_impl(dialect).result_processor(dialect, oid)


Build = Callable[[Any], ClauseElement]  # as for storage.repositories.prebuilt: given the dialect's INSERT
# Per dialect instance, not name: its processors carry the engine's own settings (its JSON serialiser).
_PREPARED: weakref.WeakKeyDictionary[Dialect, dict[tuple[Build, tuple[str, ...]], Prepared]]
_PREPARED = weakref.WeakKeyDictionary()


def prepared(dialect: Dialect, build: Build, keys: Sequence[str] = ()) -> Prepared:
    """`prepare(build(insert), dialect, keys)`, compiled once per (dialect, builder, keys).

    `build` is given the dialect's INSERT (which knows ON CONFLICT), like the builders of
    storage.repositories.prebuilt, so the same builder serves both.
    """
    cache = _PREPARED.get(dialect)
    if cache is None:
        cache = _PREPARED[dialect] = {}
    key = (build, tuple(keys))
    found = cache.get(key)
    if found is None:
        found = cache[key] = prepare(build(_insert_for(dialect.name)), dialect, keys)
    return found


Step = tuple[Prepared, Mapping[str, Any]]


def insert_step(dialect: Dialect, build: Build, row: Mapping[str, Any]) -> Step:
    """Insert `row` with the statement `build` makes, prepared for the row's columns."""
    return prepared(dialect, build, tuple(row)), row


Watcher = Callable[[Sequence[str]], None]
_WATCHERS: weakref.WeakKeyDictionary[Any, list[Watcher]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def watching(engine: AsyncEngine, watcher: Watcher) -> Iterator[None]:
    """While the block runs, call `watcher` with the SQL of each transaction sent here: a SQLite one-trip
    transaction (its BEGIN IMMEDIATE first), or PostgreSQL statements run directly (one alone is a transaction
    of its own). storage.statements counts them with the statements SQLAlchemy sends."""
    watchers = _WATCHERS.setdefault(engine.sync_engine, [])
    watchers.append(watcher)
    try:
        yield
    finally:
        watchers.remove(watcher)


async def write_at_once(conn: AsyncConnection, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
    """Run `steps` as one SQLite write transaction, in one trip; the rows each returned, read by its types.

    The connection must have no transaction open (a unit of work with no transaction: storage.turns). The
    process's writer turn is taken first and given back once the transaction ended; any error rolls the whole
    transaction back and is raised as SQLAlchemy raises a driver's error.
    """
    dialect = conn.dialect
    statements = [(step.sql, step.bind(values)) for step, values in steps]
    for watcher in _WATCHERS.get(conn.engine.sync_engine, ()):
        watcher(["BEGIN IMMEDIATE", *(sql for sql, _ in statements)])
    fairy = await conn.get_raw_connection()
    adapted = cast(OneTripConnection, fairy.dbapi_connection)
    writer = writer_of(conn.engine)
    if writer is None:
        raise RuntimeError("write_at_once needs an engine made by storage.database (SQLite with its writer)")
    try:
        await writer.acquire(adapted)
    except sqlite3.Error as error:  # the turn never came: raised as SQLite's own busy timeout would be
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), error, sqlite3.Error, dialect=dialect) from error
    try:
        results = await adapted.write_at_once(statements)
    except StatementFailed as failed:
        sql, parameters = statements[failed.index]
        hide = conn.engine.sync_engine.hide_parameters  # as SQLAlchemy's own execution would
        raise DBAPIError.instance(
            sql, parameters, failed.error, sqlite3.Error, hide_parameters=hide, dialect=dialect
        ) from failed.error
    except sqlite3.Error as error:  # BEGIN IMMEDIATE or COMMIT itself
        raise DBAPIError.instance("BEGIN IMMEDIATE … COMMIT", (), error, sqlite3.Error, dialect=dialect) from error
    finally:
        writer.release(adapted)
    return [[step.read(row) for row in rows] for (step, _), rows in zip(steps, results, strict=True)]


async def execute_direct(conn: AsyncConnection, steps: Sequence[Step]) -> list[list[dict[str, Any]]]:
    """Run `steps` on PostgreSQL through asyncpg directly; the rows each returned, read by its types.

    One statement runs alone, atomic on its own (no BEGIN and COMMIT round trips); several run in one
    transaction. The connection must have no transaction open: SQLAlchemy has begun none on it, or it is in
    AUTOCOMMIT (a unit of work with no transaction: storage.turns).
    """
    statements = [(step.sql, step.bind(values)) for step, values in steps]
    for watcher in _WATCHERS.get(conn.engine.sync_engine, ()):
        watcher([sql for sql, _ in statements])
    fairy = await conn.get_raw_connection()
    driver = fairy.driver_connection
    if driver is None or driver.is_in_transaction():
        raise RuntimeError("execute_direct needs a PostgreSQL connection with no transaction open")
    results: list[list[Any]] = []
    try:
        if len(statements) == 1:
            results.append(await driver.fetch(statements[0][0], *statements[0][1]))
        else:
            async with driver.transaction():
                for sql, parameters in statements:
                    results.append(await driver.fetch(sql, *parameters))
    except Exception as error:
        sql, parameters = statements[min(len(results), len(statements) - 1)]
        raise await _translated(conn, fairy.dbapi_connection, sql, parameters, error) from error
    return [[step.read(row) for row in rows] for (step, _), rows in zip(steps, results, strict=True)]


async def _translated(
    conn: AsyncConnection, adapted: Any, sql: str, parameters: Sequence[Any], error: Exception
) -> Exception:
    """`error` as SQLAlchemy raises an asyncpg error (IntegrityError, OperationalError, …); a connection that
    closed is invalidated first, as SQLAlchemy's execution does."""
    dialect = conn.dialect
    try:
        adapted._handle_exception(error)  # the dialect's own mapping; raises the DB-API exception it maps to
    except Exception as mapped:  # the mapping raises, by design
        error = mapped
    if not isinstance(error, dialect.loaded_dbapi.Error):
        return error  # not a database error: raised as it is, as SQLAlchemy raises it
    invalidated = bool(dialect.is_disconnect(error, adapted, None))
    if invalidated:
        await conn.invalidate()
    return DBAPIError.instance(
        sql,
        tuple(parameters),
        error,
        dialect.loaded_dbapi.Error,
        hide_parameters=conn.engine.sync_engine.hide_parameters,  # as SQLAlchemy's own execution would
        connection_invalidated=invalidated,
        dialect=dialect,
    )
