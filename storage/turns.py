"""A chat turn's one write transaction: the message's suggestions, its text kept for learning, its customer event.

A linked message used to write in three transactions (text, suggestions, `message` event), each waiting its
turn at SQLite's single writer. Here they share one unit of work: one turn at the writer per message, and
the three commit or roll back together (a crash never keeps the event without the suggestions, or the
reverse).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.learning import SqlMessageTexts
from storage.repositories import SqlUnitOfWork
from storage.rules import SqlCustomerEvents


class SqlTurnUnitOfWork(SqlUnitOfWork):
    """The chat unit of work plus message texts (learning) and customer events, in one transaction."""

    message_texts: SqlMessageTexts
    customer_events: SqlCustomerEvents

    async def __aenter__(self) -> SqlTurnUnitOfWork:
        await super().__aenter__()
        conn = self._conn
        assert conn is not None
        self.message_texts = SqlMessageTexts(conn)
        self.customer_events = SqlCustomerEvents(conn)
        return self


class SqlTurnStore:
    """Turn units of work on the same engine as `storage.database.Database` (pass `database.engine`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def unit_of_work(self) -> SqlTurnUnitOfWork:
        return SqlTurnUnitOfWork(self._engine)
