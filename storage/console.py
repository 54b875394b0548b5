"""SQL for the manager console: its read queries, the tag archive, and a unit of work that carries it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.console.ports import Conversation, OutboxState, PairCount, UsagePoint
from core.taxonomy.lifecycle import ArchivedTag, MovedHolder
from core.taxonomy.preview import StoredMessage
from core.types import AssignmentState, Customer, EventKind
from storage import tables as t
from storage.repositories import SqlUnitOfWork, _customer

COUNT_CAP = 10_000  # name searches count matches up to this many ("10000+" beyond)
_MESSAGE_ROWS_PER_MESSAGE = 4  # suggestions per message read to find N distinct messages


class SqlConsoleQueries:
    """The console's read models, each one query (or two) on its own read connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def customers_by_name(self, key: str, skip: int, limit: int) -> tuple[list[Customer], int]:
        c = t.customers.c
        pattern = "%" + key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = or_(c.name_key.like(pattern, escape="\\"), func.lower(c.company).like(pattern, escape="\\"))
        matching = select(c.id).where(where).limit(COUNT_CAP + 1).subquery()
        async with self._engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(matching))).scalar_one()
            rows = await conn.execute(select(t.customers).where(where).order_by(c.id).offset(skip).limit(limit))
            return [_customer(r) for r in rows], int(total)

    async def conversations(self, customer_id: int) -> list[Conversation]:
        link = t.conversation_links.c
        stmt = select(t.conversation_links).where(link.customer_id == customer_id).order_by(link.linked_at.desc())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [Conversation(r["channel"], r["conversation_id"], r["linked_by"], r["linked_at"]) for r in rows]

    async def usage(self, since: datetime) -> list[UsagePoint]:
        e = t.tag_events.c
        async with self._engine.connect() as conn:
            day: Any = func.date(e.at) if conn.dialect.name == "sqlite" else func.date_trunc("day", e.at)
            stmt = (
                select(day.label("day"), e.dimension, e.tag, func.count())
                .where(e.at >= since, e.kind.in_([EventKind.ADDED.value, EventKind.REPLACED.value]))
                .group_by(day, e.dimension, e.tag)
            )
            rows = (await conn.execute(stmt)).all()
        from tagging.normaliser import name_key

        out: dict[tuple[date, str, str], int] = {}
        for r in rows:
            when = r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])[:10])
            if isinstance(when, datetime):
                when = when.date()
            key = (when, r[1], name_key(r[2]))
            out[key] = out.get(key, 0) + int(r[3])
        return [UsagePoint(d, dim, tag, n) for (d, dim, tag), n in sorted(out.items())]

    async def cooccurrence(self, now: datetime, tags: Sequence[tuple[str, str]]) -> list[PairCount]:
        if len(tags) < 2:
            return []
        a = t.tag_assignments
        x, y = a.alias("x"), a.alias("y")
        wanted = [tuple(k) for k in tags]

        def live(side: Any) -> Any:
            return and_(
                side.c.state == AssignmentState.ACTIVE.value,
                or_(side.c.expires_at.is_(None), side.c.expires_at > now),
                tuple_(side.c.dimension, side.c.tag_key).in_(wanted),
            )

        stmt = (
            select(x.c.dimension, x.c.tag_key, y.c.dimension, y.c.tag_key, func.count())
            .select_from(
                x.join(
                    y,
                    and_(
                        x.c.customer_id == y.c.customer_id,
                        tuple_(x.c.dimension, x.c.tag_key) < tuple_(y.c.dimension, y.c.tag_key),
                    ),
                )
            )
            .where(live(x), live(y))
            .group_by(x.c.dimension, x.c.tag_key, y.c.dimension, y.c.tag_key)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [PairCount((r[0], r[1]), (r[2], r[3]), int(r[4])) for r in rows]

    async def outbox_states(self) -> list[OutboxState]:
        o = t.outbox.c
        stmt = select(o.state, func.count(), func.min(o.created_at)).group_by(o.state).order_by(o.state)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [OutboxState(r[0], int(r[1]), r[2]) for r in rows]


class SqlMessageSamples:
    """The newest stored messages, read from the suggestions their text produced (excerpt, masked)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def recent_messages(self, limit: int) -> list[StoredMessage]:
        s = t.suggestions.c
        stmt = (
            select(s.message_key, s.customer_id, s.evidence, s.created_at)
            .order_by(s.id.desc())
            .limit(limit * _MESSAGE_ROWS_PER_MESSAGE)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        seen: dict[str, StoredMessage] = {}
        for key, customer_id, evidence, at in rows:
            text = (evidence or {}).get("excerpt") or (evidence or {}).get("text")
            if key in seen or not isinstance(text, str) or not text.strip():
                continue
            seen[key] = StoredMessage(key, int(customer_id), text, at)
            if len(seen) >= limit:
                break
        return list(seen.values())


def _archived(m: Any) -> ArchivedTag:
    return ArchivedTag(
        dimension=m["dimension"],
        tag=m["tag"],
        kind=m["kind"],
        version=m["version"],
        actor=m["actor"],
        at=m["at"],
        holders=m["holders"],
        definition=dict(m["definition"] or {}),
        merged_into=m["merged_into"],
    )


class SqlTagArchive:
    """Archive entries and the bulk moves of a merge, inside the unit of work's transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, entry: ArchivedTag) -> None:
        from tagging.normaliser import name_key

        await self._conn.execute(
            t.tag_archive.insert().values(
                dimension=entry.dimension,
                tag=entry.tag,
                tag_key=name_key(entry.tag),
                kind=entry.kind,
                merged_into=entry.merged_into,
                definition=entry.definition,
                version=entry.version,
                actor=entry.actor,
                at=entry.at,
                holders=entry.holders,
            )
        )

    async def entries(self, limit: int) -> list[ArchivedTag]:
        stmt = select(t.tag_archive).order_by(t.tag_archive.c.id.desc()).limit(limit)
        return [_archived(m) for m in (await self._conn.execute(stmt)).mappings()]

    async def move_holders(
        self, dimension: str, source_key: str, target: str, target_key: str, now: datetime
    ) -> list[MovedHolder]:
        a = t.tag_assignments
        active = AssignmentState.ACTIVE.value
        both = (
            select(a.c.customer_id)
            .where(a.c.dimension == dimension, a.c.tag_key == target_key, a.c.state == active)
            .scalar_subquery()
        )
        source = and_(a.c.dimension == dimension, a.c.tag_key == source_key, a.c.state == active)
        ended = await self._conn.execute(
            update(a)
            .where(source, a.c.customer_id.in_(both))
            .values(state=AssignmentState.REMOVED.value, ended_at=now)
            .returning(a.c.customer_id)
        )
        out = [MovedHolder(int(r[0]), True) for r in ended]
        moved = await self._conn.execute(
            update(a).where(source).values(tag=target, tag_key=target_key).returning(a.c.customer_id)
        )
        out.extend(MovedHolder(int(r[0]), False) for r in moved)
        return out

    async def move_suggestions(self, dimension: str, source_key: str, target: str, target_key: str) -> int:
        s = t.suggestions
        other = s.alias("other")
        clash = (
            select(other.c.id)
            .where(
                other.c.message_key == s.c.message_key,
                other.c.dimension == dimension,
                other.c.tag_key == target_key,
            )
            .exists()
        )
        result = await self._conn.execute(
            update(s)
            .where(s.c.dimension == dimension, s.c.tag_key == source_key, ~clash)
            .values(tag=target, tag_key=target_key)
        )
        return int(result.rowcount or 0)


class ConsoleUnitOfWork(SqlUnitOfWork):
    """The usual unit of work plus the tag archive, in the same transaction."""

    tag_archive: SqlTagArchive

    async def __aenter__(self) -> ConsoleUnitOfWork:
        await super().__aenter__()
        assert self._conn is not None
        self.tag_archive = SqlTagArchive(self._conn)
        return self


class ConsoleStore:
    """The database as the console sees it: units of work with the archive, and the read queries."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.queries = SqlConsoleQueries(engine)
        self.messages = SqlMessageSamples(engine)

    def unit_of_work(self, read_only: bool = False) -> ConsoleUnitOfWork:
        return ConsoleUnitOfWork(self.engine, read_only=read_only)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
