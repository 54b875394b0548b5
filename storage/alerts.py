"""SQL for alert scans (streamed, memory flat), bulk expiry, acknowledgements and customer activity."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal, literal_column, or_, select, text, union, update
from sqlalchemy.ext.asyncio import AsyncConnection

from core.alerts.ports import BulkTag
from core.alerts.selection import ChurnSeeds, CustomerFacts, ExpiringTag, HeldTag
from core.records import NewEvent
from core.types import Assignment, Role, User
from storage import tables as t
from storage.bulk import json_text, tag_event_arrays
from storage.repositories import _among, _assignment, _insert, _user
from storage.tables import UtcDateTime
from storage.tag_counts import fold
from tagging.normaliser import name_key

STREAM_ROWS = 2000  # rows fetched per round trip when streaming
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(NewEvent))
ARRAY_ROWS = 10_000  # events per INSERT on PostgreSQL (one array parameter per column)

# PostgreSQL: a batch of tag events as one row of arrays, inserted in the order given (ids follow it).
_APPEND_EVENTS = text(
    """
    INSERT INTO tag_events (customer_id, dimension, tag, kind, actor, source, at, evidence, previous)
    SELECT u.customer_id, u.dimension, u.tag, u.kind, u.actor, u.source, u.at, CAST(u.evidence AS json), u.previous
    FROM unnest(CAST(:customer_ids AS bigint[]), CAST(:dimensions AS varchar[]), CAST(:tags AS varchar[]),
                CAST(:kinds AS varchar[]), CAST(:actors AS varchar[]), CAST(:sources AS varchar[]),
                CAST(:ats AS timestamptz[]), CAST(:evidence AS text[]), CAST(:previous AS varchar[]))
         WITH ORDINALITY AS u(customer_id, dimension, tag, kind, actor, source, at, evidence, previous, n)
    ORDER BY u.n
    """
)


class SqlAlertScans:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def expiring(self, after: datetime, until: datetime) -> AsyncIterator[ExpiringTag]:
        a, c = t.tag_assignments.c, t.customers.c
        stmt = (
            select(a.id, a.customer_id, c.name, c.owner, c.region, a.dimension, a.tag, a.assigned_at, a.expires_at)
            .join(t.customers, c.id == a.customer_id)
            .where(a.state == "active", a.expires_at > after, a.expires_at <= until)
            .execution_options(yield_per=STREAM_ROWS)
        )
        result = await self._conn.stream(stmt)
        async for row in result:
            yield ExpiringTag(*row)

    async def customer_facts(
        self, after_id: int, since: datetime, watched_tags: Sequence[str], negative_dimension: str, limit: int
    ) -> list[CustomerFacts]:
        """One keyset page of customers (id > after_id) with their tags, suggestions and activity."""
        c = t.customers.c
        page = (
            await self._conn.execute(
                select(c.id, c.name, c.owner, c.region, c.contract_end, c.created_at)
                .where(c.id > after_id)
                .order_by(c.id)
                .limit(limit)
            )
        ).all()
        return await self._facts(page, since, watched_tags, negative_dimension)

    async def facts_for(
        self, customer_ids: Sequence[int], since: datetime, watched_tags: Sequence[str], negative_dimension: str
    ) -> list[CustomerFacts]:
        """What churn scoring knows about these customers (those that still exist), in id order."""
        c = t.customers.c
        page = (
            await self._conn.execute(
                select(c.id, c.name, c.owner, c.region, c.contract_end, c.created_at)
                .where(_among(self._conn, c.id, customer_ids))
                .order_by(c.id)
            )
        ).all()
        return await self._facts(page, since, watched_tags, negative_dimension)

    async def churn_candidates(self, seeds: ChurnSeeds) -> list[int]:
        """Ids of the customers meeting `seeds` (not used when seeds.everyone), ascending; one UNION, each
        branch served by an index: contract_end, the tag's holders, recent suggestions, agent removals."""
        c, a, s, ca = t.customers.c, t.tag_assignments.c, t.suggestions.c, t.customer_activity.c
        branches: list[Select[Any]] = [
            select(a.customer_id).where(a.tag_key == name_key(seeds.held_tag), a.state == "active")
        ]
        if seeds.contract_until is not None:
            branches.append(select(c.id).where(c.contract_end <= seeds.contract_until))
        for tag in sorted({name_key(tag) for tag in seeds.risk_tags}):
            branches.append(
                select(a.customer_id).where(a.tag_key == tag, a.state == "active", a.assigned_at >= seeds.since)
            )
        if seeds.negative_dimension is not None:
            branches.append(
                select(s.customer_id).where(
                    s.dimension == seeds.negative_dimension, s.created_at >= seeds.since, s.status != "rejected"
                )
            )
        if seeds.agent_removed:
            branches.append(select(ca.customer_id).where(ca.agent_removed_at >= seeds.since))
        rows = await self._conn.execute(union(*branches).order_by(literal_column("1")))
        return [int(r[0]) for r in rows]

    async def _facts(
        self, page: Sequence[Any], since: datetime, watched_tags: Sequence[str], negative_dimension: str
    ) -> list[CustomerFacts]:
        """The page's tags, suggestions and activity in three queries over its ids."""
        if not page:
            return []
        ids = [row[0] for row in page]
        keys = sorted({name_key(tag) for tag in watched_tags})
        tags = await self._watched(ids, keys)
        negative = await self._negative(ids, since, negative_dimension)
        activity = await self._activity(ids)
        out: list[CustomerFacts] = []
        for cid, name, owner, region, contract_end, created_at in page:
            seen, removed = activity.get(cid, (None, None))
            out.append(
                CustomerFacts(
                    customer_id=cid,
                    name=name,
                    owner=owner,
                    region=region,
                    contract_end=contract_end,
                    created_at=created_at,
                    last_contact_at=seen,
                    watched_tags=tuple(tags.get(cid, ())),
                    negative_suggestions=negative.get(cid, 0),
                    agent_removed_at=removed,
                )
            )
        return out

    async def tag_many(self, customer_ids: Sequence[int], tag: BulkTag, hard_cap: int) -> list[int]:
        """Insert the tag as active on each customer below the hard cap that lacks it; returns who got it.

        One INSERT … SELECT: the customer must exist and hold fewer than `hard_cap` active tags, and the
        partial unique index turns a concurrent second insert into a no-op (ON CONFLICT DO NOTHING).
        """
        if not customer_ids:
            return []
        a, c = t.tag_assignments.c, t.customers.c
        held = (
            select(func.count())
            .select_from(t.tag_assignments)
            .where(a.customer_id == c.id, a.state == "active")
            .scalar_subquery()
        )
        rows = select(
            c.id,
            literal(tag.dimension),
            literal(name_key(tag.tag)),
            literal(tag.tag),
            literal("active"),
            literal(tag.source.value),
            literal(tag.actor),
            literal(tag.now, UtcDateTime()),
            literal(tag.expires_at, UtcDateTime()),
        ).where(_among(self._conn, c.id, customer_ids), held < hard_cap)
        columns = ["customer_id", "dimension", "tag_key", "tag", "state", "source", "assigned_by"]
        stmt = (
            _insert(self._conn, t.tag_assignments)
            .from_select([*columns, "assigned_at", "expires_at"], rows)
            .on_conflict_do_nothing(index_elements=[a.customer_id, a.dimension, a.tag_key], index_where=t.ACTIVE)
            .returning(a.customer_id)
        )
        return sorted(r[0] for r in await self._conn.execute(stmt))

    async def untag_many(
        self,
        customer_ids: Sequence[int],
        dimension: str,
        tag: str,
        source: str,
        now: datetime,
        actor: str | None = None,
    ) -> list[int]:
        """End the active tag (only where `source` — and `actor`, when given — put it); returns whose was ended."""
        if not customer_ids:
            return []
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            update(t.tag_assignments)
            .where(
                _among(self._conn, a.customer_id, customer_ids),
                a.dimension == dimension,
                a.tag_key == name_key(tag),
                a.state == "active",
                a.source == source,
                *([a.assigned_by == actor] if actor is not None else []),
            )
            .values(state="removed", ended_at=now)
            .returning(a.customer_id)
        )
        return sorted(r[0] for r in rows)

    async def _watched(self, ids: list[int], keys: list[str]) -> dict[int, list[HeldTag]]:
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            select(a.customer_id, a.tag, a.assigned_at).where(
                _among(self._conn, a.customer_id, ids), a.state == "active", _among(self._conn, a.tag_key, keys)
            )
        )
        out: dict[int, list[HeldTag]] = defaultdict(list)
        for cid, tag, assigned_at in rows:
            out[cid].append(HeldTag(tag, assigned_at))
        return out

    async def _negative(self, ids: list[int], since: datetime, dimension: str) -> dict[int, int]:
        s = t.suggestions.c
        rows = await self._conn.execute(
            select(s.customer_id, func.count())
            .where(
                _among(self._conn, s.customer_id, ids),
                s.dimension == dimension,
                s.status != "rejected",
                s.created_at >= since,
            )
            .group_by(s.customer_id)
        )
        return {cid: int(n) for cid, n in rows}

    async def _activity(self, ids: list[int]) -> dict[int, tuple[datetime | None, datetime | None]]:
        ca = t.customer_activity.c
        rows = await self._conn.execute(
            select(ca.customer_id, ca.last_message_at, ca.agent_removed_at).where(
                _among(self._conn, ca.customer_id, ids)
            )
        )
        return {cid: (seen, removed) for cid, seen, removed in rows}

    async def fold_tag_counts(self) -> int:
        return await fold(self._conn)

    async def lapsed_ids(self, now: datetime, limit: int) -> list[int]:
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            select(a.id)
            .where(a.state == "active", a.expires_at.is_not(None), a.expires_at <= now)
            .order_by(a.expires_at, a.id)
            .limit(limit)
        )
        return [r[0] for r in rows]

    async def expire(self, assignment_ids: Sequence[int], now: datetime) -> list[Assignment]:
        if not assignment_ids:
            return []
        a = t.tag_assignments.c
        # The state guard makes a concurrent replica's second UPDATE change (and report) nothing.
        rows = await self._conn.execute(
            update(t.tag_assignments)
            .where(_among(self._conn, a.id, assignment_ids), a.state == "active")
            .values(state="expired", ended_at=now)
            .returning(t.tag_assignments)
        )
        return sorted((_assignment(r) for r in rows), key=lambda x: x.id)

    async def append_events(self, events: Sequence[NewEvent]) -> None:
        if not events:
            return
        if self._conn.dialect.name == "postgresql":
            await self._append_event_arrays(events)
            return
        # The fields one level deep (dataclasses.asdict deep-copies every evidence, which the INSERT only reads).
        rows: list[dict[str, Any]] = [
            {name: getattr(e, name) for name in _EVENT_FIELDS}
            | {"kind": e.kind.value, "source": e.source.value, "evidence": dict(e.evidence)}
            for e in events
        ]
        await self._conn.execute(t.tag_events.insert(), rows)

    async def _append_event_arrays(self, events: Sequence[NewEvent]) -> None:
        """PostgreSQL: one INSERT … SELECT FROM unnest(one array per column) per chunk, not one per event."""
        serialize = json_text(self._conn)
        for start in range(0, len(events), ARRAY_ROWS):
            part = events[start : start + ARRAY_ROWS]
            await self._conn.execute(
                _APPEND_EVENTS,
                tag_event_arrays(part, serialize),
            )

    async def managers(self) -> list[User]:
        rows = await self._conn.execute(
            select(t.users).where(t.users.c.role == Role.MANAGER.value).order_by(t.users.c.id)
        )
        return [_user(r) for r in rows]

    async def reference_channels(self, user_ids: Sequence[str]) -> dict[str, set[str]]:
        if not user_ids:
            return {}
        r = t.conversation_references.c
        rows = await self._conn.execute(select(r.user_key, r.channel).where(_among(self._conn, r.user_key, user_ids)))
        out: dict[str, set[str]] = defaultdict(set)
        for user, channel in rows:
            out[user].add(channel)
        return dict(out)


class SqlAcknowledgements:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def record(self, alert_key: str, user_id: str, action: str, until: datetime | None, now: datetime) -> None:
        values = {"action": action, "until": until, "at": now}
        stmt = _insert(self._conn, t.alert_acknowledgements).values(alert_key=alert_key, user_id=user_id, **values)
        await self._conn.execute(stmt.on_conflict_do_update(index_elements=["alert_key", "user_id"], set_=values))

    async def suppressed_many(
        self, user_ids: Sequence[str], keys: Sequence[str], now: datetime
    ) -> set[tuple[str, str]]:
        """(user, key) pairs among those users and keys that are acknowledged, or snoozed past `now`."""
        if not user_ids or not keys:
            return set()
        k = t.alert_acknowledgements.c
        rows = await self._conn.execute(
            select(k.user_id, k.alert_key, k.action, k.until).where(
                _among(self._conn, k.user_id, sorted(set(user_ids))),
                _among(self._conn, k.alert_key, sorted(set(keys))),
            )
        )
        return {
            (user, key) for user, key, action, until in rows if action == "ack" or (until is not None and until > now)
        }

    async def suppressed(self, user_id: str, keys: Sequence[str], now: datetime) -> set[str]:
        k = t.alert_acknowledgements.c
        rows = await self._conn.execute(
            select(k.alert_key, k.action, k.until).where(k.user_id == user_id, _among(self._conn, k.alert_key, keys))
        )
        return {key for key, action, until in rows if action == "ack" or (until is not None and until > now)}

    async def get(self, alert_key: str, user_id: str) -> tuple[str, datetime | None, datetime] | None:
        k = t.alert_acknowledgements.c
        row = (
            await self._conn.execute(
                select(k.action, k.until, k.at).where(and_(k.alert_key == alert_key, k.user_id == user_id))
            )
        ).first()
        return (row[0], row[1], row[2]) if row else None


class SqlActivity:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def record_message(self, customer_id: int, channel: str, now: datetime) -> None:
        ca = t.customer_activity.c
        stmt = _insert(self._conn, t.customer_activity).values(
            customer_id=customer_id, last_message_at=now, last_channel=channel
        )
        # Never move the clock backwards when a late retry of an older message arrives.
        newer = or_(ca.last_message_at.is_(None), ca.last_message_at <= now)
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={"last_message_at": now, "last_channel": channel},
                where=newer,
            )
        )

    async def record_messages(self, last_at: Mapping[int, datetime], channel: str) -> None:
        """record_message for many customers in one statement (each with its own last message time)."""
        if not last_at:
            return
        ca = t.customer_activity.c
        rows = [
            {"customer_id": cid, "last_message_at": at, "last_channel": channel} for cid, at in sorted(last_at.items())
        ]
        stmt = _insert(self._conn, t.customer_activity).values(rows)
        newer = or_(ca.last_message_at.is_(None), ca.last_message_at <= stmt.excluded.last_message_at)
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["customer_id"],
                set_={"last_message_at": stmt.excluded.last_message_at, "last_channel": stmt.excluded.last_channel},
                where=newer,
            )
        )

    async def record_agent_removed(self, customer_id: int, agent: str, now: datetime) -> None:
        values = {"agent_removed_at": now, "agent_removed_by": agent}
        stmt = _insert(self._conn, t.customer_activity).values(customer_id=customer_id, **values)
        await self._conn.execute(stmt.on_conflict_do_update(index_elements=["customer_id"], set_=values))

    async def record_agent_readded(self, customer_id: int, now: datetime) -> None:
        """Clear agent_removed_at/by (only a removal older than `now`: a late retry cannot undo a newer one)."""
        ca = t.customer_activity.c
        await self._conn.execute(
            update(t.customer_activity)
            .where(ca.customer_id == customer_id, ca.agent_removed_at.is_not(None), ca.agent_removed_at <= now)
            .values(agent_removed_at=None, agent_removed_by=None)
        )
