"""SQL side of the CRM sync (core.crm.ports): cursor and lease, customer links, pending CRM writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, and_, any_, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.crm.ports import CrmLink, LeaseLost, LinkState, PendingWrite, SyncState
from storage import tables as t
from storage.repositories import READ_ONLY, SqlUnitOfWork, _insert
from storage.sync_pending import _gap_closed, _lock_cursor, _start_cursor, readable_upto
from tagging.normaliser import name_key

ERROR_CHARS = 500
_S = t.crm_sync_state
_L = t.crm_links
_W = t.crm_pending_writes
_BULK = 500


def _link(row: Row[Any]) -> CrmLink:
    m = row._mapping
    synced = {k: tuple(v) for k, v in (m["synced"] or {}).items()}
    return CrmLink(m["customer_id"], m["crm_id"], m["kind"], LinkState(m["state"]), synced, m["merged_into"])


def _write(row: Row[Any]) -> PendingWrite:
    m = row._mapping
    return PendingWrite(m["customer_id"], m["generation"], m["attempts"], m["next_attempt_at"], m["last_error"])


class SqlCrmState:
    """The sync state inside one unit of work's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def customers_by_crm_id(self, crm_ids: Sequence[str]) -> dict[str, int]:
        c = t.customers.c
        if self._conn.dialect.name == "postgresql":  # one statement with an array: no 500-parameter IN lists
            wanted = bindparam("crm_ids", value=list(crm_ids), type_=ARRAY(String()))
            rows = await self._conn.execute(select(c.crm_id, c.id).where(c.crm_id == any_(wanted)))
            return {str(k): int(v) for k, v in rows}
        out: dict[str, int] = {}
        for i in range(0, len(crm_ids), _BULK):
            rows = await self._conn.execute(select(c.crm_id, c.id).where(c.crm_id.in_(crm_ids[i : i + _BULK])))
            out.update({str(k): int(v) for k, v in rows})
        return out

    async def add_customers(
        self,
        rows: Sequence[tuple[str, str]],
        now: datetime,
        attributes: Mapping[str, tuple[Mapping[str, str], str]] | None = None,
    ) -> dict[str, int]:
        extra = attributes or {}
        values = [
            {
                "name": name.strip() or crm_id,
                "name_key": name_key(name.strip() or crm_id),
                "company": "",
                "owner": "",
                "region": extra[crm_id][1] if crm_id in extra else "",
                "crm_id": crm_id,
                "attributes": dict(extra[crm_id][0]) if crm_id in extra else {},
                "created_at": now,
                "updated_at": now,
            }
            for crm_id, name in rows
        ]
        if not values:
            return {}
        stmt = t.customers.insert().returning(t.customers.c.crm_id, t.customers.c.id)
        result = await self._conn.execute(stmt, values)
        return {str(k): int(v) for k, v in result}

    async def customer_attributes(self, customer_ids: Sequence[int]) -> dict[int, tuple[Mapping[str, str], str]]:
        c = t.customers.c
        out: dict[int, tuple[Mapping[str, str], str]] = {}
        for i in range(0, len(customer_ids), _BULK):
            chunk = list(customer_ids[i : i + _BULK])
            rows = await self._conn.execute(select(c.id, c.attributes, c.region).where(c.id.in_(chunk)))
            out.update({int(cid): (dict(attrs or {}), str(region or "")) for cid, attrs, region in rows})
        return out

    async def save_attributes(self, rows: Mapping[int, tuple[Mapping[str, str], str]], now: datetime) -> None:
        if not rows:
            return
        c = t.customers.c
        stmt = (
            update(t.customers)
            .where(c.id == bindparam("cid"))
            .values(attributes=bindparam("attrs", type_=c.attributes.type), region=bindparam("reg"), updated_at=now)
        )
        values = [{"cid": cid, "attrs": dict(attrs), "reg": region} for cid, (attrs, region) in rows.items()]
        await self._conn.execute(stmt, values)

    async def links(self, connector: str, customer_ids: Sequence[int]) -> dict[int, CrmLink]:
        mine = _L.c.connector == connector
        if self._conn.dialect.name == "postgresql":
            wanted = bindparam("customer_ids", value=list(customer_ids), type_=ARRAY(BigInteger()))
            rows = await self._conn.execute(select(_L).where(mine, _L.c.customer_id == any_(wanted)))
            return {r.customer_id: _link(r) for r in rows}
        out: dict[int, CrmLink] = {}
        for i in range(0, len(customer_ids), _BULK):
            chunk = customer_ids[i : i + _BULK]
            rows = await self._conn.execute(select(_L).where(mine, _L.c.customer_id.in_(chunk)))
            out.update({r.customer_id: _link(r) for r in rows})
        return out

    async def save_links(self, connector: str, links: Sequence[CrmLink], now: datetime) -> None:
        if not links:
            return
        values = [
            {
                "customer_id": link.customer_id,
                "connector": connector,
                "crm_id": link.crm_id,
                "kind": link.kind,
                "state": link.state.value,
                "merged_into": link.merged_into,
                "synced": {k: list(v) for k, v in link.synced.items()},
                "updated_at": now,
            }
            for link in links
        ]
        stmt = _insert(self._conn, _L)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={
                "crm_id": ex.crm_id,
                "kind": ex.kind,
                "state": ex.state,
                "merged_into": ex.merged_into,
                "synced": ex.synced,
                "updated_at": ex.updated_at,
            },
        )
        await self._conn.execute(stmt, values)  # executemany: one compiled statement, cached

    async def mark_pending(self, connector: str, customer_ids: Sequence[int], now: datetime) -> None:
        await _mark(self._conn, connector, customer_ids, now)

    async def save_cursor(self, connector: str, owner: str, cursor: str | None, records: int, now: datetime) -> None:
        result = await self._conn.execute(
            update(_S)
            .where(_S.c.connector == connector, _S.c.lease_owner == owner)
            .values(cursor=cursor, records=_S.c.records + records, updated_at=now)
        )
        if not result.rowcount:
            raise LeaseLost(f"crm sync {connector}: another replica took the sync lease; this page was not written")


async def _mark(conn: AsyncConnection, connector: str, customer_ids: Sequence[int], now: datetime) -> None:
    """Insert or bump pending rows, due now (a failing row retries at once for the new change)."""
    if not customer_ids:
        return
    values = [
        {
            "customer_id": cid,
            "connector": connector,
            "generation": 1,
            "attempts": 0,
            "next_attempt_at": now,
            "updated_at": now,
        }
        for cid in customer_ids
    ]
    stmt = _insert(conn, _W).on_conflict_do_update(
        index_elements=["customer_id"],
        set_={"generation": _W.c.generation + 1, "next_attempt_at": now, "updated_at": now},
    )
    await conn.execute(stmt, values)


class SqlCrmUnitOfWork(SqlUnitOfWork):
    """A unit of work that also holds the CRM sync state, so a page and its cursor commit together."""

    crm: SqlCrmState

    async def __aenter__(self) -> SqlCrmUnitOfWork:
        await super().__aenter__()
        assert self._conn is not None
        self.crm = SqlCrmState(self._conn)
        return self


class SqlCrmStore:
    """core.crm.ports.CrmStore on the shared engine: short auto-committed statements plus units of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def unit_of_work(self, read_only: bool = False) -> SqlCrmUnitOfWork:
        return SqlCrmUnitOfWork(self._engine, read_only=read_only)

    async def acquire(self, connector: str, owner: str, now: datetime, until: datetime) -> bool:
        async with self._engine.begin() as conn:
            seed = _insert(conn, _S).values(connector=connector, records=0, updated_at=now)
            await conn.execute(seed.on_conflict_do_nothing(index_elements=["connector"]))
            free = or_(_S.c.lease_owner.is_(None), _S.c.lease_owner == owner, _S.c.lease_until < now)
            result = await conn.execute(
                update(_S)
                .where(_S.c.connector == connector, free)
                .values(
                    lease_owner=owner,
                    lease_until=until,
                    last_started_at=case((_S.c.lease_owner == owner, _S.c.last_started_at), else_=now),
                )
            )
            return bool(result.rowcount)

    async def release(
        self, connector: str, owner: str, now: datetime, error: str | None, *, record: bool = True
    ) -> None:
        outcome: dict[str, Any] = (
            {}
            if not record
            else {"last_ok_at": now, "last_error": None, "last_error_at": None}
            if error is None
            else {"last_error": error[:ERROR_CHARS], "last_error_at": now}
        )
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_S)
                .where(_S.c.connector == connector, _S.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None, updated_at=now, **outcome)
            )

    async def refresh_statistics(self) -> None:
        """PostgreSQL: ANALYZE the tables a sync fills, so joins on them stop using empty-table plans."""
        if self._engine.dialect.name != "postgresql":
            return
        async with self._engine.begin() as conn:
            await conn.execute(text("ANALYZE customers, tag_assignments, tag_events, crm_links"))

    async def reset_cursor(self, connector: str, owner: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_S).where(_S.c.connector == connector, _S.c.lease_owner == owner).values(cursor=None)
            )

    async def state(self, connector: str) -> SyncState | None:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            row = (await conn.execute(select(_S).where(_S.c.connector == connector))).first()
        if row is None:
            return None
        m = row._mapping
        return SyncState(
            connector,
            m["cursor"],
            m["lease_owner"],
            m["lease_until"],
            m["last_started_at"],
            m["last_ok_at"],
            m["last_error"],
            m["last_error_at"],
            int(m["records"]),
        )

    async def claim_writes(self, connector: str, now: datetime, until: datetime, limit: int) -> list[PendingWrite]:
        w = _W.c
        due = (
            select(w.customer_id)
            .where(w.connector == connector, w.next_attempt_at <= now)
            .order_by(w.next_attempt_at, w.customer_id)
            .limit(limit)
        )
        lease = {"next_attempt_at": until, "updated_at": now}
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                locked = due.with_for_update(skip_locked=True).cte("due")
                stmt = update(_W).where(w.customer_id == locked.c.customer_id, w.next_attempt_at <= now)
            else:  # SQLite: BEGIN IMMEDIATE holds the write lock, so select-and-update is atomic
                stmt = update(_W).where(w.customer_id.in_(due.scalar_subquery()))
            rows = (await conn.execute(stmt.values(**lease).returning(_W))).all()
        return sorted((_write(r) for r in rows), key=lambda r: r.customer_id)

    async def write_done(self, connector: str, customer_id: int, generation: int, synced: CrmLink) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(_W).where(_W.c.customer_id == customer_id, _W.c.generation == generation))
            await conn.execute(
                update(_L)
                .where(_L.c.customer_id == customer_id, _L.c.connector == connector)
                .values(synced={k: list(v) for k, v in synced.synced.items()})
            )

    async def write_failed(
        self, connector: str, customer_id: int, now: datetime, next_attempt_at: datetime, error: str
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_W)
                .where(_W.c.customer_id == customer_id)
                .values(
                    attempts=_W.c.attempts + 1,
                    next_attempt_at=next_attempt_at,
                    last_error=error[:ERROR_CHARS],
                    updated_at=now,
                )
            )

    async def mark_link(self, connector: str, customer_id: int, state: LinkState, merged_into: str | None) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_L)
                .where(_L.c.customer_id == customer_id, _L.c.connector == connector)
                .values(state=state.value, merged_into=merged_into)
            )
            await conn.execute(delete(_W).where(_W.c.customer_id == customer_id))

    async def pending(self, connector: str) -> tuple[int, int]:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            failing = func.sum(case((_W.c.attempts > 0, 1), else_=0))
            row = (await conn.execute(select(func.count(), failing).where(_W.c.connector == connector))).one()
        return int(row[0]), int(row[1] or 0)

    async def failures(self, connector: str, limit: int) -> list[PendingWrite]:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
            rows = await conn.execute(
                select(_W)
                .where(_W.c.connector == connector, _W.c.attempts > 0)
                .order_by(_W.c.updated_at.desc())
                .limit(limit)
            )
            return [_write(r) for r in rows]

    async def mark_from_events(self, connector: str, dimensions: Sequence[str], now: datetime, limit: int) -> int:
        name = f"crm_push:{connector}"
        async with self._engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            state = await _lock_cursor(conn, name, postgres)
            if state is None:
                await _start_cursor(conn, name, now)
                return 0
            last: int = state["last_event_id"]
            e = t.tag_events.c
            ids = list((await conn.execute(select(e.id).where(e.id > last).order_by(e.id).limit(limit))).scalars())
            known_gap = bool(ids) and ids[0] != last + 1 and state["gap_xmax"] is not None
            skips = len(ids) if not postgres else int(known_gap and _gap_closed(state, now))
            upto, waiting = readable_upto(last, ids, skips)
            gap: dict[str, Any] = {"gap_xmax": None, "gap_since": None}
            if waiting:
                xmax = (await conn.execute(select(func.txid_snapshot_xmax(func.txid_current_snapshot())))).scalar_one()
                gap = {"gap_xmax": state["gap_xmax"] or int(xmax), "gap_since": state["gap_since"] or now}
            marked: list[int] = []
            if upto > last and dimensions:
                named = (
                    select(_L.c.customer_id)
                    .distinct()
                    .join(t.tag_events, t.tag_events.c.customer_id == _L.c.customer_id)
                    .where(
                        and_(e.id > last, e.id <= upto),
                        e.dimension.in_(list(dimensions)),
                        e.actor != f"crm:{connector}",
                        _L.c.connector == connector,
                        _L.c.state == LinkState.LINKED.value,
                    )
                )
                marked = [int(x) for x in (await conn.execute(named)).scalars()]
                await _mark(conn, connector, marked, now)
            await conn.execute(
                update(t.sync_cursors)
                .where(t.sync_cursors.c.name == name)
                .values(last_event_id=upto, updated_at=now, **gap)
            )
        return len(marked)

    async def mark_all_linked(self, connector: str, now: datetime) -> int:
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                select(_L.c.customer_id).where(_L.c.connector == connector, _L.c.state == LinkState.LINKED.value)
            )
            ids = [int(x) for x in rows.scalars()]
            await _mark(conn, connector, ids, now)
        return len(ids)
