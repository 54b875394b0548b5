"""A chat turn's one write: the message's suggestions, its text kept for learning, its customer event.

A linked message used to write in three transactions (text, suggestions, `message` event), each waiting its
turn at SQLite's single writer. Here they share one unit of work: one turn at the writer per message, and
the three commit or roll back together (a crash never keeps the event without the suggestions, or the
reverse).

A message that applies no tag writes nothing but those three, and `write_message` writes them at once, so such
a turn's unit of work opens no transaction around its reads (`SqlTurnStore.unit_of_work(one_write=True)`). On
PostgreSQL the write is one statement (data-modifying CTEs over unnest arrays), atomic on its own: a BEGIN and
a COMMIT round trip and two statements fewer per message; it is sent to asyncpg directly (storage.prepared).
A message applying one tag that needs only adding (core.tags.assignments.plain_apply) writes the assignment and
its event in the same statement on PostgreSQL (`applies_at_once`): the policy's read and that one statement,
against six round trips in a transaction (BEGIN, suggestion, read, assignment, text and event, COMMIT).
On SQLite it is one write transaction of the same statements as one at a time, run in one trip to the
connection's thread (storage.prepared): the process's single writer is held for that trip alone, not from the
turn's first read to its COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, bindparam, column, exists, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.chat.ports import MessageWrite
from core.learning.ports import MessageText
from core.ports import NewApplied
from core.records import NewSuggestion
from core.rules.ports import NewCustomerEvent
from storage import tables as t
from storage.bulk import json_text, tag_event_arrays, utc_bound
from storage.learning import SqlMessageTexts, _text_if_absent, text_row
from storage.prepared import execute_direct, insert_step, prepared, write_at_once
from storage.repositories import (
    NO_TRANSACTION,
    SqlUnitOfWork,
    _suggestion_if_absent,
    suggestion_arrays,
    suggestion_record,
    suggestion_row,
)
from storage.rules import SqlCustomerEvents, _event_if_absent, event_arrays, event_row
from tagging.normaliser import name_key

# One statement: the text and the event are inserted unless their keys exist, the suggestions likewise and
# returned when new. `seen` looks at the snapshot the statement started from (a CTE's inserts are not visible to
# the rest of the statement): suggestions stored for this message by an earlier run of it. With no new
# suggestion, the LEFT JOIN still gives one row, with a NULL id.
# The tag the message applies (at most one; none: empty arrays) is inserted only when its suggestion is new (a
# retried message applies nothing) and no active row of it exists; its event only when the assignment was.
_MESSAGE_WRITE = text(
    """
    WITH kept AS (
        INSERT INTO learning_messages (message_key, channel, conversation_id, customer_id, text, created_at)
        SELECT * FROM unnest(CAST(:text_keys AS varchar[]), CAST(:text_channels AS varchar[]),
                             CAST(:text_conversations AS varchar[]), CAST(:text_customers AS bigint[]),
                             CAST(:texts AS text[]), CAST(:text_ats AS timestamptz[]))
        ON CONFLICT (message_key) DO NOTHING
    ), event AS (
        INSERT INTO customer_events (event_id, customer_id, kind, at, amount, properties, source, digest,
                                     recorded_at)
        SELECT u.event_id, u.customer_id, u.kind, u.at, u.amount, CAST(u.properties AS json), u.source, u.digest,
               CAST(:now AS timestamptz)
        FROM unnest(CAST(:event_ids AS varchar[]), CAST(:customer_ids AS bigint[]), CAST(:kinds AS varchar[]),
                    CAST(:ats AS timestamptz[]), CAST(:amounts AS double precision[]),
                    CAST(:properties AS text[]), CAST(:sources AS varchar[]), CAST(:digests AS varchar[]))
             AS u(event_id, customer_id, kind, at, amount, properties, source, digest)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
    ), added AS (
        INSERT INTO suggestions (customer_id, message_key, dimension, tag_key, tag, score, evidence, status,
                                 auto_applied, created_at, decided_by, decided_at)
        SELECT u.customer_id, u.message_key, u.dimension, u.tag_key, u.tag, u.score, CAST(u.evidence AS json),
               u.status, u.auto_applied, u.created_at, u.decided_by, u.decided_at
        FROM unnest(CAST(:customer_id AS bigint[]), CAST(:message_key AS varchar[]), CAST(:dimension AS varchar[]),
                    CAST(:tag_key AS varchar[]), CAST(:tag AS varchar[]), CAST(:score AS double precision[]),
                    CAST(:evidence AS text[]), CAST(:status AS varchar[]), CAST(:auto_applied AS boolean[]),
                    CAST(:created_at AS timestamptz[]), CAST(:decided_by AS varchar[]),
                    CAST(:decided_at AS timestamptz[]))
             AS u(customer_id, message_key, dimension, tag_key, tag, score, evidence, status, auto_applied,
                  created_at, decided_by, decided_at)
        ON CONFLICT (message_key, dimension, tag_key) DO NOTHING
        RETURNING *
    ), applied AS (
        INSERT INTO tag_assignments (customer_id, dimension, tag_key, tag, state, source, assigned_by, assigned_at,
                                     expires_at)
        SELECT u.customer_id, u.dimension, u.tag_key, u.tag, 'active', u.source, u.assigned_by, u.assigned_at,
               u.expires_at
        FROM unnest(CAST(:apply_customers AS bigint[]), CAST(:apply_dimensions AS varchar[]),
                    CAST(:apply_keys AS varchar[]), CAST(:apply_tags AS varchar[]), CAST(:apply_sources AS varchar[]),
                    CAST(:apply_actors AS varchar[]), CAST(:apply_ats AS timestamptz[]),
                    CAST(:apply_expiries AS timestamptz[]))
             AS u(customer_id, dimension, tag_key, tag, source, assigned_by, assigned_at, expires_at)
        WHERE EXISTS (SELECT 1 FROM added WHERE added.dimension = u.dimension AND added.tag_key = u.tag_key)
        ON CONFLICT (customer_id, dimension, tag_key) WHERE state = 'active' DO NOTHING
        RETURNING id
    ), logged AS (
        INSERT INTO tag_events (customer_id, dimension, tag, kind, actor, source, at, evidence, previous)
        SELECT u.customer_id, u.dimension, u.tag, u.kind, u.actor, u.source, u.at, CAST(u.evidence AS json),
               u.previous
        FROM unnest(CAST(:logged_customer_ids AS bigint[]), CAST(:logged_dimensions AS varchar[]),
                    CAST(:logged_tags AS varchar[]), CAST(:logged_kinds AS varchar[]),
                    CAST(:logged_actors AS varchar[]), CAST(:logged_sources AS varchar[]),
                    CAST(:logged_ats AS timestamptz[]), CAST(:logged_evidence AS text[]),
                    CAST(:logged_previous AS varchar[]))
             AS u(customer_id, dimension, tag, kind, actor, source, at, evidence, previous)
        WHERE EXISTS (SELECT 1 FROM applied)
    )
    SELECT added.*, (SELECT count(*) FROM event) AS new_events,
           EXISTS (SELECT 1 FROM suggestions WHERE message_key = CAST(:seen_key AS varchar)) AS seen,
           (SELECT id FROM applied) AS applied_id
    FROM (VALUES (1)) AS one (x) LEFT JOIN added ON true
    """
).columns(
    *t.suggestions.c, column("new_events", Integer), column("seen", Boolean), column("applied_id", BigInteger)
)


def _message_write(_: Any) -> Any:
    """PostgreSQL's message write (prepared once: storage.prepared)."""
    return _MESSAGE_WRITE


class SqlTurnUnitOfWork(SqlUnitOfWork):
    """The chat unit of work plus message texts (learning) and customer events, in one transaction.

    With `one_write` it opens no transaction: every statement commits on its own, so the block must write only
    through one `write_message`, itself atomic (its reads see committed data, as they would in a transaction at
    PostgreSQL's READ COMMITTED).
    """

    message_texts: SqlMessageTexts
    customer_events: SqlCustomerEvents

    def __init__(self, engine: AsyncEngine, *, one_write: bool = False) -> None:
        super().__init__(engine)
        self._one_write = one_write

    async def __aenter__(self) -> SqlTurnUnitOfWork:
        await super().__aenter__()
        conn = self._conn
        assert conn is not None
        self.message_texts = SqlMessageTexts(conn)
        self.customer_events = SqlCustomerEvents(conn)
        return self

    async def _begin(self, conn: AsyncConnection) -> None:
        if not self._one_write:
            await super()._begin(conn)
        elif conn.dialect.name == "postgresql":
            # In place: no BEGIN, no COMMIT around the reads; the write is one statement, atomic on its own.
            await conn.execution_options(isolation_level="AUTOCOMMIT", **{NO_TRANSACTION: True})
        else:
            await conn.execution_options(**{NO_TRANSACTION: True})  # the write is its own transaction

    def _on_postgres(self) -> bool:
        conn = self._conn
        assert conn is not None, "used outside its block"
        return conn.dialect.name == "postgresql"

    async def write_message(
        self,
        message_key: str,
        suggestions: Sequence[NewSuggestion],
        kept: MessageText | None,
        event: NewCustomerEvent | None,
        now: datetime,
        applied: NewApplied | None = None,
    ) -> MessageWrite:
        """Store a message's suggestions, text and event, each unless its key exists, and on PostgreSQL the tag
        it applies (`applied`: when its suggestion is new); what was new."""
        if self._on_postgres():
            return await self._write_at_once(message_key, suggestions, kept, event, now, applied)
        if applied is not None:
            raise ValueError("a tag is applied with the message's write on PostgreSQL only (see applies_at_once)")
        if self._one_write:
            return await self._write_in_one_trip(message_key, suggestions, kept, event, now)
        added = []
        for s in suggestions:
            row = await self.suggestions.add_if_absent(
                s.customer_id, s.message_key, s.dimension, s.tag, s.score, s.evidence, s.created_at, s.status,
                s.auto_applied, s.decided_by,
            )
            if row is not None:
                added.append(row)
        seen = not added and bool(await self.suggestions.for_message(message_key))
        return MessageWrite(tuple(added), await self.keep_message(message_key, kept, event, now), seen)

    async def keep_message(
        self, message_key: str, kept: MessageText | None, event: NewCustomerEvent | None, now: datetime
    ) -> bool:
        """Store a message's kept text and its event, each unless its key exists; True when the event was new."""
        if self._on_postgres():
            return (await self._write_at_once(message_key, (), kept, event, now)).new_event
        if self._one_write:  # no transaction around the block: the two rows are one of their own
            return (await self._write_in_one_trip(message_key, (), kept, event, now)).new_event
        if kept is not None:
            await self.message_texts.remember([kept])
        return event is not None and await self.customer_events.insert_one(event, now)

    async def _write_at_once(
        self,
        message_key: str,
        suggestions: Sequence[NewSuggestion],
        kept: MessageText | None,
        event: NewCustomerEvent | None,
        now: datetime,
        applied: NewApplied | None = None,
    ) -> MessageWrite:
        conn = self._conn
        assert conn is not None
        serialize = json_text(conn)  # the text the JSON columns themselves would store
        texts = [kept] if kept is not None else []
        events = [event] if event is not None else []
        params: dict[str, Any] = {
            "seen_key": message_key,
            "text_keys": [m.message_key for m in texts],
            "text_channels": [m.channel for m in texts],
            "text_conversations": [m.conversation_id for m in texts],
            "text_customers": [m.customer_id for m in texts],
            "texts": [m.text for m in texts],
            "text_ats": [utc_bound(m.created_at) for m in texts],
            "now": utc_bound(now),
            **event_arrays(events, serialize),
            # One row per tag, the first one winning in its place, as the one-by-one inserts would keep it.
            **suggestion_arrays(suggestions, serialize),
            **_applied_arrays(applied, serialize),
        }
        rows: Sequence[Mapping[Any, Any]]
        if self._one_write:  # no transaction open: the statement goes to asyncpg directly (storage.prepared)
            [rows] = await execute_direct(conn, [(prepared(conn.dialect, _message_write), params)])
        else:
            rows = (await conn.execute(_MESSAGE_WRITE, params)).mappings().all()
        added = sorted((suggestion_record(r) for r in rows if r["id"] is not None), key=lambda r: r.id)
        first = rows[0]
        return MessageWrite(tuple(added), bool(first["new_events"]), bool(first["seen"]), first["applied_id"])

    async def _write_in_one_trip(
        self,
        message_key: str,
        suggestions: Sequence[NewSuggestion],
        kept: MessageText | None,
        event: NewCustomerEvent | None,
        now: datetime,
    ) -> MessageWrite:
        """SQLite: the same statements as one at a time, as one write transaction in one trip."""
        conn = self._conn
        assert conn is not None
        dialect = conn.dialect
        steps = [insert_step(dialect, _suggestion_if_absent, suggestion_row(s)) for s in suggestions]
        if kept is not None:
            steps.append(insert_step(dialect, _text_if_absent, text_row(kept)))
        if event is not None:
            steps.append(insert_step(dialect, _event_if_absent, event_row(event, now)))
        steps.append((prepared(dialect, _seen), {"message_key": message_key}))
        results = await write_at_once(conn, steps)
        added = tuple(suggestion_record(rows[0]) for rows in results[: len(suggestions)] if rows)
        new_event = event is not None and bool(results[-2])
        return MessageWrite(added, new_event, not added and bool(results[-1][0]["seen"]))


def _applied_arrays(applied: NewApplied | None, serialize: Callable[[Any], str]) -> dict[str, list[Any]]:
    """The applied tag's assignment and event as the one-element arrays `_MESSAGE_WRITE` takes (none: empty)."""
    rows = [applied] if applied is not None else []
    a = [r.assignment for r in rows]
    return {
        "apply_customers": [x.customer_id for x in a],
        "apply_dimensions": [x.dimension for x in a],
        "apply_keys": [name_key(x.tag) for x in a],
        "apply_tags": [x.tag for x in a],
        "apply_sources": [x.source.value for x in a],
        "apply_actors": [x.assigned_by for x in a],
        "apply_ats": [utc_bound(x.assigned_at) for x in a],
        "apply_expiries": [utc_bound(x.expires_at) if x.expires_at is not None else None for x in a],
        **{f"logged_{k}": v for k, v in tag_event_arrays([r.event for r in rows], serialize).items()},
    }


def _seen(_: Any) -> Any:
    """Whether suggestions of the message are stored (after its inserts: by an earlier run, when none was new)."""
    return select(exists().where(t.suggestions.c.message_key == bindparam("message_key")).label("seen"))


class SqlTurnStore:
    """Turn units of work on the same engine as `storage.database.Database` (pass `database.engine`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def applies_at_once(self) -> bool:
        """PostgreSQL writes a message's applied tag in its one statement; SQLite applies in a transaction."""
        return self._engine.dialect.name == "postgresql"

    def unit_of_work(self, *, one_write: bool = False) -> SqlTurnUnitOfWork:
        return SqlTurnUnitOfWork(self._engine, one_write=one_write)
