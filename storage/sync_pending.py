"""SQL implementation of core.sync_ports.PendingTagPushes (table wecom_sync_pending)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, union, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.sync_ports import PendingPush
from storage import tables as t
from storage.database import READ_ONLY
from storage.repositories import _insert

ERROR_CHARS = 500
_P = t.wecom_sync_pending


def _pending(row: Row[Any]) -> PendingPush:
    m = row._mapping
    return PendingPush(
        customer_id=m["customer_id"],
        generation=m["generation"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        updated_at=m["updated_at"],
    )


class SqlPendingTagPushes:
    """Short auto-committed statements on the shared engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def mark(self, customer_id: int, now: datetime, lease_until: datetime) -> PendingPush | None:
        async with self._engine.begin() as conn:
            stmt = _insert(conn, _P).values(
                customer_id=customer_id, generation=1, attempts=0, next_attempt_at=lease_until, updated_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={"generation": _P.c.generation + 1, "next_attempt_at": lease_until, "updated_at": now},
            ).returning(_P)
            try:
                row = (await conn.execute(stmt)).one()
            except IntegrityError:
                return None  # the customer was deleted: nothing left to mirror
        return _pending(row)

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[PendingPush]:
        p = _P.c
        due = select(p.customer_id).where(p.next_attempt_at <= now).order_by(p.next_attempt_at).limit(limit)
        lease = {"next_attempt_at": lease_until, "updated_at": now}
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Rows another replica holds are skipped, not waited for. A CTE, not `IN (subquery)`:
                # PostgreSQL may re-run a locking subquery and claim more than `limit`.
                locked = due.with_for_update(skip_locked=True).cte("due")
                stmt = (
                    update(_P)
                    .where(p.customer_id == locked.c.customer_id, p.next_attempt_at <= now)
                    .values(**lease)
                    .returning(_P)
                )
            else:
                # SQLite: the transaction began IMMEDIATE (the write lock), so select-and-update is atomic.
                stmt = update(_P).where(p.customer_id.in_(due.scalar_subquery())).values(**lease).returning(_P)
            rows = (await conn.execute(stmt)).all()
        return sorted((_pending(r) for r in rows), key=lambda r: (r.next_attempt_at, r.customer_id))

    async def done(self, customer_id: int, generation: int) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(_P).where(_P.c.customer_id == customer_id, _P.c.generation == generation)
            )
            return bool(result.rowcount)

    async def failed(self, customer_id: int, now: datetime, next_attempt_at: datetime, error: str) -> int | None:
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    update(_P)
                    .where(_P.c.customer_id == customer_id)
                    .values(
                        attempts=_P.c.attempts + 1,
                        next_attempt_at=next_attempt_at,
                        last_error=error[:ERROR_CHARS],
                        updated_at=now,
                    )
                    .returning(_P.c.attempts)
                )
            ).first()
        return None if row is None else int(row[0])

    async def make_due(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(update(_P).where(_P.c.next_attempt_at > now).values(next_attempt_at=now))
            return int(result.rowcount or 0)

    async def get(self, customer_id: int) -> PendingPush | None:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})  # a read: no SQLite write lock
            row = (await conn.execute(select(_P).where(_P.c.customer_id == customer_id))).first()
        return None if row is None else _pending(row)

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            return int((await conn.execute(select(func.count()).select_from(_P))).scalar_one())

    async def tags_in_history(self, customer_id: int) -> list[tuple[str, str]]:
        e = t.tag_events.c
        tags = select(e.dimension, e.tag.label("tag")).where(e.customer_id == customer_id)
        replaced = select(e.dimension, e.previous.label("tag")).where(
            e.customer_id == customer_id, e.previous.is_not(None)
        )
        both = union(tags, replaced).subquery()
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            rows = await conn.execute(select(both.c.dimension, both.c.tag).order_by(both.c.dimension, both.c.tag))
            return [(str(d), str(n)) for d, n in rows]
