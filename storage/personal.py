"""SQL implementation of the personal-tag port: one short transaction per call."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.tags.personal import PersonalSource, PersonalTag
from storage import tables as t
from storage.database import READ_ONLY
from storage.repositories import _insert
from tagging.normaliser import name_key

_P = t.personal_tags


class SqlPersonalTagStore:
    """Rows keyed by (customer, author, name key); inserts of a name already held are skipped."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def personal_for(self, customer_id: int, author: str) -> list[PersonalTag]:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})  # a read: no SQLite write lock
            rows = await conn.execute(
                select(_P.c.name, _P.c.source, _P.c.created_at)
                .where(_P.c.customer_id == customer_id, _P.c.author == author)
                .order_by(_P.c.created_at, _P.c.id)
            )
            return [PersonalTag(customer_id, author, r.name, PersonalSource(r.source), r.created_at) for r in rows]

    async def change_personal(
        self,
        customer_id: int,
        author: str,
        add: Sequence[str],
        remove_keys: Sequence[str],
        source: PersonalSource,
        now: datetime,
    ) -> None:
        async with self._engine.begin() as conn:
            if remove_keys:
                await conn.execute(
                    delete(_P).where(
                        _P.c.customer_id == customer_id, _P.c.author == author, _P.c.name_key.in_(list(remove_keys))
                    )
                )
            await _add(conn, customer_id, author, add, source, now)

    async def replace_personal_source(
        self, customer_id: int, author: str, names: Sequence[str], source: PersonalSource, now: datetime
    ) -> None:
        keys = [name_key(n) for n in names]
        async with self._engine.begin() as conn:
            mine = [_P.c.customer_id == customer_id, _P.c.author == author, _P.c.source == source.value]
            if keys:
                mine.append(_P.c.name_key.not_in(keys))
            await conn.execute(delete(_P).where(and_(*mine)))
            await _add(conn, customer_id, author, names, source, now)


async def _add(
    conn: AsyncConnection, customer_id: int, author: str, names: Sequence[str], source: PersonalSource, now: datetime
) -> None:
    """Insert names not yet held by the author on the customer (race-safe ON CONFLICT DO NOTHING)."""
    rows = {
        name_key(n): {
            "customer_id": customer_id,
            "author": author,
            "name": n,
            "name_key": name_key(n),
            "source": source.value,
            "created_at": now,
        }
        for n in names
        if name_key(n)
    }
    if not rows:
        return
    stmt = (
        _insert(conn, _P)
        .values(list(rows.values()))
        .on_conflict_do_nothing(index_elements=["customer_id", "author", "name_key"])
    )
    await conn.execute(stmt)
