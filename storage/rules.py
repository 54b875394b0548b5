"""SQL for rules: the customer-event stream, set-based fact scans, contacts, bulk removal and the tag cursor."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, any_, case, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.alerts.ports import OutboxMessage
from core.rules.engine import Facts, HeldFact, Prefilter
from core.rules.ports import Candidates, NewCustomerEvent, StoredMessage
from core.types import TagEvent
from storage import tables as t
from storage.bulk import json_text, utc_bound
from storage.field_tests import field_ids
from storage.outbox import SqlAlertUnitOfWork, _message
from storage.repositories import _driver_executemany, _event, _insert, prebuilt
from tagging.normaliser import name_key
from tagging.rules import Events

CHUNK = 500  # ids per IN list (SQLite binds one parameter per id)
ARRAY_CHUNK = 10_000  # ids per array parameter (PostgreSQL binds the whole list as one parameter)
_OPS: dict[str, Callable[[Any, float], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


# PostgreSQL: a batch of events as one row of arrays (one bind per column, however many events).
_UNNEST_EVENTS = text(
    """
    INSERT INTO customer_events (event_id, customer_id, kind, at, amount, properties, source, digest, recorded_at)
    SELECT u.event_id, u.customer_id, u.kind, u.at, u.amount, CAST(u.properties AS json), u.source, u.digest,
           CAST(:now AS timestamptz)
    FROM unnest(CAST(:event_ids AS varchar[]), CAST(:customer_ids AS bigint[]), CAST(:kinds AS varchar[]),
                CAST(:ats AS timestamptz[]), CAST(:amounts AS double precision[]), CAST(:properties AS text[]),
                CAST(:sources AS varchar[]), CAST(:digests AS varchar[]))
         AS u(event_id, customer_id, kind, at, amount, properties, source, digest)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
    """
)


def event_arrays(events: Sequence[NewCustomerEvent], serialize: Callable[[Any], str]) -> dict[str, list[Any]]:
    """Customer events as one array per column, the parameters of an INSERT … SELECT FROM unnest (PostgreSQL):
    event_ids, customer_ids, kinds, ats, amounts, properties (JSON text), sources, digests."""
    return {
        "event_ids": [ev.event_id for ev in events],
        "customer_ids": [ev.customer_id for ev in events],
        "kinds": [ev.kind for ev in events],
        "ats": [utc_bound(ev.at) for ev in events],
        "amounts": [ev.amount for ev in events],
        "properties": [serialize(dict(ev.properties)) if ev.properties else "{}" for ev in events],
        "sources": [ev.source for ev in events],
        "digests": [ev.digest for ev in events],
    }


def _chunks(items: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _chunk_size(conn: AsyncConnection) -> int:
    """Values per lookup statement: one array parameter on PostgreSQL carries many more than an IN list."""
    return ARRAY_CHUNK if conn.dialect.name == "postgresql" else CHUNK


def _in(conn: AsyncConnection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`: `= ANY(one array parameter)` on PostgreSQL (one bind, no per-value rendering)."""
    if conn.dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(column.type)))
    return column.in_(list(values))


def _groups(customer_ids: Sequence[int], size: int = CHUNK) -> list[list[int]]:
    """Sorted id groups to query: a dense keyset page whole (queried as one id range), sparse ids in chunks."""
    ids = sorted(set(customer_ids))
    if ids and 2 * len(ids) >= ids[-1] - ids[0] + 1:
        return [ids]
    return [list(part) for part in _chunks(ids, size)]


def _among(conn: AsyncConnection, column: Any, ids: list[int]) -> Any:
    """`column` within the group: a range for a dense group (callers drop ids outside it), else IN."""
    if 2 * len(ids) >= ids[-1] - ids[0] + 1:
        return column.between(ids[0], ids[-1])
    return _in(conn, column, ids)


class SqlCustomerEvents:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def resolve(self, identifiers: Sequence[str]) -> dict[str, list[int]]:
        c = t.customers.c
        wanted = sorted(set(identifiers))
        out: dict[str, list[int]] = {}
        for column in (c.crm_id, c.wecom_external_userid, c.name):
            left = [i for i in wanted if i not in out]
            for part in _chunks(left, _chunk_size(self._conn)):
                found: dict[str, list[int]] = defaultdict(list)
                for value, cid in await self._conn.execute(select(column, c.id).where(_in(self._conn, column, part))):
                    found[value].append(cid)
                out.update(found)
        return out

    async def digests(self, event_ids: Sequence[str]) -> dict[str, str]:
        e = t.customer_events.c
        out: dict[str, str] = {}
        for part in _chunks(sorted(set(event_ids)), _chunk_size(self._conn)):
            rows = await self._conn.execute(select(e.event_id, e.digest).where(_in(self._conn, e.event_id, part)))
            out.update({event_id: digest for event_id, digest in rows})
        return out

    async def insert_many(self, events: Sequence[NewCustomerEvent], now: datetime) -> list[str]:
        if not events:
            return []
        if self._conn.dialect.name == "postgresql":
            return await self._insert_arrays(events, now)
        rows = [
            {
                "event_id": ev.event_id,
                "customer_id": ev.customer_id,
                "kind": ev.kind,
                "at": ev.at,
                "amount": ev.amount,
                "properties": dict(ev.properties),
                "source": ev.source,
                "digest": ev.digest,
                "recorded_at": now,
            }
            for ev in events
        ]
        # SQLite: this unit of work holds the write lock, so ids absent when it read them are still absent and
        # every row is inserted; one driver-level executemany (OR IGNORE guards a caller that did not check).
        before = await self._last_id()  # the largest id so far
        await _driver_executemany(self._conn, t.customer_events, rows, verb="INSERT OR IGNORE")
        if await self._last_id() - before == len(rows):
            return [ev.event_id for ev in events]
        e = t.customer_events.c
        new = select(e.event_id).where(e.id > before).order_by(e.id)  # some existed: the new ones
        return list((await self._conn.execute(new)).scalars())

    async def insert_one(self, event: NewCustomerEvent, now: datetime) -> bool:
        """One event in one statement (INSERT … ON CONFLICT DO NOTHING RETURNING); True when it was new."""
        row = event_row(event, now)
        return (await self._conn.execute(prebuilt(self._conn, _event_if_absent), row)).first() is not None

    async def _last_id(self) -> int:
        return int((await self._conn.execute(select(func.max(t.customer_events.c.id)))).scalar_one() or 0)

    async def _insert_arrays(self, events: Sequence[NewCustomerEvent], now: datetime) -> list[str]:
        """One INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO NOTHING per chunk (PostgreSQL)."""
        inserted: list[str] = []
        serialize = json_text(self._conn)  # the text the column itself would store
        for part in _chunks(events, ARRAY_CHUNK):
            params = {"now": utc_bound(now), **event_arrays(part, serialize)}
            inserted.extend(r[0] for r in await self._conn.execute(_UNNEST_EVENTS, params))
        return inserted

    async def count(self) -> int:
        return int((await self._conn.execute(select(func.count()).select_from(t.customer_events))).scalar_one())


class SqlRuleFacts:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def page(self, after_id: int, limit: int) -> list[int]:
        c = t.customers.c
        rows = await self._conn.execute(select(c.id).where(c.id > after_id).order_by(c.id).limit(limit))
        return [r[0] for r in rows]

    async def facts(
        self, customer_ids: Sequence[int], windows: Sequence[tuple[str, int]], now: datetime
    ) -> list[Facts]:
        """Four set-based queries per chunk: customers, active tags, activity, and one GROUP BY for every window."""
        out: list[Facts] = []
        for ids in _groups(customer_ids, _chunk_size(self._conn)):
            wanted = set(ids)
            tags = await self._tags(ids)
            activity = await self._activity(ids)
            events = await self._events(ids, windows, now)
            c = t.customers.c
            rows = await self._conn.execute(
                select(c.id, c.name, c.owner, c.region, c.company, c.crm_id, c.contract_end, c.created_at, c.attributes)
                .where(_among(self._conn, c.id, ids))
                .order_by(c.id)
            )
            for cid, name, owner, region, company, crm_id, contract_end, created_at, attributes in rows:
                if cid not in wanted:
                    continue
                out.append(
                    Facts(
                        customer_id=cid,
                        name=name,
                        owner=owner,
                        region=region,
                        company=company,
                        crm_id=crm_id or "",
                        contract_end=contract_end,
                        created_at=created_at,
                        attributes=MappingProxyType(dict(attributes or {})),
                        tags=MappingProxyType(tags.get(cid, {})),
                        events=MappingProxyType(events.get(cid, {})),
                        last_message_at=activity.get(cid),
                    )
                )
        return out

    async def event_counts(
        self, customer_ids: Sequence[int], windows: Sequence[tuple[str, int]], now: datetime
    ) -> dict[int, dict[tuple[str, int], tuple[int, float]]]:
        out: dict[int, dict[tuple[str, int], tuple[int, float]]] = {}
        for ids in _groups(customer_ids, _chunk_size(self._conn)):
            wanted = set(ids)
            out.update(
                (cid, counts) for cid, counts in (await self._events(ids, windows, now)).items() if cid in wanted
            )
        return out

    async def _tags(self, ids: list[int]) -> dict[int, dict[str, HeldFact]]:
        a = t.tag_assignments.c
        out: dict[int, dict[str, HeldFact]] = defaultdict(dict)
        rows = await self._conn.execute(
            select(a.customer_id, a.dimension, a.tag, a.assigned_at).where(
                _among(self._conn, a.customer_id, ids), a.state == "active"
            )
        )
        keys: dict[str, str] = {}  # a few dozen tag names over thousands of rows: normalise each once
        for cid, dimension, tag, assigned_at in rows:
            key = keys.get(tag)
            if key is None:
                key = keys[tag] = name_key(tag)
            out[cid][key] = HeldFact(dimension, tag, assigned_at)
        return out

    async def _activity(self, ids: list[int]) -> dict[int, datetime | None]:
        a = t.customer_activity.c
        rows = await self._conn.execute(
            select(a.customer_id, a.last_message_at).where(_among(self._conn, a.customer_id, ids))
        )
        return {cid: at for cid, at in rows}

    async def _events(
        self, ids: list[int], windows: Sequence[tuple[str, int]], now: datetime
    ) -> dict[int, dict[tuple[str, int], tuple[int, float]]]:
        if not windows:
            return {}
        e = t.customer_events.c
        columns: list[Any] = []
        for kind, days in windows:
            hit = and_(e.kind == kind, e.at > now - timedelta(days=days))
            columns.append(func.sum(case((hit, 1), else_=0)))
            columns.append(func.sum(case((hit, func.coalesce(e.amount, 0.0)), else_=0.0)))
        oldest = now - timedelta(days=max(days for _, days in windows))
        stmt = (
            select(e.customer_id, *columns)
            # The range beside the IN list lets the planner walk (customer_id, kind, at) for this page's customers
            # instead of every event of the kind in a long window.
            .where(
                e.customer_id.between(ids[0], ids[-1]),
                _among(self._conn, e.customer_id, ids),
                e.kind.in_(sorted({k for k, _ in windows})),
                e.at > oldest,
                e.at <= now,
            )
            .group_by(e.customer_id)
        )
        out: dict[int, dict[tuple[str, int], tuple[int, float]]] = {}
        for row in await self._conn.execute(stmt):
            values = list(row)[1:]
            out[row[0]] = {
                window: (int(values[2 * i] or 0), float(values[2 * i + 1] or 0.0)) for i, window in enumerate(windows)
            }
        return out

    async def candidates(
        self, rule_filter: Prefilter, now: datetime, today: date, among: Sequence[int] | None = None
    ) -> Candidates:
        """Customers that pass the prefilter: one GROUP BY … HAVING for an event threshold, returning each one's
        count and sum in the window as `_events` computes them; a contract window is one range scan; a field test
        is one scan of the customers (`field_ids`)."""
        if rule_filter.events is not None:
            return await self._event_candidates(rule_filter.events, now, among)
        c = t.customers.c
        if rule_filter.field is not None:
            base = field_ids(self._conn.dialect.name, rule_filter.field, today)
        else:
            assert rule_filter.contract_days is not None
            until = today + timedelta(days=rule_filter.contract_days)
            base = select(c.id).where(c.contract_end >= today, c.contract_end <= until)
        ids: list[int] = []
        for part in _groups(among, _chunk_size(self._conn)) if among is not None else [None]:
            stmt = base
            if part is not None:
                stmt = stmt.where(_among(self._conn, c.id, part))
            wanted = set(part) if part is not None else None
            ids.extend(r[0] for r in await self._conn.execute(stmt) if wanted is None or r[0] in wanted)
        return Candidates(sorted(set(ids)))  # SQLite: a JSON object with a key twice joins twice

    async def _event_candidates(self, ev: Events, now: datetime, among: Sequence[int] | None) -> Candidates:
        e = t.customer_events.c
        count = func.count()
        total = func.coalesce(func.sum(func.coalesce(e.amount, 0.0)), 0.0)
        havings = []
        if ev.count is not None and not ev.count.test(0):
            havings.append(_OPS[ev.count.op](count, ev.count.value))
        if ev.sum is not None and not ev.sum.test(0):
            havings.append(_OPS[ev.sum.op](total, ev.sum.value))
        found: list[tuple[int, int, float]] = []
        for part in _groups(among, _chunk_size(self._conn)) if among is not None else [None]:
            stmt = select(e.customer_id, count, total).where(
                e.kind == ev.kind, e.at > now - timedelta(days=ev.days), e.at <= now
            )
            if part is not None:
                stmt = stmt.where(e.customer_id.between(part[0], part[-1]), _among(self._conn, e.customer_id, part))
            wanted = set(part) if part is not None else None
            rows = await self._conn.execute(stmt.group_by(e.customer_id).having(and_(*havings)))
            found.extend((cid, int(n), float(s or 0.0)) for cid, n, s in rows if wanted is None or cid in wanted)
        found.sort()
        return Candidates([r[0] for r in found], (ev.kind, ev.days), [(n, s) for _, n, s in found])

    async def contacts(self, customer_ids: Sequence[int]) -> dict[int, list[int]]:
        c = t.customers.c
        if not customer_ids:
            return {}
        companies = (await self._conn.execute(select(c.id, c.name, c.crm_id).where(c.id.in_(list(customer_ids))))).all()
        by_ref: dict[str, int] = {}
        for cid, name, crm_id in companies:
            by_ref[name] = cid
            if crm_id:
                by_ref[crm_id] = cid
        parent = c.attributes["parent"].as_string()
        out: dict[int, list[int]] = defaultdict(list)
        for part in _chunks(sorted(by_ref)):
            rows = await self._conn.execute(select(c.id, parent).where(parent.in_(list(part))))
            for cid, ref in rows:
                if by_ref.get(ref) is not None and by_ref[ref] != cid:
                    out[by_ref[ref]].append(cid)
        return dict(out)

    async def remove_many(self, customer_ids: Sequence[int], tag: str, now: datetime) -> list[tuple[int, str, str]]:
        if not customer_ids:
            return []
        a = t.tag_assignments.c
        out: list[tuple[int, str, str]] = []
        for part in _chunks(sorted(set(customer_ids))):
            rows = await self._conn.execute(
                update(t.tag_assignments)
                .where(a.customer_id.in_(list(part)), a.tag_key == name_key(tag), a.state == "active")
                .values(state="removed", ended_at=now)
                .returning(a.customer_id, a.dimension, a.tag)
            )
            out.extend((cid, dim, name) for cid, dim, name in rows)
        return sorted(out)

    async def tag_events_after(self, last_id: int, limit: int) -> list[TagEvent]:
        e = t.tag_events.c
        rows = await self._conn.execute(select(t.tag_events).where(e.id > last_id).order_by(e.id).limit(limit))
        return [_event(r) for r in rows]

    async def last_tag_event_id(self) -> int:
        value = (await self._conn.execute(select(func.max(t.tag_events.c.id)))).scalar_one_or_none()
        return int(value or 0)

    async def cursor(self, name: str) -> int | None:
        s = t.sync_cursors.c
        return (await self._conn.execute(select(s.last_event_id).where(s.name == name))).scalar_one_or_none()

    async def move_cursor(self, name: str, old: int | None, new: int, now: datetime) -> bool:
        s = t.sync_cursors.c
        if old is None:
            stmt = (
                _insert(self._conn, t.sync_cursors)
                .values(name=name, last_event_id=new, updated_at=now)
                .on_conflict_do_nothing(index_elements=[s.name])
            )
            return bool((await self._conn.execute(stmt)).rowcount)  # type: ignore[attr-defined]
        result = await self._conn.execute(
            update(t.sync_cursors)
            .where(s.name == name, s.last_event_id == old)
            .values(last_event_id=new, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def messages(self, since: datetime, limit: int) -> list[StoredMessage]:
        s = t.suggestions.c
        rows = await self._conn.execute(
            select(s.customer_id, s.message_key, s.created_at, s.tag_key)
            .where(s.created_at >= since, or_(s.message_key.not_like("rule:%"), s.message_key.is_(None)))
            .order_by(s.created_at.desc(), s.id.desc())
            .limit(limit)
        )
        grouped: dict[str, tuple[int, datetime, set[str]]] = {}
        for cid, key, at, tag_key in rows:
            entry = grouped.setdefault(key, (cid, at, set()))
            entry[2].add(tag_key)
        return [StoredMessage(cid, key, at, frozenset(tags)) for key, (cid, at, tags) in grouped.items()]

    async def event_customers(self, kinds: Sequence[str], since: datetime) -> dict[int, set[str]]:
        e = t.customer_events.c
        stmt = select(e.customer_id, e.kind).where(e.at >= since).distinct()
        if kinds:
            stmt = stmt.where(e.kind.in_(list(kinds)))
        out: dict[int, set[str]] = defaultdict(set)
        for cid, kind in await self._conn.execute(stmt):
            out[cid].add(kind)
        return dict(out)

    async def tag_changes(self, tag_keys: Sequence[str], since: datetime) -> dict[int, str]:
        e = t.tag_events.c
        out: dict[int, str] = {}
        rows = await self._conn.execute(select(e.customer_id, e.tag).where(e.at >= since).order_by(e.id))
        keys = set(tag_keys)
        for cid, tag in rows:
            if name_key(tag) in keys:
                out[cid] = tag
        return out


class SqlWebhookCalls:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def failed(self, limit: int) -> list[OutboxMessage]:
        o = t.outbox.c
        rows = await self._conn.execute(
            select(t.outbox).where(o.channel == "webhook", o.state == "failed").order_by(o.id).limit(limit)
        )
        return [_message(r) for r in rows]

    async def requeue(self, message_id: int, now: datetime, note: str) -> bool:
        o = t.outbox.c
        result = await self._conn.execute(
            update(t.outbox)
            .where(o.id == message_id, o.state == "failed")
            .values(state="pending", attempts=0, next_attempt_at=now, last_error=note, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class SqlRulesUnitOfWork(SqlAlertUnitOfWork):
    """The alert unit of work plus customer events and rule fact scans, in one transaction."""

    customer_events: SqlCustomerEvents
    rule_facts: SqlRuleFacts
    webhooks: SqlWebhookCalls

    async def __aenter__(self) -> SqlRulesUnitOfWork:
        await super().__aenter__()
        conn = self._conn
        assert conn is not None
        self.customer_events = SqlCustomerEvents(conn)
        self.rule_facts = SqlRuleFacts(conn)
        self.webhooks = SqlWebhookCalls(conn)
        return self


class SqlRulesStore:
    """Rules units of work on the same engine as `storage.database.Database` (pass `database.engine`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def unit_of_work(self, read_only: bool = False) -> SqlRulesUnitOfWork:
        return SqlRulesUnitOfWork(self._engine, read_only=read_only)


def event_row(event: NewCustomerEvent, now: datetime) -> dict[str, Any]:
    """The `customer_events` row storing `event`, recorded `now`."""
    return {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "kind": event.kind,
        "at": event.at,
        "amount": event.amount,
        "properties": dict(event.properties),
        "source": event.source,
        "digest": event.digest,
        "recorded_at": now,
    }


def _event_if_absent(insert: Any) -> Any:
    return (
        insert(t.customer_events)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(t.customer_events.c.event_id)
    )
