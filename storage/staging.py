"""Staging tables for bulk imports: rows go into a connection's temporary table at driver speed, then one
set-based statement merges them into the real tables.

On SQLite the staging table lives in the connection's `temp` schema, so filling it takes no write lock on
the database: `staged` fills it in a deferred transaction and only the merge runs under BEGIN IMMEDIATE,
which keeps chat turns writing meanwhile. On PostgreSQL the rows are sent with COPY
(asyncpg copy_records_to_table) inside the import's one transaction. Either way the merge is all or nothing:
a process killed before it commits leaves the database as it was (a temporary table dies with its
connection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Column, Constraint, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.bulk import CHUNK
from storage.repositories import READ_ONLY

Progress = Callable[[int], None]


def staging_table(name: str, *columns: Column[Any] | Constraint) -> Table:
    """A temporary table definition (its own metadata: never part of the schema or of migrations)."""
    return Table(
        name,
        MetaData(),
        *columns,
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )


async def create_staging(conn: AsyncConnection, table: Table) -> None:
    """Create `table` empty on this connection (a leftover of an earlier failed import is dropped first)."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{table.name}")
    await conn.run_sync(table.create)


async def fill_staging(
    conn: AsyncConnection, table: Table, rows: Sequence[tuple[Any, ...]], progress: Progress | None = None
) -> None:
    """Load `rows` (tuples in the table's column order, already in driver form) into the staging table."""
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK]
        if conn.dialect.name == "postgresql":
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.copy_records_to_table(table.name, records=part, columns=[c.name for c in table.columns])
        else:
            marks = ", ".join("?" * len(table.columns))
            await conn.exec_driver_sql(f"INSERT INTO temp.{table.name} VALUES ({marks})", list(part))
        if progress is not None:
            progress(len(part))


async def drop_staging(conn: AsyncConnection, *tables: Table) -> None:
    """Drop staging tables on SQLite (PostgreSQL drops them at commit)."""
    if conn.dialect.name == "sqlite":
        for table in tables:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{table.name}")


@asynccontextmanager
async def staged(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncConnection, Callable[[], Any]]]:
    """(connection, begin_merge) with a transaction open for staging; `await begin_merge()` ends the staging
    phase and opens the merge transaction, which commits when the block ends (rolls back on error).

    SQLite: staging runs in a deferred transaction that only writes `temp` (no write lock); the merge takes
    BEGIN IMMEDIATE. PostgreSQL: one transaction throughout (COPY into ON COMMIT DROP tables, then merge).
    """
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            await conn.execution_options(**{READ_ONLY: True})
        await conn.begin()

        async def begin_merge() -> None:
            if sqlite:
                await conn.commit()
                await conn.execution_options(**{READ_ONLY: False})
                await conn.begin()

        try:
            yield conn, begin_merge
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        finally:
            if sqlite:
                await conn.execution_options(**{READ_ONLY: False})
