"""SQL implementations of the core ports, all on one AsyncConnection per unit of work."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    CompoundSelect,
    DateTime,
    Float,
    Insert,
    Text,
    and_,
    bindparam,
    case,
    delete,
    except_,
    false,
    func,
    intersect,
    literal,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select, Subquery

from core.ports import AllOf, AnyOf, HasTag, NewAssignment, NoneOf, TagQuery
from core.records import CustomerDraft, NewEvent, NewSuggestion, SuggestionRecord, TaxonomyVersion
from core.types import (
    Assignment,
    AssignmentState,
    Customer,
    EventKind,
    Role,
    Source,
    SuggestionStatus,
    TagEvent,
    User,
)
from storage import tables as t
from storage.bulk import copy_rows, duplicate_key
from storage.taxonomy_document import from_document, to_document
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy


def _insert(conn: AsyncConnection, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL do)."""
    return postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table)


_BULK_ROWS = 1000
_NEXT_CUSTOMER_IDS = text("SELECT nextval(pg_get_serial_sequence('customers', 'id')) FROM generate_series(1, :n)")
# Execution option for connections that only read (`conn.execution_options(**{READ_ONLY: True})`): the
# SQLite begin hook in storage.database then takes a plain deferred BEGIN instead of BEGIN IMMEDIATE.
READ_ONLY = "kebiao_read_only"


async def _driver_executemany(
    conn: AsyncConnection, table: Any, rows: Sequence[Mapping[str, Any]], where_id: bool = False, verb: str = "INSERT"
) -> None:
    """INSERT (or UPDATE … WHERE id, when `where_id`) many rows with one driver-level executemany on SQLite.

    SQLAlchemy compiles and processes parameters per row in Python (seconds for 50,000 rows, all of them
    inside SQLite's write lock); here the column types' bind processors run once per value and the driver
    does the rest. Only for SQLite, whose single writer is what a long transaction blocks.
    """
    if not rows:
        return
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    columns = [name for name in rows[0] if not (where_id and name == "id")]
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    if where_id:
        assignments = ", ".join(f"{quote(name)} = ?" for name in columns)
        sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE id = ?"
    else:
        names = ", ".join(map(quote, columns))
        sql = f"{verb} INTO {quote(table.name)} ({names}) VALUES ({', '.join('?' * len(columns))})"
    # One batch repeats the same few datetimes (the import's `now`) and None: process each distinct one once.
    caches: list[dict[Any, Any]] = [{} for _ in columns]

    def bound(value: Any, proc: Any, cache: dict[Any, Any]) -> Any:
        if proc is None:
            return value
        if isinstance(value, dict | list):
            return proc(value)
        if value not in cache:
            cache[value] = proc(value)
        return cache[value]

    params = [
        (
            *(bound(row[name], proc, cache) for name, proc, cache in zip(columns, processors, caches, strict=True)),
            *((row["id"],) if where_id else ()),
        )
        for row in rows
    ]
    await conn.exec_driver_sql(sql, params)


def _or_none(value: str) -> str | None:
    value = value.strip()
    return value or None


# ---------------------------------------------------------------- customers


def _customer(row: Row[Any]) -> Customer:
    m = row._mapping
    return Customer(
        id=m["id"],
        name=m["name"],
        company=m["company"],
        owner=m["owner"],
        region=m["region"],
        crm_id=m["crm_id"] or "",
        wecom_external_userid=m["wecom_external_userid"] or "",
        contract_end=m["contract_end"],
        attributes=MappingProxyType(dict(m["attributes"] or {})),
    )


def _customer_values(draft: CustomerDraft, now: datetime) -> dict[str, Any]:
    return {
        "name": draft.name.strip(),
        "name_key": name_key(draft.name),
        "company": draft.company.strip(),
        "owner": draft.owner.strip(),
        "region": draft.region.strip(),
        "crm_id": _or_none(draft.crm_id),
        "wecom_external_userid": _or_none(draft.wecom_external_userid),
        "contract_end": draft.contract_end,
        "attributes": dict(draft.attributes),
        "updated_at": now,
    }


# Keys up to this many characters are searched in kebiao_grams (migration 0015), longer ones by LIKE (trigrams).
GRAMS_UP_TO = 2
# Name searches rank at most this many candidates of each kind (equal, prefix, contains, company contains).
NAME_CANDIDATES = 1000


def _narrow(same_name: list[Customer], company: str, limit: int) -> list[Customer]:
    """Customers of one name narrowed to `company` (or to those without one) when the row gives one."""
    wanted = name_key(company)
    if not wanted:
        return same_name[:limit]
    same_company = [x for x in same_name if name_key(x.company) == wanted]
    if same_company:
        return same_company[:limit]
    return [x for x in same_name if not name_key(x.company)][:limit]


class SqlCustomers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, customer_id: int) -> Customer | None:
        row = (await self._conn.execute(select(t.customers).where(t.customers.c.id == customer_id))).first()
        return _customer(row) if row else None

    async def get_many(self, customer_ids: Sequence[int]) -> list[Customer]:
        if not customer_ids:
            return []
        rows = await self._conn.execute(select(t.customers).where(t.customers.c.id.in_(list(customer_ids))))
        by_id = {c.id: c for c in map(_customer, rows)}
        return [by_id[i] for i in customer_ids if i in by_id]

    async def find_exact(self, text: str) -> list[Customer]:
        c = t.customers.c
        value = text.strip()
        rows = await self._conn.execute(
            select(t.customers)
            .where(or_(c.name == value, c.crm_id == value, c.wecom_external_userid == value))
            .order_by(c.id)
        )
        return [_customer(r) for r in rows]

    async def find_by_name_key(self, key: str, limit: int) -> list[Customer]:
        c = t.customers.c
        # Name matches first (equal, prefix, contains), then company matches in the same order; the
        # company column is stored as typed, so it is compared lower-cased (the key is already normalised).
        company = func.lower(c.company)
        rank = case(
            (c.name_key == key, 0),
            (c.name_key.startswith(key, autoescape=True), 1),
            (c.name_key.contains(key, autoescape=True), 2),
            (company == key, 3),
            (company.startswith(key, autoescape=True), 4),
            else_=5,
        )
        if not key:  # everyone matches: the oldest customers first, straight from the primary key
            rows = await self._conn.execute(select(t.customers).order_by(c.id).limit(limit))
            return [_customer(r) for r in rows]
        # Each kind of match is drawn from its own index, at most `cap` of each, before the ranking: a common
        # word ("科技", "有限公司") then costs a bounded read however many of a million names hold it, and a name
        # that equals or starts with the key is never crowded out by names that merely contain it.
        cap = limit + NAME_CANDIDATES
        kinds = [
            c.name_key == key,
            c.name_key.startswith(key, autoescape=True),
            self._contains(c.name_key, key),
            self._contains(company, key),
        ]
        # Each capped SELECT is a derived table: SQLite refuses LIMIT on a member of a compound select.
        capped = [select(c.id).where(kind).limit(cap).subquery() for kind in kinds]
        candidates = union(*(select(sub.c.id) for sub in capped)).subquery()
        rows = await self._conn.execute(
            select(t.customers)
            .where(c.id.in_(select(candidates.c.id)))
            .order_by(rank, func.length(c.name_key), c.id)
            .limit(limit)
        )
        return [_customer(r) for r in rows]

    def _contains(self, column: ColumnElement[str], key: str) -> ColumnElement[bool]:
        """`column` contains `key`; on PostgreSQL a key too short for trigrams is looked up in the grams index."""
        if self._conn.dialect.name == "postgresql" and len(key) <= GRAMS_UP_TO:
            grams = func.kebiao_grams(column, type_=postgresql.ARRAY(Text))
            return grams.contains(literal([key], postgresql.ARRAY(Text)))
        return column.contains(key, autoescape=True)

    async def find_for_import(self, draft: CustomerDraft, limit: int = 5) -> list[Customer]:
        c = t.customers.c
        if _or_none(draft.crm_id):
            where: ColumnElement[bool] = c.crm_id == draft.crm_id.strip()
        elif _or_none(draft.wecom_external_userid):
            where = c.wecom_external_userid == draft.wecom_external_userid.strip()
        else:
            return await self._import_candidates_by_name(draft, limit)
        row = (await self._conn.execute(select(t.customers).where(where).order_by(c.id).limit(1))).first()
        return [_customer(row)] if row else []

    async def _import_candidates_by_name(self, draft: CustomerDraft, limit: int) -> list[Customer]:
        """Same normalised name; a row's company narrows to that company (or to customers without one)."""
        c = t.customers.c
        rows = await self._conn.execute(select(t.customers).where(c.name_key == name_key(draft.name)).order_by(c.id))
        return _narrow([_customer(r) for r in rows], draft.company, limit)

    async def add(self, draft: CustomerDraft, now: datetime) -> Customer:
        values = _customer_values(draft, now) | {"created_at": now}
        row = (await self._conn.execute(t.customers.insert().values(**values).returning(t.customers))).one()
        return _customer(row)

    async def find_by_external_ids(self, external_user_ids: Sequence[str]) -> dict[str, Customer]:
        wanted = sorted(set(external_user_ids))
        out: dict[str, Customer] = {}
        for start in range(0, len(wanted), _BULK_ROWS):
            rows = await self._conn.execute(
                select(t.customers).where(t.customers.c.wecom_external_userid.in_(wanted[start : start + _BULK_ROWS]))
            )
            out.update((c.wecom_external_userid, c) for c in map(_customer, rows))
        return out

    async def update(self, customer_id: int, draft: CustomerDraft, now: datetime) -> Customer:
        stmt = (
            t.customers.update()
            .where(t.customers.c.id == customer_id)
            .values(**_customer_values(draft, now))
            .returning(t.customers)
        )
        return _customer((await self._conn.execute(stmt)).one())

    async def add_many(self, drafts: Sequence[CustomerDraft], now: datetime) -> list[int]:
        """Insert new customers, returning their ids in order; DuplicateKeyError when a crm_id or WeCom id
        was stored meanwhile by another writer."""
        if not drafts:
            return []
        values = [_customer_values(d, now) | {"created_at": now} for d in drafts]
        if self._conn.dialect.name == "postgresql":
            return await self._add_many_postgres(values)
        out: list[int] = []
        for start in range(0, len(values), _BULK_ROWS):
            try:
                out.extend(await self._add_many_sqlite(values[start : start + _BULK_ROWS]))
            except IntegrityError as exc:
                raise duplicate_key(exc) or exc from exc
        return out

    async def _add_many_postgres(self, values: list[dict[str, Any]]) -> list[int]:
        """Take the ids from the sequence, then COPY the rows with them (no per-row statement at all)."""
        ids = list((await self._conn.execute(_NEXT_CUSTOMER_IDS, {"n": len(values)})).scalars())
        await copy_rows(self._conn, t.customers, [{"id": i, **v} for i, v in zip(ids, values, strict=True)])
        return ids

    async def _add_many_sqlite(self, values: list[dict[str, Any]]) -> list[int]:
        """Insert through the driver, then read the new ids back: this unit of work holds SQLite's write
        lock, so the rows past the previous largest id are exactly these, numbered in insertion order."""
        c = t.customers.c
        before = (await self._conn.execute(select(func.coalesce(func.max(c.id), 0)))).scalar_one()
        await _driver_executemany(self._conn, t.customers, values)
        ids = list((await self._conn.execute(select(c.id).where(c.id > before).order_by(c.id))).scalars())
        if len(ids) != len(values):
            raise RuntimeError(f"expected {len(values)} new customers, found {len(ids)}")
        return ids

    async def update_many(self, updates: Sequence[tuple[int, CustomerDraft]], now: datetime) -> None:
        """Update stored customers; DuplicateKeyError when a new crm_id or WeCom id was taken meanwhile."""
        try:
            await self._update_many(updates, now)
        except IntegrityError as exc:
            raise duplicate_key(exc) or exc from exc

    async def _update_many(self, updates: Sequence[tuple[int, CustomerDraft]], now: datetime) -> None:
        if not updates:
            return
        c = t.customers.c
        columns = [k for k in _customer_values(updates[0][1], now) if k != "updated_at"]
        stmt = (
            t.customers.update()
            .where(c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in [*columns, "updated_at"]})
        )
        if self._conn.dialect.name == "sqlite":
            rows = [{**_customer_values(d, now), "id": cid} for cid, d in updates]
            await _driver_executemany(self._conn, t.customers, rows, where_id=True)
            return
        for start in range(0, len(updates), _BULK_ROWS):
            params = [
                {"b_id": cid, **{f"b_{k}": v for k, v in _customer_values(d, now).items()}}
                for cid, d in updates[start : start + _BULK_ROWS]
            ]
            await self._conn.execute(stmt, params)

    async def find_for_import_many(self, drafts: Sequence[CustomerDraft], limit: int = 5) -> list[list[Customer]]:
        """`find_for_import` for many drafts in a few statements, one answer per draft, in order."""
        c = t.customers.c
        crm = sorted({d.crm_id.strip() for d in drafts if _or_none(d.crm_id)})
        unkeyed = [d for d in drafts if not _or_none(d.crm_id)]
        wecom = sorted({d.wecom_external_userid.strip() for d in unkeyed if _or_none(d.wecom_external_userid)})
        keys = sorted({name_key(d.name) for d in unkeyed if not _or_none(d.wecom_external_userid)})
        by_crm: dict[str, Customer] = {}
        by_wecom: dict[str, Customer] = {}
        by_key: dict[str, list[Customer]] = {}
        for column, wanted in ((c.crm_id, crm), (c.wecom_external_userid, wecom), (c.name_key, keys)):
            for start in range(0, len(wanted), _BULK_ROWS):
                rows = await self._conn.execute(
                    select(t.customers).where(column.in_(wanted[start : start + _BULK_ROWS])).order_by(c.id)
                )
                for customer in map(_customer, rows):
                    if column is c.crm_id:
                        by_crm.setdefault(customer.crm_id, customer)
                    elif column is c.wecom_external_userid:
                        by_wecom.setdefault(customer.wecom_external_userid, customer)
                    else:
                        by_key.setdefault(name_key(customer.name), []).append(customer)
        out: list[list[Customer]] = []
        for d in drafts:
            if _or_none(d.crm_id):
                found = by_crm.get(d.crm_id.strip())
                out.append([found] if found else [])
            elif _or_none(d.wecom_external_userid):
                found = by_wecom.get(d.wecom_external_userid.strip())
                out.append([found] if found else [])
            else:
                out.append(_narrow(by_key.get(name_key(d.name), []), d.company, limit))
        return out


# ---------------------------------------------------------------- assignments


def _assignment(row: Row[Any]) -> Assignment:
    m = row._mapping
    return Assignment(
        id=m["id"],
        customer_id=m["customer_id"],
        dimension=m["dimension"],
        tag=m["tag"],
        state=AssignmentState(m["state"]),
        source=Source(m["source"]),
        assigned_by=m["assigned_by"],
        assigned_at=m["assigned_at"],
        expires_at=m["expires_at"],
    )


class SqlAssignments:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def active_for(self, customer_id: int) -> list[Assignment]:
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            select(t.tag_assignments).where(a.customer_id == customer_id, a.state == "active").order_by(a.id)
        )
        return [_assignment(r) for r in rows]

    async def insert_active(
        self,
        customer_id: int,
        dimension: str,
        tag: str,
        source: Source,
        assigned_by: str,
        now: datetime,
        expires_at: datetime | None,
    ) -> Assignment | None:
        a = t.tag_assignments.c
        stmt: Insert = (
            _insert(self._conn, t.tag_assignments)
            .values(
                customer_id=customer_id,
                dimension=dimension,
                tag_key=name_key(tag),
                tag=tag,
                state="active",
                source=source.value,
                assigned_by=assigned_by,
                assigned_at=now,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing(
                index_elements=[a.customer_id, a.dimension, a.tag_key], index_where=t.ACTIVE
            )
            .returning(t.tag_assignments)
        )
        row = (await self._conn.execute(stmt)).first()
        return _assignment(row) if row else None

    async def end(self, assignment_id: int, state: AssignmentState, now: datetime) -> bool:
        a = t.tag_assignments.c
        result = await self._conn.execute(
            update(t.tag_assignments)
            .where(a.id == assignment_id, a.state == "active")
            .values(state=state.value, ended_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_expiry(self, assignment_id: int, expires_at: datetime | None) -> None:
        await self._conn.execute(
            update(t.tag_assignments)
            .where(t.tag_assignments.c.id == assignment_id)
            .values(expires_at=expires_at)
        )

    async def active_for_many(self, customer_ids: Sequence[int]) -> dict[int, list[Assignment]]:
        wanted = sorted(set(customer_ids))
        out: dict[int, list[Assignment]] = {}
        c, a = t.customers.c, t.tag_assignments.c
        for start in range(0, len(wanted), _BULK_ROWS):
            # One LEFT JOIN answers both "does the customer exist" and "what does it hold".
            rows = await self._conn.execute(
                select(c.id.label("owner_id"), t.tag_assignments)
                .select_from(
                    t.customers.outerjoin(t.tag_assignments, and_(a.customer_id == c.id, a.state == "active"))
                )
                .where(c.id.in_(wanted[start : start + _BULK_ROWS]))
                .order_by(c.id, a.id)
            )
            for row in rows:
                held = out.setdefault(row._mapping["owner_id"], [])
                if row._mapping["id"] is not None:
                    held.append(_assignment(row))
        return out

    async def set_expiries(self, expiries: Mapping[int, datetime]) -> None:
        if not expiries:
            return
        a = t.tag_assignments.c
        ids = sorted(expiries)
        for start in range(0, len(ids), _BULK_ROWS):
            part = ids[start : start + _BULK_ROWS]
            await self._conn.execute(
                update(t.tag_assignments)
                .where(a.id.in_(part))
                .values(expires_at=case({i: expiries[i] for i in part}, value=a.id))
            )

    async def end_many(self, ended: Mapping[int, datetime], state: AssignmentState) -> set[int]:
        if not ended:
            return set()
        a = t.tag_assignments.c
        ids = sorted(ended)
        out: set[int] = set()
        for start in range(0, len(ids), _BULK_ROWS):
            part = ids[start : start + _BULK_ROWS]
            rows = await self._conn.execute(
                update(t.tag_assignments)
                .where(a.id.in_(part), a.state == "active")
                .values(state=state.value, ended_at=case({i: ended[i] for i in part}, value=a.id))
                .returning(a.id)
            )
            out.update(r[0] for r in rows)
        return out

    async def insert_fresh(self, rows: Sequence[NewAssignment]) -> None:
        """Insert assignments of customers created in this unit of work (nothing to conflict with)."""
        values = [
            {
                "customer_id": r.customer_id,
                "dimension": r.dimension,
                "tag_key": name_key(r.tag),
                "tag": r.tag,
                "state": r.state.value,
                "source": r.source.value,
                "assigned_by": r.assigned_by,
                "assigned_at": r.assigned_at,
                "expires_at": r.expires_at,
                "ended_at": r.ended_at,
            }
            for r in rows
        ]
        if not values:
            return
        if self._conn.dialect.name == "sqlite":
            await _driver_executemany(self._conn, t.tag_assignments, values)
            return
        await copy_rows(self._conn, t.tag_assignments, values)

    async def insert_many(self, rows: Sequence[NewAssignment]) -> list[Assignment]:
        if not rows:
            return []
        a = t.tag_assignments.c
        values = [
            {
                "customer_id": r.customer_id,
                "dimension": r.dimension,
                "tag_key": name_key(r.tag),
                "tag": r.tag,
                "state": r.state.value,
                "source": r.source.value,
                "assigned_by": r.assigned_by,
                "assigned_at": r.assigned_at,
                "expires_at": r.expires_at,
                "ended_at": r.ended_at,
            }
            for r in rows
        ]
        stmt = (
            _insert(self._conn, t.tag_assignments)
            .on_conflict_do_nothing(index_elements=[a.customer_id, a.dimension, a.tag_key], index_where=t.ACTIVE)
            .returning(t.tag_assignments)
        )
        return sorted((_assignment(row) for row in await self._conn.execute(stmt, values)), key=lambda x: x.id)

    async def lapsed(self, now: datetime, limit: int) -> list[Assignment]:
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            select(t.tag_assignments)
            .where(a.state == "active", a.expires_at.is_not(None), a.expires_at <= now)
            .order_by(a.expires_at, a.id)
            .limit(limit)
        )
        return [_assignment(r) for r in rows]

    async def get_many(self, assignment_ids: Sequence[int]) -> list[Assignment]:
        wanted = sorted(set(assignment_ids))
        out: list[Assignment] = []
        for start in range(0, len(wanted), _BULK_ROWS):
            chunk = wanted[start : start + _BULK_ROWS]
            rows = await self._conn.execute(
                select(t.tag_assignments).where(t.tag_assignments.c.id.in_(chunk)).order_by(t.tag_assignments.c.id)
            )
            out.extend(_assignment(r) for r in rows)
        return out

    async def expiring_between(self, start: datetime, end: datetime) -> list[Assignment]:
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            select(t.tag_assignments)
            .where(a.state == "active", a.expires_at > start, a.expires_at <= end)
            .order_by(a.expires_at, a.id)
        )
        return [_assignment(r) for r in rows]

    async def count_by_tag(self, dimension: str, name_key_: str) -> int:
        a = t.tag_assignments.c
        stmt = select(func.count()).where(
            a.dimension == dimension, a.tag_key == name_key_, a.state == "active"
        )
        return int((await self._conn.execute(stmt)).scalar_one())

    async def search(
        self,
        query: TagQuery,
        now: datetime,
        visible_dimensions: Sequence[str] | None,
        skip: int,
        limit: int,
        after: int = 0,
    ) -> tuple[list[int], int]:
        matches = _subquery(_matching(query, now, visible_dimensions))
        if after:  # keyset: the page starts past `after`, the total is counted over every match on its own
            page = select(matches.c.id).where(matches.c.id > after).order_by(matches.c.id).offset(skip).limit(limit)
            ids = list((await self._conn.execute(page)).scalars())
            total = (await self._conn.execute(select(func.count()).select_from(matches))).scalar_one()
            return ids, int(total)
        # One pass: the window count is taken over every match before OFFSET/LIMIT cut the page out.
        rows = (
            await self._conn.execute(
                select(matches.c.id, func.count().over()).order_by(matches.c.id).offset(skip).limit(limit)
            )
        ).all()
        if rows:
            return [r[0] for r in rows], int(rows[0][1])
        total = (await self._conn.execute(select(func.count()).select_from(matches))).scalar_one()
        return [], int(total)


_Ids = Select[tuple[int]] | CompoundSelect


def _matching(query: TagQuery, now: datetime, visible: Sequence[str] | None) -> _Ids:
    """The ids of the customers matching `query`, as set operations over each tag's holders.

    Each tag's holders come from one range of ix_tag_assignments_holders (index only); AND, NOT and OR become
    INTERSECT, EXCEPT and UNION, so matching and counting cost one pass over each named tag's holders instead of
    one index probe per candidate customer. A lone tag may list a customer twice; the caller takes DISTINCT.
    """
    if isinstance(query, HasTag):
        a = t.tag_assignments.c
        conditions = [
            a.tag_key.in_(list(query.name_keys)),
            a.state == "active",
            or_(a.expires_at.is_(None), a.expires_at > now),
        ]
        if visible is not None:
            conditions.append(a.dimension.in_(list(visible)))
        return select(a.customer_id.label("id")).where(*conditions)
    if isinstance(query, AnyOf):
        if len(query.parts) < 2:  # UNION of one SELECT renders as that SELECT (no dedup): leave it to the caller
            return _matching(query.parts[0], now, visible) if query.parts else select(t.customers.c.id).where(false())
        return union(*(_operand(p, now, visible) for p in query.parts))
    if isinstance(query, AllOf):
        kept = [_operand(p, now, visible) for p in query.parts if not isinstance(p, NoneOf)]
        dropped = [_operand(p.part, now, visible) for p in query.parts if isinstance(p, NoneOf)]
    else:
        kept, dropped = [], [_operand(query.part, now, visible)]
    if not kept:
        kept = [select(t.customers.c.id)]  # only negations: every customer is a candidate, tagged or not
    base = kept[0] if len(kept) == 1 else _operand_of(intersect(*kept))
    return except_(base, *dropped) if dropped else base


def _operand(query: TagQuery, now: datetime, visible: Sequence[str] | None) -> Select[tuple[int]]:
    """`_matching` as a plain SELECT, so it can stand inside INTERSECT/EXCEPT/UNION on SQLite too."""
    return _operand_of(_matching(query, now, visible))


def _operand_of(ids: _Ids) -> Select[tuple[int]]:
    # SQLite refuses a bracketed compound inside another compound; a derived table works on both databases.
    return ids if isinstance(ids, Select) else select(ids.subquery().c.id)


def _subquery(ids: _Ids) -> Subquery:
    """The matching ids as a derived table with one row per customer."""
    return (ids.distinct() if isinstance(ids, Select) else ids).subquery()


# ---------------------------------------------------------------- events


def _event(row: Row[Any]) -> TagEvent:
    m = row._mapping
    return TagEvent(
        id=m["id"],
        customer_id=m["customer_id"],
        dimension=m["dimension"],
        tag=m["tag"],
        kind=EventKind(m["kind"]),
        actor=m["actor"],
        source=Source(m["source"]),
        at=m["at"],
        evidence=MappingProxyType(dict(m["evidence"] or {})),
        previous=m["previous"],
    )


class SqlEvents:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, event: NewEvent) -> TagEvent:
        values = dataclasses.asdict(event) | {
            "kind": event.kind.value,
            "source": event.source.value,
            "evidence": dict(event.evidence),
        }
        row = (await self._conn.execute(t.tag_events.insert().values(**values).returning(t.tag_events))).one()
        return _event(row)

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        if not events:
            return
        rows = [  # built by hand: dataclasses.asdict deep-copies every evidence dict (measurable in bulk ingest)
            {
                "customer_id": e.customer_id,
                "dimension": e.dimension,
                "tag": e.tag,
                "kind": e.kind.value,
                "actor": e.actor,
                "source": e.source.value,
                "at": e.at,
                "evidence": dict(e.evidence),
                "previous": e.previous,
            }
            for e in events
        ]
        if self._conn.dialect.name == "sqlite":
            await _driver_executemany(self._conn, t.tag_events, rows)
            return
        await copy_rows(self._conn, t.tag_events, rows)

    async def for_customer(self, customer_id: int, skip: int, limit: int, before: int = 0) -> list[TagEvent]:
        e = t.tag_events.c
        older = [e.id < before] if before else []
        rows = await self._conn.execute(
            select(t.tag_events)
            .where(e.customer_id == customer_id, *older)
            .order_by(e.id.desc())
            .offset(skip)
            .limit(limit)
        )
        return [_event(r) for r in rows]


# ---------------------------------------------------------------- suggestions


def _suggestion(row: Row[Any]) -> SuggestionRecord:
    m = row._mapping
    return SuggestionRecord(
        id=m["id"],
        customer_id=m["customer_id"],
        message_key=m["message_key"],
        dimension=m["dimension"],
        tag=m["tag"],
        score=m["score"],
        status=SuggestionStatus(m["status"]),
        created_at=m["created_at"],
        evidence=MappingProxyType(dict(m["evidence"] or {})),
        auto_applied=m["auto_applied"],
        decided_by=m["decided_by"],
        decided_at=m["decided_at"],
    )


_UNNEST_SUGGESTIONS = text(
    "INSERT INTO suggestions (customer_id, message_key, dimension, tag_key, tag, score, evidence, status,"
    " auto_applied, created_at, decided_by, decided_at)"
    " SELECT u.customer_id, u.message_key, u.dimension, u.tag_key, u.tag, u.score, CAST(u.evidence AS JSON),"
    " u.status, u.auto_applied, u.created_at, u.decided_by, u.decided_at"
    " FROM unnest(:customer_id, :message_key, :dimension, :tag_key, :tag, :score, :evidence, :status,"
    " :auto_applied, :created_at, :decided_by, :decided_at)"
    " AS u(customer_id, message_key, dimension, tag_key, tag, score, evidence, status, auto_applied, created_at,"
    " decided_by, decided_at)"
    " ON CONFLICT (message_key, dimension, tag_key) DO NOTHING"
    " RETURNING message_key, dimension, tag_key"
).bindparams(
    bindparam("customer_id", type_=postgresql.ARRAY(BigInteger)),
    *(bindparam(n, type_=postgresql.ARRAY(Text)) for n in ("message_key", "dimension", "tag_key", "tag")),
    bindparam("score", type_=postgresql.ARRAY(Float)),
    *(bindparam(n, type_=postgresql.ARRAY(Text)) for n in ("evidence", "status", "decided_by")),
    bindparam("auto_applied", type_=postgresql.ARRAY(Boolean)),
    *(bindparam(n, type_=postgresql.ARRAY(DateTime(timezone=True))) for n in ("created_at", "decided_at")),
)


class SqlSuggestions:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_if_absent(
        self,
        customer_id: int,
        message_key: str,
        dimension: str,
        tag: str,
        score: float,
        evidence: Mapping[str, Any],
        now: datetime,
        status: SuggestionStatus,
        auto_applied: bool,
        decided_by: str | None,
    ) -> SuggestionRecord | None:
        s = t.suggestions.c
        stmt = (
            _insert(self._conn, t.suggestions)
            .values(
                customer_id=customer_id,
                message_key=message_key,
                dimension=dimension,
                tag_key=name_key(tag),
                tag=tag,
                score=score,
                evidence=dict(evidence),
                status=status.value,
                auto_applied=auto_applied,
                created_at=now,
                decided_by=decided_by,
                decided_at=now if decided_by else None,
            )
            .on_conflict_do_nothing(index_elements=[s.message_key, s.dimension, s.tag_key])
            .returning(t.suggestions)
        )
        row = (await self._conn.execute(stmt)).first()
        return _suggestion(row) if row else None

    async def add_many_if_absent(self, rows: Sequence[NewSuggestion]) -> list[SuggestionRecord]:
        if not rows:
            return []
        s = t.suggestions.c
        values = [
            {
                "customer_id": r.customer_id,
                "message_key": r.message_key,
                "dimension": r.dimension,
                "tag_key": name_key(r.tag),
                "tag": r.tag,
                "score": r.score,
                "evidence": dict(r.evidence),
                "status": r.status.value,
                "auto_applied": r.auto_applied,
                "created_at": r.created_at,
                "decided_by": r.decided_by,
                "decided_at": r.created_at if r.decided_by else None,
            }
            for r in rows
        ]
        # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues") under the
        # drivers' parameter limits, and compiles the statement once (a .values(list) statement compiles per call).
        stmt = (
            _insert(self._conn, t.suggestions)
            .on_conflict_do_nothing(index_elements=[s.message_key, s.dimension, s.tag_key])
            .returning(t.suggestions)
        )
        return [_suggestion(row) for row in await self._conn.execute(stmt, values)]

    async def insert_new(self, rows: Sequence[NewSuggestion]) -> set[tuple[str, str, str]]:
        """Like add_many_if_absent, but reads back only the (message key, dimension, tag key) of inserted rows.

        PostgreSQL gets one INSERT … SELECT FROM unnest(arrays): one fixed statement (prepared once by
        asyncpg) instead of multi-row VALUES with a dozen parameters per row, whose text changes with the
        batch size and is re-planned each time. Rows repeating a key within `rows`: the first one wins.
        """
        if not rows:
            return set()
        unique = {(r.message_key, r.dimension, name_key(r.tag)): r for r in reversed(rows)}
        if self._conn.dialect.name != "postgresql":
            return {(r.message_key, r.dimension, name_key(r.tag)) for r in await self.add_many_if_absent(rows)}
        items = list(unique.items())
        columns = {
            "customer_id": [r.customer_id for _, r in items],
            "message_key": [k[0] for k, _ in items],
            "dimension": [k[1] for k, _ in items],
            "tag_key": [k[2] for k, _ in items],
            "tag": [r.tag for _, r in items],
            "score": [float(r.score) for _, r in items],
            "evidence": [json.dumps(dict(r.evidence), ensure_ascii=False) for _, r in items],
            "status": [r.status.value for _, r in items],
            "auto_applied": [r.auto_applied for _, r in items],
            "created_at": [r.created_at for _, r in items],
            "decided_by": [r.decided_by for _, r in items],
            "decided_at": [r.created_at if r.decided_by else None for _, r in items],
        }
        result = await self._conn.execute(_UNNEST_SUGGESTIONS, columns)
        return {(str(m), str(d), str(k)) for m, d, k in result}

    async def get(self, suggestion_id: int) -> SuggestionRecord | None:
        row = (
            await self._conn.execute(select(t.suggestions).where(t.suggestions.c.id == suggestion_id))
        ).first()
        return _suggestion(row) if row else None

    async def for_message(self, message_key: str) -> list[SuggestionRecord]:
        s = t.suggestions.c
        rows = await self._conn.execute(
            select(t.suggestions).where(s.message_key == message_key).order_by(s.id)
        )
        return [_suggestion(r) for r in rows]

    async def decide(self, suggestion_id: int, status: SuggestionStatus, by: str, now: datetime) -> bool:
        s = t.suggestions.c
        result = await self._conn.execute(
            update(t.suggestions)
            .where(s.id == suggestion_id, s.status == "pending")
            .values(status=status.value, decided_by=by, decided_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def pending_for(self, customer_id: int) -> list[SuggestionRecord]:
        s = t.suggestions.c
        rows = await self._conn.execute(
            select(t.suggestions).where(s.customer_id == customer_id, s.status == "pending").order_by(s.id)
        )
        return [_suggestion(r) for r in rows]

    async def expire_pending(self, created_before: datetime, by: str, now: datetime) -> int:
        """One set-based UPDATE; the status guard leaves a suggestion someone decided meanwhile alone."""
        s = t.suggestions.c
        result = await self._conn.execute(
            update(t.suggestions)
            .where(s.status == "pending", s.created_at < created_before)
            .values(status="expired", decided_by=by, decided_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- users


def _user(row: Row[Any]) -> User:
    m = row._mapping
    return User(
        id=m["id"], role=Role(m["role"]), regions=tuple(m["regions"] or ()), display_name=m["display_name"]
    )


class SqlUsers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str) -> User | None:
        row = (await self._conn.execute(select(t.users).where(t.users.c.id == user_id))).first()
        return _user(row) if row else None

    async def save(self, user: User, now: datetime) -> User:
        values = {
            "role": user.role.value,
            "regions": list(user.regions),
            "display_name": user.display_name,
            "updated_at": now,
        }
        stmt = (
            _insert(self._conn, t.users)
            .values(id=user.id, created_at=now, **values)
            .on_conflict_do_update(index_elements=[t.users.c.id], set_=values)
            .returning(t.users)
        )
        return _user((await self._conn.execute(stmt)).one())

    async def with_role(self, role: str) -> list[User]:
        rows = await self._conn.execute(select(t.users).where(t.users.c.role == role).order_by(t.users.c.id))
        return [_user(r) for r in rows]


# ---------------------------------------------------------------- taxonomy


def _version(row: Row[Any]) -> TaxonomyVersion:
    m = row._mapping
    return TaxonomyVersion(
        version=m["version"],
        taxonomy=from_document(m["document"], m["version"]),
        created_by=m["created_by"],
        created_at=m["created_at"],
        note=m["note"],
    )


class SqlTaxonomies:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def current(self) -> TaxonomyVersion | None:
        v = t.taxonomy_versions
        stmt = select(v).join(t.taxonomy_current, t.taxonomy_current.c.version == v.c.version)
        row = (await self._conn.execute(stmt)).first()
        return _version(row) if row else None

    async def current_version(self) -> int | None:
        version = (await self._conn.execute(select(t.taxonomy_current.c.version))).scalar_one_or_none()
        return None if version is None else int(version)

    async def get(self, version: int) -> TaxonomyVersion | None:
        v = t.taxonomy_versions
        row = (await self._conn.execute(select(v).where(v.c.version == version))).first()
        return _version(row) if row else None

    async def add_version(self, taxonomy: Taxonomy, by: str, now: datetime, note: str) -> TaxonomyVersion:
        v = t.taxonomy_versions
        latest = (await self._conn.execute(select(func.max(v.c.version)))).scalar_one()
        number = (latest or 0) + 1
        stored = dataclasses.replace(taxonomy, version=number)
        await self._conn.execute(
            v.insert().values(
                version=number, document=to_document(stored), created_by=by, created_at=now, note=note
            )
        )
        pointer = t.taxonomy_current
        await self._conn.execute(
            _insert(self._conn, pointer)
            .values(id=1, version=number)
            .on_conflict_do_update(index_elements=[pointer.c.id], set_={"version": number})
        )
        await self._materialise(stored)
        return TaxonomyVersion(version=number, taxonomy=stored, created_by=by, created_at=now, note=note)

    async def history(self) -> list[TaxonomyVersion]:
        v = t.taxonomy_versions
        rows = await self._conn.execute(select(v).order_by(v.c.version.desc()))
        return [_version(r) for r in rows]

    async def _materialise(self, taxonomy: Taxonomy) -> None:
        """Replace the dimensions/tags tables with the current taxonomy (for SQL reports and joins)."""
        await self._conn.execute(delete(t.tags))
        await self._conn.execute(delete(t.dimensions))
        for position, d in enumerate(taxonomy.dimensions):
            await self._conn.execute(
                t.dimensions.insert().values(
                    key=d.key,
                    name=d.name,
                    exclusive=d.exclusive,
                    visibility=d.visibility.value,
                    position=position,
                )
            )
            rows = [
                {
                    "dimension": d.key,
                    "name": tag.name,
                    "name_key": name_key(tag.name),
                    "parent_key": name_key(tag.parent) if tag.parent else None,
                    "level": tag.level,
                    "position": i,
                    "color": tag.color,
                    "description": tag.description,
                    "ttl_days": tag.ttl_days,
                    "auto_apply": tag.auto_apply,
                }
                for i, tag in enumerate(d.iter_tags())
            ]
            if rows:
                await self._conn.execute(t.tags.insert(), rows)


# ---------------------------------------------------------------- unit of work


class SqlUnitOfWork:
    """One connection and one transaction; commits when the block ends cleanly."""

    customers: SqlCustomers
    assignments: SqlAssignments
    events: SqlEvents
    suggestions: SqlSuggestions
    users: SqlUsers
    taxonomies: SqlTaxonomies

    def __init__(self, engine: AsyncEngine, *, read_only: bool = False) -> None:
        self._engine = engine
        self._read_only = read_only
        self._conn: AsyncConnection | None = None
        self._discard = False

    def discard(self) -> None:
        """Roll back at the end of the block instead of committing (dry runs)."""
        self._discard = True

    async def __aenter__(self) -> SqlUnitOfWork:
        conn = await self._engine.connect()
        try:
            if self._read_only:
                await _begin_read_only(conn)
            else:
                await conn.begin()
        except BaseException:
            await _release(conn, self._read_only)
            raise
        self._conn = conn
        self.customers = SqlCustomers(conn)
        self.assignments = SqlAssignments(conn)
        self.events = SqlEvents(conn)
        self.suggestions = SqlSuggestions(conn)
        self.users = SqlUsers(conn)
        self.taxonomies = SqlTaxonomies(conn)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        guarded = self._read_only and conn.dialect.name == "sqlite"
        try:
            if guarded:
                # query_only belongs to the connection, not the transaction: reset it before it is pooled.
                await conn.exec_driver_sql("PRAGMA query_only=OFF")
            if exc_type is None and not self._discard:
                await conn.commit()
            else:
                await conn.rollback()
        except BaseException:
            if guarded:
                await conn.invalidate()  # never pool a connection that may still refuse writes
            raise
        finally:
            await conn.close()


async def _begin_read_only(conn: AsyncConnection) -> None:
    """Begin a transaction that can only read, and that says so loudly if anything tries to write.

    SQLite: a plain deferred BEGIN (the begin hook in storage.database), so readers never queue behind
    the write lock, plus `query_only` so a write raises instead of silently upgrading the lock.
    PostgreSQL: a READ ONLY transaction (asyncpg starts it with BEGIN READ ONLY; writes raise).
    """
    if conn.dialect.name == "sqlite":
        await conn.execution_options(**{READ_ONLY: True})
        await conn.begin()
        await conn.exec_driver_sql("PRAGMA query_only=ON")
        return
    await conn.execution_options(postgresql_readonly=True)
    await conn.begin()


async def _release(conn: AsyncConnection, read_only: bool) -> None:
    """Close a connection whose read-only transaction could not begin (query_only may already be on)."""
    try:
        if read_only and conn.dialect.name == "sqlite":
            await conn.invalidate()  # never pool it: the pool opens a fresh connection instead
    finally:
        await conn.close()
