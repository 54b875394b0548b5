"""Database lifecycle: open (engine + pragmas + migrations), ping, unit of work, close."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from storage.repositories import NO_TRANSACTION, READ_ONLY, SqlUnitOfWork
from storage.sqlite_driver import one_trip_dbapi
from storage.writer import SqliteWriter, install_writer

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
_PG_MIGRATION_LOCK = 0x6B6562  # advisory lock id: two replicas starting together migrate one after the other


class DatabaseError(RuntimeError):
    """The database URL is unusable or the database cannot be reached/migrated; the message says why."""


class Database:
    """An open database: hands out units of work (one transaction each)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def unit_of_work(self, read_only: bool = False) -> SqlUnitOfWork:
        """One transaction; `read_only` work skips SQLite's write lock and fails loudly if it writes."""
        return SqlUnitOfWork(self.engine, read_only=read_only)

    async def ping(self) -> None:
        """A real round trip; raises when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_revision_of)

    async def upgrade(self) -> None:
        """Apply pending migrations (no-op when at head)."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def head_revision() -> str | None:
    """The newest migration shipped with the package."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def migration_module(revision: str) -> ModuleType:
    """A shipped migration's module as Alembic loads it (its SQL, for a benchmark that compares revisions)."""
    script = ScriptDirectory.from_config(_alembic_config()).get_revision(revision)
    if script is None:
        raise DatabaseError(f"no migration {revision!r} ships with Kebiao")
    return script.module


async def open_database(url: str, *, upgrade: bool = True, schema: str | None = None) -> Database:
    """Open `url`, configure SQLite (WAL, foreign keys, busy timeout), and migrate to head unless told not."""
    engine = create_engine(url, schema=schema)
    database = Database(engine)
    try:
        if upgrade:
            if await database.current_revision() != head_revision():
                log.info("migrating database to %s", head_revision())
                await database.upgrade()
        else:
            await database.ping()
    except Exception as exc:
        await engine.dispose()
        safe = make_url(url).render_as_string(hide_password=True)
        raise DatabaseError(f"cannot open database {safe}: {exc}") from exc
    return database


SQLITE_POOL_SIZE = 24
POSTGRES_POOL_SIZE = 16
POSTGRES_MAX_OVERFLOW = 8
POSTGRES_PING_IDLE_S = 5.0  # a pooled connection idle this long is pinged before use
_IDLE_SINCE = "kebiao_idle_since"


def create_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine for `url`; SQLite files get their folder created and their pragmas set."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"KEBIAO_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        if parsed.drivername != "sqlite+aiosqlite":
            raise DatabaseError(f"use sqlite+aiosqlite:// for SQLite, not {parsed.drivername}://")
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Connections are cheap to keep and costly to open (a thread and three pragmas each): keep enough for
        # every turn in flight, instead of opening and closing overflow connections under a burst.
        engine = create_async_engine(parsed, pool_size=SQLITE_POOL_SIZE, module=one_trip_dbapi(), **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername != "postgresql+asyncpg":
            raise DatabaseError(f"use postgresql+asyncpg:// for PostgreSQL, not {parsed.drivername}://")
        if schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        # A new PostgreSQL connection is a server process forked and authenticated, and its statements are
        # prepared again: keep enough pooled for every turn in flight (eight) and the background jobs, so a
        # burst reuses connections instead of opening and closing overflow ones per unit of work. Three
        # replicas hold at most 3 × (16 + 8) = 72 connections, inside PostgreSQL's default max_connections.
        engine = create_async_engine(
            parsed, pool_size=POSTGRES_POOL_SIZE, max_overflow=POSTGRES_MAX_OVERFLOW, **kwargs
        )
        _ping_when_idle(engine)
        return engine
    raise DatabaseError(
        f"unsupported database {parsed.drivername!r}: use sqlite+aiosqlite or postgresql+asyncpg"
    )


@asynccontextmanager
async def one_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for a single write statement, which is atomic on its own.

    On PostgreSQL the statement runs in autocommit: a transaction around it would cost a BEGIN and a COMMIT
    round trip each. On SQLite it is a write transaction as usual: the process's single writer is taken at
    BEGIN (storage.writer), and the BEGIN goes in the statement's own trip (storage.sqlite_driver).
    """
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:
            yield conn
        return
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


@asynccontextmanager
async def one_read(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for a single read statement.

    On PostgreSQL it runs in autocommit: a READ ONLY transaction around one SELECT cost a BEGIN and a ROLLBACK
    round trip and saw nothing more consistent (at READ COMMITTED each statement reads its own snapshot). On
    SQLite it is a read as usual: a deferred BEGIN that never takes the write lock.
    """
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            yield await conn.execution_options(isolation_level="AUTOCOMMIT", **{NO_TRANSACTION: True})
        else:
            yield await conn.execution_options(**{READ_ONLY: True})


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled PostgreSQL connection before use only when it sat idle for POSTGRES_PING_IDLE_S or more.

    A ping is three round trips (BEGIN, a query, ROLLBACK). Made at every checkout, as `pool_pre_ping` does,
    it was a dozen round trips per chat turn, more than the turn's own statements. A connection in steady use
    is not pinged; one that sat idle (the server may have restarted or a firewall dropped it meanwhile) is,
    and a dead one is replaced before the caller sees it. A connection that dies while in use fails that
    statement; SQLAlchemy then discards every pooled connection opened before, as it always does.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        idle_s = POSTGRES_PING_IDLE_S
        if since is None or time.monotonic() - since < idle_s:
            return  # just opened, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool invalidates this connection and checks out another (a fresh one needs no ping).
            raise DisconnectionError(f"pooled connection failed its ping after {idle_s:g} s idle: {exc}") from exc


def _configure_sqlite(engine: AsyncEngine) -> None:
    writer = install_writer(engine, SQLITE_BUSY_TIMEOUT_MS / 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout instead of
        # deadlocking when both try to upgrade a read lock. Work marked READ_ONLY never writes, so it
        # takes a plain (deferred) BEGIN: WAL readers neither wait for nor block the writer.
        options = conn.get_execution_options()
        if options.get(NO_TRANSACTION):
            return  # every statement commits on its own
        if options.get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        _begin_write(conn, writer)


def _begin_write(conn: Connection, writer: SqliteWriter) -> None:
    """Wait for this process's turn at the single writer (storage.writer), then take SQLite's write lock."""
    writer.take_turn(conn)
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        writer.release(conn)
        raise


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
