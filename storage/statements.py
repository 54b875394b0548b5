"""Counting what an engine sends: statements and transactions (write and read-only), for tests and benches.

`count_statements(engine)` listens to the engine's SQLAlchemy events while its block runs; nothing is
installed outside the block, so serving code pays nothing for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.prepared import watching
from storage.repositories import NO_TRANSACTION, READ_ONLY


@dataclass
class StatementCount:
    """What went to the database: statements (driver level, BEGIN/COMMIT included where sent as SQL, and those
    of one-trip write transactions: storage.prepared) and transactions, split into write transactions and
    read-only ones."""

    statements: int = 0
    writes: int = 0
    reads: int = 0

    @property
    def transactions(self) -> int:
        return self.writes + self.reads

    def per(self, n: int) -> tuple[float, float, float]:
        """(statements, write transactions, read-only transactions) per one of `n` units (turns)."""
        return self.statements / n, self.writes / n, self.reads / n


@contextlib.contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[StatementCount]:
    """Count `engine`'s statements and transactions while the block runs."""
    count = StatementCount()
    sync_engine = engine.sync_engine

    def on_execute(*_args: Any) -> None:
        count.statements += 1

    def on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(NO_TRANSACTION):
            return  # SQLite sends no BEGIN: its one write is counted as the one-trip transaction it is
        if options.get(READ_ONLY) or options.get("postgresql_readonly"):
            count.reads += 1
        else:
            count.writes += 1

    def on_one_trip(statements: Sequence[str]) -> None:
        count.statements += len(statements)
        count.writes += 1

    event.listen(sync_engine, "before_cursor_execute", on_execute)
    event.listen(sync_engine, "begin", on_begin)
    try:
        with watching(engine, on_one_trip):
            yield count
    finally:
        event.remove(sync_engine, "before_cursor_execute", on_execute)
        event.remove(sync_engine, "begin", on_begin)
