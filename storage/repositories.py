"""SQL implementations of the core ports, all on one AsyncConnection per unit of work."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Float,
    MetaData,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

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
from storage.bulk import copy_rows, duplicate_key, utc_bound
from storage.taxonomy_document import from_document, to_document
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def _insert(conn: AsyncConnection, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both SQLite and PostgreSQL do)."""
    return _insert_for(conn.dialect.name)(table)


def _insert_for(dialect: str) -> Callable[[Any], Any]:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def prebuilt(conn: AsyncConnection, build: Callable[[Any], Any]) -> Any:
    """The statement `build(insert)` makes for the connection's dialect, built once per (builder, dialect).

    For the statements every chat turn runs: building an INSERT … VALUES and coercing its values costs more
    than executing it on SQLite, so the hot ones are built once without values and executed with a dict of
    parameters (the dialect's INSERT, which knows ON CONFLICT, is passed to `build`)."""
    name = conn.dialect.name
    statement = _PREBUILT.get((build, name))
    if statement is None:
        statement = _PREBUILT[(build, name)] = build(_insert_for(name))
    return statement


_PREBUILT: dict[tuple[Callable[[Any], Any], str], Any] = {}


_BULK_ROWS = 1000
_NEXT_CUSTOMER_IDS = text("SELECT nextval(pg_get_serial_sequence('customers', 'id')) FROM generate_series(1, :n)")
# Execution option for connections that only read (`conn.execution_options(**{READ_ONLY: True})`): the
# SQLite begin hook in storage.database then takes a plain deferred BEGIN instead of BEGIN IMMEDIATE.
READ_ONLY = "kebiao_read_only"
# Execution option for a SQLite connection that opens no transaction (`storage.turns`): the begin hook sends no
# BEGIN and takes no writer turn, so each statement commits on its own, as in PostgreSQL's AUTOCOMMIT; its one
# write is a transaction of its own (storage.prepared.write_at_once). Set on PostgreSQL's AUTOCOMMIT connection
# of the same unit of work too, where it only tells storage.statements that no transaction is begun there.
NO_TRANSACTION = "kebiao_no_transaction"


async def _driver_executemany(
    conn: AsyncConnection,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    where_id: bool = False,
    verb: str = "INSERT",
    into: str | None = None,
) -> None:
    """INSERT (or UPDATE … WHERE id, when `where_id`) many rows with one driver-level executemany on SQLite;
    `into` names another table (a staging one) to insert `table`'s columns into.

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
        target = into or quote(table.name)
        sql = f"{verb} INTO {target} ({names}) VALUES ({', '.join('?' * len(columns))})"
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


def _lookup_rows(conn: AsyncConnection) -> int:
    """Keys per lookup statement: PostgreSQL binds a whole list as one array, SQLite one parameter per key."""
    return 10 * _BULK_ROWS if conn.dialect.name == "postgresql" else _BULK_ROWS


def _among(conn: AsyncConnection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`, as `= ANY(one array parameter)` on PostgreSQL (no per-value binds to render)."""
    if conn.dialect.name == "postgresql":
        return column == any_(literal(list(values), postgresql.ARRAY(column.type)))
    return column.in_(list(values))


def _or_none(value: str) -> str | None:
    value = value.strip()
    return value or None


# ---------------------------------------------------------------- customers


def _has_wecom_id() -> Any:
    """Customers with a (non-empty) WeCom external user id."""
    column = t.customers.c.wecom_external_userid
    return (column.is_not(None)) & (column != "")


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


def _name_rank(name: Any, company: Any, key: str) -> ColumnElement[int]:
    """Name matches first (equal, prefix, contains), then company matches in the same order; the company column
    is stored as typed, so it is given lower-cased (the key is already normalised)."""
    return case(
        (name == key, 0),
        (name.startswith(key, autoescape=True), 1),
        (name.contains(key, autoescape=True), 2),
        (company == key, 3),
        (company.startswith(key, autoescape=True), 4),
        else_=5,
    )


_CUSTOMER_BY_ID = select(t.customers).where(t.customers.c.id == bindparam("id"))


class SqlCustomers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, customer_id: int) -> Customer | None:
        row = (await self._conn.execute(_CUSTOMER_BY_ID, {"id": customer_id})).first()
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
        company = func.lower(c.company)
        if not key:  # everyone matches: the oldest customers first, straight from the primary key
            rows = await self._conn.execute(select(t.customers).order_by(c.id).limit(limit))
            return [_customer(r) for r in rows]
        # Each kind of match is drawn from its own index, at most `cap` of each, and ranked on its own, best
        # kind first, until `limit` customers are found: a common word ("科技", "有限公司") then costs a bounded
        # read however many of a million names hold it, a name that equals or starts with the key is never
        # crowded out by names that merely contain it, and when the names starting with the key fill the page
        # the (many more) names and companies containing it are not read at all.
        cap = limit + NAME_CANDIDATES
        kinds = [
            c.name_key == key,
            c.name_key.startswith(key, autoescape=True),
            self._contains(c.name_key, key),
            self._contains(company, key),
        ]
        found: dict[int, Customer] = {}
        for kind in kinds:
            # The capped SELECT is a derived table, ranked outside: the cap bounds what is read, not the order.
            capped = select(t.customers).where(kind).limit(cap).subquery()
            k = capped.c
            order = _name_rank(k.name_key, func.lower(k.company), key), func.length(k.name_key), k.id
            for row in await self._conn.execute(select(capped).order_by(*order).limit(limit)):
                found.setdefault(row.id, _customer(row))
            if len(found) >= limit:
                break
        return list(found.values())[:limit]

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

    async def with_wecom_ids(self, after: int, limit: int) -> list[Customer]:
        c = t.customers.c
        stmt = select(t.customers).where(_has_wecom_id(), c.id > after).order_by(c.id).limit(limit)
        return [_customer(r) for r in await self._conn.execute(stmt)]

    async def count_with_wecom_ids(self, after: int = 0) -> int:
        stmt = select(func.count()).select_from(t.customers).where(_has_wecom_id(), t.customers.c.id > after)
        return int((await self._conn.execute(stmt)).scalar_one())

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
        """Stage the new values in a temporary table (COPY on PostgreSQL, one driver executemany on SQLite), then
        one UPDATE … FROM it: a statement for the whole file however many customers change."""
        if not updates:
            return
        rows = [{"id": cid, **_customer_values(d, now)} for cid, d in updates]
        columns = list(rows[0])
        quote = self._conn.dialect.identifier_preparer.quote
        names = ", ".join(map(quote, columns))
        postgres = self._conn.dialect.name == "postgresql"
        staging = "kb_customer_updates" if postgres else "temp.kb_customer_updates"
        await self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {staging}")
        # Same column types as customers, no rows and no constraints (the UPDATE checks those on customers).
        await self._conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE kb_customer_updates AS SELECT {names} FROM customers WHERE false"
        )
        if postgres:
            shape = Table(
                "kb_customer_updates", MetaData(), *(Column(name, t.customers.c[name].type) for name in columns)
            )
            await copy_rows(self._conn, shape, rows)
        else:
            await _driver_executemany(self._conn, t.customers, rows, into=staging)
        assignments = ", ".join(f"{quote(name)} = u.{quote(name)}" for name in columns if name != "id")
        await self._conn.exec_driver_sql(
            f"UPDATE customers SET {assignments} FROM {staging} AS u WHERE customers.id = u.id"
        )
        await self._conn.exec_driver_sql(f"DROP TABLE {staging}")

    async def refresh_statistics(self) -> None:
        """PostgreSQL: ANALYZE the tables a bulk import fills, so the next import (or chat) plans its lookups on
        what is there rather than on an empty table's statistics (a re-import of 200,000 customers otherwise
        scans every active tag for each chunk of lookups). SQLite plans by its indexes: nothing to do."""
        if self._conn.dialect.name == "postgresql":
            await self._conn.exec_driver_sql("ANALYZE customers, tag_assignments, tag_events")

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
        size = _lookup_rows(self._conn)
        for column, wanted in ((c.crm_id, crm), (c.wecom_external_userid, wecom), (c.name_key, keys)):
            for start in range(0, len(wanted), size):
                rows = await self._conn.execute(
                    select(t.customers).where(_among(self._conn, column, wanted[start : start + size])).order_by(c.id)
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


_ACTIVE_COLUMNS = (
    "customer_id", "dimension", "tag_key", "tag", "state", "source", "assigned_by", "assigned_at", "expires_at"
)
_EVENT_COLUMNS = ("customer_id", "dimension", "tag", "kind", "actor", "source", "at", "evidence", "previous")


def _active_if_absent(insert: Any) -> Any:
    a = t.tag_assignments.c
    return (
        insert(t.tag_assignments)
        .on_conflict_do_nothing(index_elements=[a.customer_id, a.dimension, a.tag_key], index_where=t.ACTIVE)
        .returning(t.tag_assignments)
    )


def _active_and_event(insert: Any) -> Any:
    """PostgreSQL: the active assignment and, only when it was inserted, its event; the assignment's row back."""
    a = t.tag_assignments.c
    added = (
        insert(t.tag_assignments)
        .values({c: bindparam(c, type_=a[c].type) for c in _ACTIVE_COLUMNS})
        .on_conflict_do_nothing(index_elements=[a.customer_id, a.dimension, a.tag_key], index_where=t.ACTIVE)
        .returning(t.tag_assignments)
        .cte("added")
    )
    e = t.tag_events.c
    event = select(*(bindparam(f"event_{c}", type_=e[c].type) for c in _EVENT_COLUMNS)).select_from(added)
    logged = t.tag_events.insert().from_select(list(_EVENT_COLUMNS), event).cte("logged")
    return select(added).add_cte(logged)  # PostgreSQL runs a data-modifying WITH whether or not it is read


def _holding(whole_dimension: bool) -> Any:
    """How many tags the customer holds, outer-joined to the rows that decide an apply (none: one row of NULLs)."""
    a = t.tag_assignments.c
    customer = bindparam("customer_id", type_=a.customer_id.type)
    held = (
        select(func.count().label("held"))
        .select_from(t.tag_assignments)
        .where(a.customer_id == customer, a.state == "active")
        .subquery()
    )
    dimension = bindparam("dimension", type_=a.dimension.type)
    near = [a.customer_id == customer, a.state == "active", a.dimension == dimension]
    if not whole_dimension:
        # the active-tag unique index answers this one row
        near.append(a.tag_key == bindparam("tag_key", type_=a.tag_key.type))
    joined = held.outerjoin(t.tag_assignments, and_(*near))
    return select(held.c.held, t.tag_assignments).select_from(joined).order_by(a.id)


def _holding_dimension(_: Any) -> Any:
    return _holding(whole_dimension=True)


def _holding_tag(_: Any) -> Any:
    return _holding(whole_dimension=False)


class SqlAssignments:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def active_for(self, customer_id: int) -> list[Assignment]:
        a = t.tag_assignments.c
        rows = await self._conn.execute(
            select(t.tag_assignments).where(a.customer_id == customer_id, a.state == "active").order_by(a.id)
        )
        return [_assignment(r) for r in rows]

    async def holding(
        self, customer_id: int, dimension: str, tag_key: str, *, whole_dimension: bool
    ) -> tuple[int, list[Assignment]]:
        build = _holding_dimension if whole_dimension else _holding_tag
        values = {"customer_id": customer_id, "dimension": dimension, "tag_key": tag_key}
        rows = (await self._conn.execute(prebuilt(self._conn, build), values)).all()
        return int(rows[0].held), [_assignment(r) for r in rows if r.id is not None]

    async def insert_active(
        self,
        customer_id: int,
        dimension: str,
        tag: str,
        source: Source,
        assigned_by: str,
        now: datetime,
        expires_at: datetime | None,
        event: NewEvent | None = None,
    ) -> Assignment | None:
        values = {
            "customer_id": customer_id,
            "dimension": dimension,
            "tag_key": name_key(tag),
            "tag": tag,
            "state": "active",
            "source": source.value,
            "assigned_by": assigned_by,
            "assigned_at": now,
            "expires_at": expires_at,
        }
        if event is not None and self._conn.dialect.name == "postgresql":
            values |= {f"event_{k}": v for k, v in _event_row(event).items()}
            row = (await self._conn.execute(prebuilt(self._conn, _active_and_event), values)).first()
            return _assignment(row) if row else None
        # SQLite runs no INSERT inside a WITH: the event, if any, is a statement of its own.
        row = (await self._conn.execute(prebuilt(self._conn, _active_if_absent), values)).first()
        if row is not None and event is not None:
            await SqlEvents(self._conn).append(event)
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
            update(t.tag_assignments).where(t.tag_assignments.c.id == assignment_id).values(expires_at=expires_at)
        )

    async def active_for_many(self, customer_ids: Sequence[int]) -> dict[int, list[Assignment]]:
        wanted = sorted(set(customer_ids))
        out: dict[int, list[Assignment]] = {}
        c, a = t.customers.c, t.tag_assignments.c
        size = _lookup_rows(self._conn)
        for start in range(0, len(wanted), size):
            # One LEFT JOIN answers both "does the customer exist" and "what does it hold".
            rows = await self._conn.execute(
                select(c.id.label("owner_id"), t.tag_assignments)
                .select_from(t.customers.outerjoin(t.tag_assignments, and_(a.customer_id == c.id, a.state == "active")))
                .where(_among(self._conn, c.id, wanted[start : start + size]))
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
        stmt = select(func.count()).where(a.dimension == dimension, a.tag_key == name_key_, a.state == "active")
        return int((await self._conn.execute(stmt)).scalar_one())

    async def search(
        self,
        query: TagQuery,
        now: datetime,
        visible_dimensions: Sequence[str] | None,
        skip: int,
        limit: int,
        after: int = 0,
        *,
        count_up_to: int,
    ) -> tuple[list[int], int]:
        matches = _Matches(query, now, visible_dimensions)
        if not after and skip + limit <= count_up_to:  # the first pages: the page and the count in one read
            ids = list((await self._conn.execute(matches.ids(0).limit(count_up_to + 1))).scalars())
            return ids[skip : skip + limit], len(ids)
        page = list((await self._conn.execute(matches.ids(after).offset(skip).limit(limit))).scalars())
        counted = select(func.count()).select_from(matches.ids(0).limit(count_up_to + 1).subquery())
        return page, int((await self._conn.execute(counted)).scalar_one())


def _merged(query: TagQuery) -> TagQuery:
    """`query` with the plain tags of each OR merged into one tag of several keys (one probe, not one each)."""
    if isinstance(query, NoneOf):
        return NoneOf(_merged(query.part))
    if isinstance(query, AllOf):
        return AllOf(tuple(_merged(p) for p in query.parts))
    if isinstance(query, AnyOf):
        parts = [_merged(p) for p in query.parts]
        keys = tuple(dict.fromkeys(k for p in parts if isinstance(p, HasTag) for k in p.name_keys))
        others = [p for p in parts if not isinstance(p, HasTag)]
        merged = [HasTag(keys), *others] if keys else others
        return merged[0] if len(merged) == 1 else AnyOf(tuple(merged))
    return query


class _Matches:
    """The customers matching a tag query, as one SELECT of ids in id order that stops reading at its LIMIT.

    The ids are driven from one positive tag of the query (its holders come from ix_tag_assignments_holders in
    customer id order), or from the customers' primary key when the query has none (NOT …, A OR B); every other
    part is an EXISTS / NOT EXISTS probe on the same customer. So a page, or a count up to a cap, reads about as
    many holders as it needs, not every holder of every tag named.
    """

    def __init__(self, query: TagQuery, now: datetime, visible: Sequence[str] | None) -> None:
        self.now, self.visible = now, visible
        query = _merged(query)
        parts = list(query.parts) if isinstance(query, AllOf) else [query]
        driver = next((p for p in parts if isinstance(p, HasTag) and len(p.name_keys) == 1), None)
        self.driver = driver
        self.rest = [p for p in parts if p is not driver]

    def ids(self, after: int) -> Select[Any]:
        """Matching ids greater than `after`, ascending, each once."""
        if self.driver is None:
            c = t.customers.c
            return select(c.id).where(c.id > after, *self._all(self.rest, c.id, after)).order_by(c.id)
        a = t.tag_assignments.alias("driver")
        held = self._holding(a, self.driver)
        rest = self._all(self.rest, a.c.customer_id, after)
        return (
            select(a.c.customer_id.label("id"))
            .where(a.c.customer_id > after, *held, *rest)
            .group_by(a.c.customer_id)  # one row per customer, though a tag key may be held in two dimensions
            .order_by(a.c.customer_id)
        )

    def _holding(self, a: Any, query: HasTag) -> list[ColumnElement[bool]]:
        """Conditions on the assignment row `a` for an active, unexpired tag of `query` the viewer may see."""
        keys = list(query.name_keys)
        conditions = [
            a.c.tag_key == keys[0] if len(keys) == 1 else a.c.tag_key.in_(keys),
            a.c.state == "active",
            or_(a.c.expires_at.is_(None), a.c.expires_at > self.now),
        ]
        if self.visible is not None:
            conditions.append(a.c.dimension.in_(list(self.visible)))
        return conditions

    def _all(self, parts: Sequence[TagQuery], customer: Any, after: int) -> list[ColumnElement[bool]]:
        return [self._holds(p, customer, after) for p in parts]

    def _holds(self, query: TagQuery, customer: Any, after: int) -> ColumnElement[bool]:
        """Whether the customer with id `customer` (greater than `after`) matches `query`."""
        if isinstance(query, HasTag):
            a = t.tag_assignments.alias()
            # `> after` says nothing new, but lets a merge join start its scan of the holders at `after`.
            near = [a.c.customer_id == customer, a.c.customer_id > after]
            return exists().where(*near, *self._holding(a, query))
        if isinstance(query, NoneOf):
            return not_(self._holds(query.part, customer, after))
        if isinstance(query, AnyOf):
            return or_(false(), *(self._holds(p, customer, after) for p in query.parts))
        return and_(true(), *self._all(query.parts, customer, after))


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


def _event_row(e: NewEvent) -> dict[str, Any]:
    """The tag_events row of an event (by hand: dataclasses.asdict deep-copies the evidence, which costs)."""
    return {
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


def _event_returning(insert: Any) -> Any:
    return insert(t.tag_events).returning(t.tag_events)


class SqlEvents:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, event: NewEvent) -> TagEvent:
        row = (await self._conn.execute(prebuilt(self._conn, _event_returning), _event_row(event))).one()
        return _event(row)

    async def append_many(self, events: Sequence[NewEvent]) -> None:
        if not events:
            return
        rows = [_event_row(e) for e in events]
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


def _suggestion_if_absent(insert: Any) -> Any:
    s = t.suggestions.c
    return (
        insert(t.suggestions)
        .on_conflict_do_nothing(index_elements=[s.message_key, s.dimension, s.tag_key])
        .returning(t.suggestions)
    )


def suggestion_row(r: NewSuggestion) -> dict[str, Any]:
    """The `suggestions` row inserting `r` (its tag key derived, decided when it has a decider)."""
    return {
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


def _suggestion(row: Row[Any]) -> SuggestionRecord:
    return suggestion_record(row._mapping)


def suggestion_record(m: Mapping[Any, Any]) -> SuggestionRecord:
    """A stored `suggestions` row (by column name) as the record."""
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


def suggestion_arrays(rows: Sequence[NewSuggestion], serialize: Callable[[Any], str]) -> dict[str, list[Any]]:
    """Suggestions as one array per column, the parameters of an INSERT … SELECT FROM unnest (PostgreSQL), named
    after the columns; one row per (message key, dimension, tag key), the first one winning, in its place."""
    unique: dict[tuple[str, str, str], NewSuggestion] = {}
    for r in rows:
        unique.setdefault((r.message_key, r.dimension, name_key(r.tag)), r)
    items = list(unique.items())
    return {
        "customer_id": [r.customer_id for _, r in items],
        "message_key": [k[0] for k, _ in items],
        "dimension": [k[1] for k, _ in items],
        "tag_key": [k[2] for k, _ in items],
        "tag": [r.tag for _, r in items],
        "score": [float(r.score) for _, r in items],
        "evidence": [serialize(dict(r.evidence)) for _, r in items],
        "status": [r.status.value for _, r in items],
        "auto_applied": [r.auto_applied for _, r in items],
        "created_at": [utc_bound(r.created_at) for _, r in items],
        "decided_by": [r.decided_by for _, r in items],
        "decided_at": [utc_bound(r.created_at) if r.decided_by else None for _, r in items],
    }


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
        new = NewSuggestion(
            customer_id, message_key, dimension, tag, score, evidence, now, status, auto_applied, decided_by
        )
        values = suggestion_row(new)
        row = (await self._conn.execute(prebuilt(self._conn, _suggestion_if_absent), values)).first()
        return _suggestion(row) if row else None

    async def add_many_if_absent(self, rows: Sequence[NewSuggestion]) -> list[SuggestionRecord]:
        if not rows:
            return []
        s = t.suggestions.c
        values = [suggestion_row(r) for r in rows]
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
        if self._conn.dialect.name != "postgresql":
            return {(r.message_key, r.dimension, name_key(r.tag)) for r in await self.add_many_if_absent(rows)}
        columns = suggestion_arrays(rows, lambda value: json.dumps(value, ensure_ascii=False))
        result = await self._conn.execute(_UNNEST_SUGGESTIONS, columns)
        return {(str(m), str(d), str(k)) for m, d, k in result}

    async def get(self, suggestion_id: int) -> SuggestionRecord | None:
        row = (await self._conn.execute(select(t.suggestions).where(t.suggestions.c.id == suggestion_id))).first()
        return _suggestion(row) if row else None

    async def for_message(self, message_key: str) -> list[SuggestionRecord]:
        s = t.suggestions.c
        rows = await self._conn.execute(select(t.suggestions).where(s.message_key == message_key).order_by(s.id))
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
    return User(id=m["id"], role=Role(m["role"]), regions=tuple(m["regions"] or ()), display_name=m["display_name"])


class SqlUsers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, user_id: str) -> User | None:
        row = (await self._conn.execute(select(t.users).where(t.users.c.id == user_id))).first()
        return _user(row) if row else None

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users among these ids that exist, by id: one query per lookup chunk, not one per user."""
        wanted = sorted(set(user_ids))
        size = _lookup_rows(self._conn)
        out: dict[str, User] = {}
        for start in range(0, len(wanted), size):
            rows = await self._conn.execute(
                select(t.users).where(_among(self._conn, t.users.c.id, wanted[start : start + size]))
            )
            out.update((user.id, user) for user in map(_user, rows))
        return out

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
            v.insert().values(version=number, document=to_document(stored), created_by=by, created_at=now, note=note)
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
            await self._begin(conn)
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

    async def _begin(self, conn: AsyncConnection) -> None:
        """Start the block's transaction on its connection."""
        if self._read_only:
            await _begin_read_only(conn)
        else:
            await conn.begin()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        guarded = self._read_only and conn.dialect.name == "sqlite"
        try:
            # query_only belongs to the connection, not the transaction: reset it before it is pooled. A block
            # that failed (or was cancelled) mid-statement is rolled back first, or the reset itself would fail.
            if exc_type is None and not self._discard:
                if guarded:
                    await conn.exec_driver_sql("PRAGMA query_only=OFF")
                await conn.commit()
            else:
                await conn.rollback()
                if guarded:
                    await conn.exec_driver_sql("PRAGMA query_only=OFF")
        except BaseException:
            if guarded:
                await conn.invalidate()  # never pool a connection that may still refuse writes
            if exc_type is None:
                raise
            # The block's own exception (a cancellation above all) must reach the caller, not this cleanup's.
            log.warning("could not end a failed unit of work cleanly", exc_info=True)
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
