"""Bulk writes inside a unit of work: COPY on PostgreSQL, and unique violations turned into DuplicateKeyError."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from core.errors import DuplicateKeyError
from core.records import NewEvent

CHUNK = 20_000  # rows sent per driver call (lets a progress callback speak between calls)


def utc_bound(value: datetime) -> datetime:
    """An aware datetime in UTC, as `UtcDateTime` binds it, for values bound outside it (arrays for unnest);
    a naive one is refused the same way."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the database; pass an aware datetime")
    return value.astimezone(UTC)


def tag_event_arrays(events: Sequence[NewEvent], serialize: Callable[[Any], str]) -> dict[str, list[Any]]:
    """Tag events as one array per column, the parameters of an INSERT … SELECT FROM unnest (PostgreSQL):
    customer_ids, dimensions, tags, kinds, actors, sources, ats, evidence (JSON text), previous."""
    return {
        "customer_ids": [e.customer_id for e in events],
        "dimensions": [e.dimension for e in events],
        "tags": [e.tag for e in events],
        "kinds": [e.kind.value for e in events],
        "actors": [e.actor for e in events],
        "sources": [e.source.value for e in events],
        "ats": [utc_bound(e.at) for e in events],
        "evidence": [serialize(dict(e.evidence)) for e in events],
        "previous": [e.previous for e in events],
    }


def json_text(conn: AsyncConnection) -> Callable[[Any], str]:
    """How the engine writes a JSON column's value, for JSON bound as text outside the column (unnest arrays),
    so the stored text is the same as through the column."""
    serializer: Callable[[Any], str] | None = getattr(conn.dialect, "_json_serializer", None)
    return serializer or json.dumps


async def copy_rows(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """COPY dict rows (SQLAlchemy values: aware datetimes, dicts for JSON) into a table (PostgreSQL only).

    Inside the caller's transaction; a unique violation surfaces as DuplicateKeyError naming the key.
    """
    if not rows:
        return
    columns = list(rows[0])
    json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
    records = [
        tuple(json.dumps(row[name], ensure_ascii=False) if name in json_columns else row[name] for name in columns)
        for row in rows
    ]
    raw = await conn.get_raw_connection()
    if getattr(raw.dbapi_connection, "_transaction", False) is None and conn.in_transaction():
        # SQLAlchemy's asyncpg adapter sends BEGIN with the first statement, and COPY goes to the driver
        # directly: a COPY first in a unit of work would commit on its own and survive the rollback.
        await conn.exec_driver_sql("SELECT 1")
    driver: Any = raw.driver_connection
    for start in range(0, len(records), CHUNK):
        try:
            await driver.copy_records_to_table(table.name, records=records[start : start + CHUNK], columns=columns)
        except Exception as exc:
            duplicate = duplicate_key(exc)
            if duplicate is not None:
                raise duplicate from exc
            raise


_PG_KEY = re.compile(r"Key \((?P<column>[^)]+)\)=\((?P<value>.*)\) already exists")
_SQLITE_KEY = re.compile(r"UNIQUE constraint failed: \w+\.(?P<column>\w+)")


def duplicate_key(exc: BaseException) -> DuplicateKeyError | None:
    """The DuplicateKeyError a driver's unique violation means (SQLAlchemy-wrapped or raw), else None."""
    original = getattr(exc, "orig", None) or exc
    detail = str(getattr(original, "detail", "") or "") or str(original)
    found = _PG_KEY.search(detail) or _SQLITE_KEY.search(detail)
    if found is None or (
        "unique" not in type(original).__name__.lower() and "UNIQUE" not in detail and "already exists" not in detail
    ):
        return None
    groups = found.groupdict()
    return DuplicateKeyError(groups["column"], groups.get("value"))
