"""SQL outbox (claims with FOR UPDATE SKIP LOCKED on PostgreSQL, one atomic UPDATE on SQLite) and the
alert unit of work / store that expose it beside the ordinary repositories."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, func, not_, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.alerts.ports import UNSURE_SINCE, NewOutboxMessage, OutboxMessage, OutboxState
from storage import tables as t
from storage.alerts import SqlAcknowledgements, SqlActivity, SqlAlertScans
from storage.bulk import json_text, utc_bound
from storage.repositories import SqlUnitOfWork, _insert

ERROR_CHARS = 1000
KEY_CHUNK = 500
ARRAY_ROWS = 10_000  # messages per INSERT on PostgreSQL (one array parameter per column)

_ENQUEUE_ARRAYS = text(
    """
    INSERT INTO outbox (dedupe_key, recipient, channel, payload, state, attempts, next_attempt_at,
                        created_at, updated_at)
    SELECT u.dedupe_key, u.recipient, u.channel, CAST(u.payload AS json), CAST(:state AS varchar), 0, u.not_before,
           CAST(:now AS timestamptz), CAST(:now AS timestamptz)
    FROM unnest(CAST(:dedupe_keys AS varchar[]), CAST(:recipients AS varchar[]), CAST(:channels AS varchar[]),
                CAST(:payloads AS text[]), CAST(:not_before AS timestamptz[]))
         WITH ORDINALITY AS u(dedupe_key, recipient, channel, payload, not_before, n)
    ORDER BY u.n
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
    """
)


def _message(row: Row[Any]) -> OutboxMessage:
    m = row._mapping
    return OutboxMessage(
        id=m["id"],
        dedupe_key=m["dedupe_key"],
        recipient=m["recipient"],
        channel=m["channel"],
        payload=MappingProxyType(dict(m["payload"] or {})),
        state=OutboxState(m["state"]),
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class SqlOutbox:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def enqueue(self, message: NewOutboxMessage, now: datetime) -> bool:
        stmt = (
            _insert(self._conn, t.outbox)
            .values(
                dedupe_key=message.dedupe_key,
                recipient=message.recipient,
                channel=message.channel,
                payload=dict(message.payload),
                state=OutboxState.PENDING.value,
                attempts=0,
                next_attempt_at=message.not_before,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
        result = await self._conn.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def enqueue_many(self, messages: Sequence[NewOutboxMessage], now: datetime) -> int:
        """One multi-row INSERT … ON CONFLICT (dedupe_key) DO NOTHING; returns how many rows were new."""
        if not messages:
            return 0
        if self._conn.dialect.name == "postgresql":
            return await self._enqueue_arrays(messages, now)
        rows = [
            {
                "dedupe_key": m.dedupe_key,
                "recipient": m.recipient,
                "channel": m.channel,
                "payload": dict(m.payload),
                "state": OutboxState.PENDING.value,
                "attempts": 0,
                "next_attempt_at": m.not_before,
                "created_at": now,
                "updated_at": now,
            }
            for m in messages
        ]
        stmt = (
            _insert(self._conn, t.outbox).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(t.outbox.c.id)
        )
        # executemany with RETURNING: SQLAlchemy batches it into multi-row VALUES ("insertmanyvalues").
        return len((await self._conn.execute(stmt, rows)).all())

    async def _enqueue_arrays(self, messages: Sequence[NewOutboxMessage], now: datetime) -> int:
        """PostgreSQL: one INSERT … SELECT FROM unnest(one array per column) per chunk, instead of a VALUES
        row of nine bind parameters per message that SQLAlchemy renders for every batch."""
        serialize = json_text(self._conn)
        added = 0
        for start in range(0, len(messages), ARRAY_ROWS):
            part = messages[start : start + ARRAY_ROWS]
            params = {
                "dedupe_keys": [m.dedupe_key for m in part],
                "recipients": [m.recipient for m in part],
                "channels": [m.channel for m in part],
                "payloads": [serialize(dict(m.payload)) for m in part],
                "not_before": [utc_bound(m.not_before) if m.not_before else None for m in part],
                "state": OutboxState.PENDING.value,
                "now": utc_bound(now),
            }
            added += len((await self._conn.execute(_ENQUEUE_ARRAYS, params)).all())
        return added

    async def claim(
        self,
        now: datetime,
        limit: int,
        channels: Sequence[str] | None = None,
        busy: Sequence[tuple[str, str | None]] = (),
    ) -> list[OutboxMessage]:
        o = t.outbox.c
        due = select(o.id).where(
            o.state == OutboxState.PENDING.value, or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now)
        )
        if channels is not None:
            # A process delivers only the channels it holds a deliverer for; other rows wait for one that does.
            due = due.where(o.channel.in_(sorted(set(channels))))
        for channel, recipient in set(busy):
            # An endpoint already at its concurrency limit: its rows wait, the others go ahead of them.
            if recipient is None:
                due = due.where(o.channel != channel)
            else:
                due = due.where(not_(and_(o.channel == channel, o.recipient == recipient)))
        due = due.order_by(o.id).limit(limit)
        claim = {"state": OutboxState.SENDING.value, "attempts": o.attempts + 1, "updated_at": now}
        if self._conn.dialect.name == "postgresql":
            # Rows another replica holds are skipped, not waited for; each row goes to one claimer. A CTE,
            # not `IN (subquery)`: PostgreSQL may re-run a locking subquery and claim more than `limit`.
            locked = due.with_for_update(skip_locked=True).cte("due")
            # The state guard keeps a row another transaction moved on meanwhile from being claimed again.
            stmt = (
                update(t.outbox)
                .where(o.id == locked.c.id, o.state == OutboxState.PENDING.value)
                .values(**claim)
                .returning(t.outbox)
            )
        else:
            # SQLite: the transaction began IMMEDIATE (the write lock), so select-and-update is atomic.
            stmt = (
                update(t.outbox)
                .where(o.id.in_(due.scalar_subquery()), o.state == OutboxState.PENDING.value)
                .values(**claim)
                .returning(t.outbox)
            )
        rows = await self._conn.execute(stmt)
        return sorted((_message(r) for r in rows), key=lambda m: m.id)

    async def _move(self, message_id: int, source: OutboxState, **values: Any) -> bool:
        o = t.outbox.c
        if isinstance(values.get("last_error"), str):
            values["last_error"] = values["last_error"][:ERROR_CHARS]
        result = await self._conn.execute(
            update(t.outbox).where(o.id == message_id, o.state == source.value).values(**values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_sent(self, message_id: int, now: datetime, note: str) -> bool:
        error = f"sent; platform id {note}" if note else None
        return await self._move(
            message_id, OutboxState.SENDING, state=OutboxState.SENT.value, updated_at=now, last_error=error
        )

    async def mark_retry(self, message_id: int, now: datetime, next_attempt_at: datetime, error: str) -> bool:
        return await self._move(
            message_id,
            OutboxState.SENDING,
            state=OutboxState.PENDING.value,
            next_attempt_at=next_attempt_at,
            last_error=error,
            updated_at=now,
        )

    async def mark_failed(self, message_id: int, now: datetime, error: str) -> bool:
        return await self._move(
            message_id, OutboxState.SENDING, state=OutboxState.FAILED.value, last_error=error, updated_at=now
        )

    async def mark_unknown(self, message_id: int, error: str) -> bool:
        moved = await self._move(message_id, OutboxState.SENDING, state=OutboxState.UNKNOWN.value, last_error=error)
        if moved:
            message = await self.get(message_id)
            if message is not None:
                await self._keep_unsure_since([message])
        return moved

    async def mark_stale_unknown(self, claimed_before: datetime, now: datetime) -> list[OutboxMessage]:
        o = t.outbox.c
        note = f"sender stopped while sending (found {now.isoformat()}); delivery outcome unknown"
        rows = await self._conn.execute(
            update(t.outbox)
            .where(o.state == OutboxState.SENDING.value, o.updated_at < claimed_before)
            .values(state=OutboxState.UNKNOWN.value, last_error=note)
            .returning(t.outbox)
        )
        return await self._keep_unsure_since(sorted((_message(r) for r in rows), key=lambda m: m.id))

    async def _keep_unsure_since(self, messages: list[OutboxMessage]) -> list[OutboxMessage]:
        """Record each row's claim time (its `updated_at`) as UNSURE_SINCE unless an earlier one is kept."""
        out: list[OutboxMessage] = []
        for message in messages:
            if UNSURE_SINCE in message.payload:
                out.append(message)
                continue
            payload = {**message.payload, UNSURE_SINCE: message.updated_at.isoformat()}
            await self._conn.execute(update(t.outbox).where(t.outbox.c.id == message.id).values(payload=payload))
            out.append(dataclasses.replace(message, payload=MappingProxyType(payload)))
        return out

    async def requeue_unknown(self, message_id: int, now: datetime, note: str, at: datetime | None = None) -> bool:
        return await self._move(
            message_id,
            OutboxState.UNKNOWN,
            state=OutboxState.PENDING.value,
            next_attempt_at=at or now,
            last_error=note,
            updated_at=now,
        )

    async def fail_unknown(self, message_id: int, now: datetime, error: str) -> bool:
        return await self._move(
            message_id, OutboxState.UNKNOWN, state=OutboxState.FAILED.value, last_error=error, updated_at=now
        )

    async def settle_unknown(self, message_id: int, now: datetime, note: str) -> bool:
        return await self._move(
            message_id, OutboxState.UNKNOWN, state=OutboxState.SENT.value, last_error=note, updated_at=now
        )

    async def due_by_channel(self, now: datetime) -> dict[str, int]:
        o = t.outbox.c
        rows = await self._conn.execute(
            select(o.channel, func.count())
            .where(o.state == OutboxState.PENDING.value, or_(o.next_attempt_at.is_(None), o.next_attempt_at <= now))
            .group_by(o.channel)
        )
        return {channel: int(n) for channel, n in rows}

    async def by_keys(self, dedupe_keys: Sequence[str]) -> list[OutboxMessage]:
        """Looked up through the unique index on dedupe_key, in chunks that keep each IN list short."""
        keys = sorted(set(dedupe_keys))
        out: list[OutboxMessage] = []
        for start in range(0, len(keys), KEY_CHUNK):
            rows = await self._conn.execute(
                select(t.outbox).where(t.outbox.c.dedupe_key.in_(keys[start : start + KEY_CHUNK]))
            )
            out.extend(_message(r) for r in rows)
        return sorted(out, key=lambda m: m.id)

    async def unknown(self, limit: int) -> list[OutboxMessage]:
        o = t.outbox.c
        rows = await self._conn.execute(
            select(t.outbox).where(o.state == OutboxState.UNKNOWN.value).order_by(o.id).limit(limit)
        )
        return [_message(r) for r in rows]

    async def get(self, message_id: int) -> OutboxMessage | None:
        row = (await self._conn.execute(select(t.outbox).where(t.outbox.c.id == message_id))).first()
        return _message(row) if row else None

    async def counts(self) -> dict[str, int]:
        o = t.outbox.c
        rows = await self._conn.execute(select(o.state, func.count()).group_by(o.state))
        return {state: int(n) for state, n in rows}


class SqlAlertUnitOfWork(SqlUnitOfWork):
    """The ordinary unit of work plus the outbox, alert scans, acknowledgements and activity."""

    outbox: SqlOutbox
    scans: SqlAlertScans
    acknowledgements: SqlAcknowledgements
    activity: SqlActivity

    async def __aenter__(self) -> SqlAlertUnitOfWork:
        await super().__aenter__()
        conn = self._conn
        assert conn is not None
        self.outbox = SqlOutbox(conn)
        self.scans = SqlAlertScans(conn)
        self.acknowledgements = SqlAcknowledgements(conn)
        self.activity = SqlActivity(conn)
        return self


class SqlAlertStore:
    """Alert units of work on the same engine as `storage.database.Database` (pass `database.engine`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def unit_of_work(self) -> SqlAlertUnitOfWork:
        return SqlAlertUnitOfWork(self._engine)
