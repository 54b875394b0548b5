"""Helpers the verbs share: argument types and running work against the database."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database
    from tagging.taxonomy import Taxonomy

Verbs = argparse._SubParsersAction  # the object `add_parser` is called on
Handler = Callable[[argparse.Namespace, "Settings"], int]


def positive_int(value: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def parse_now(value: str) -> datetime:
    """--now: an ISO date-time; a value without an offset is read in KEBIAO_TIMEZONE by the caller."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO date-time; use e.g. 2025-03-01T09:00:00+08:00"
        ) from None


def initial_taxonomy(settings: Settings) -> Taxonomy:
    """KEBIAO_TAXONOMY when set, else the built-in taxonomy (what the first start loads)."""
    from tagging.builtin import initial_taxonomy as load

    return load(settings.taxonomy_path)


def run_db(settings: Settings, work: Callable[[Database], Awaitable[int]]) -> int:
    """Open the database (migrating it), run `work`, close; database problems exit 1 with the reason."""
    import asyncio

    from storage.database import DatabaseError, open_database

    async def run() -> int:
        database = await open_database(settings.database_url)
        try:
            return await work(database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except DatabaseError as exc:
        print(f"kebiao: {exc}", file=sys.stderr)
        return 1


async def current_or_initial(database: Database, settings: Settings, actor: str = "cli") -> Any:
    """The stored taxonomy version; on a fresh database, store the initial one first (as the server would)."""
    from datetime import UTC

    from core.taxonomy.store import ensure_taxonomy

    async with database.unit_of_work() as uow:
        current = await uow.taxonomies.current()
    if current is None:
        async with database.unit_of_work() as uow:
            current = await ensure_taxonomy(uow, initial_taxonomy(settings), actor, datetime.now(UTC))
    return current
