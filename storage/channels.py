"""SQL implementation of the channel bookkeeping port (links, references, inbound de-duplication, inbox)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, String, bindparam, delete, func, null, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.ext.asyncio import AsyncEngine

from core.chat.ports import ConversationLink, InboundLease, InboundMessage, SavedReference
from storage import tables as t
from storage.database import one_read, one_statement
from storage.prepared import Build, Step, execute_direct, insert_step, prepared, write_at_once
from storage.repositories import _insert
from storage.tables import UtcDateTime

KEY_CHARS = 500  # inbound_dedup.unique_key and inbound_messages.dedupe_key
HASH_PREFIX = "sha256:"
ERROR_CHARS = 1000
_M = t.inbound_messages
_D = t.inbound_dedup


def _take_leases(insert: Any) -> Any:
    """SQLite: INSERT … ON CONFLICT DO UPDATE … WHERE lapsed … RETURNING, for one claim.

    The row's received_at is the claim's `now`, so `excluded.received_at` is the moment a lease must have
    lapsed by: every value is a parameter of the row, and the statement is built and compiled once.
    """
    return _unless_held(insert(_D), lapsed_only=True)


def _holder_gone() -> Any:
    """PostgreSQL: whether the process named by a lease's holder is gone: its session lock is free (the shared
    lock taken to find out goes with the statement's transaction). NULL for a lease without a holder."""
    return func.pg_try_advisory_xact_lock_shared(_D.c.holder, type_=Boolean)


def _unless_held(stmt: Any, *, lapsed_only: bool) -> Any:
    """`stmt`, an INSERT of leases, taking over only a stored lease that lapsed before the row's received_at
    or (PostgreSQL) whose holder is gone, never a finished one (NULL), and RETURNING the keys it took."""
    lapsed = _D.c.lease_until < stmt.excluded.received_at
    return stmt.on_conflict_do_update(
        index_elements=["channel", "unique_key"],
        set_={"lease_until": stmt.excluded.lease_until, "holder": stmt.excluded.holder},
        where=_D.c.lease_until.is_not(None) & (lapsed if lapsed_only else lapsed | _holder_gone()),
    ).returning(_D.c.unique_key)


# The turn-lease statements, built once (the claims' and finishes' through storage.prepared): a statement built per
# call costs more CPU than its round trip on SQLite (and a .values(list) INSERT is compiled anew every time).
_KEYS = _D.c.unique_key.in_(bindparam("keys", expanding=True))
_RENEW_LEASES = (
    update(_D)
    .where(_D.c.channel == bindparam("ch"), _KEYS, _D.c.lease_until.is_not(None))
    .values(lease_until=bindparam("until"), holder=bindparam("holder", type_=BigInteger))
)
_WHICH = (_D.c.channel == bindparam("ch"), _D.c.unique_key == bindparam("key"))
_LEASE = select(_D.c.lease_until).where(*_WHICH)
_LEASE_AND_HOLDER = select(_D.c.lease_until, _holder_gone().label("gone")).where(*_WHICH)
_RELEASE = delete(_D).where(*_WHICH)


def _take_all(insert: Any) -> Any:
    """PostgreSQL: the claims as one upsert over an array of keys, one statement text for any number of them
    (as `_take_leases`; the take's `now` is every row's received_at)."""
    keys = func.unnest(bindparam("keys", type_=ARRAY(String)))
    now, until = bindparam("now", type_=UtcDateTime), bindparam("until", type_=UtcDateTime)
    claims = select(bindparam("ch", type_=String), keys, now, until, bindparam("holder", type_=BigInteger))
    columns = ["channel", "unique_key", "received_at", "lease_until", "holder"]
    return _unless_held(insert(_D).from_select(columns, claims), lapsed_only=False)


FINISH_MOST = 64  # keys per finishing UPDATE


@functools.cache
def _finish_keys(count: int) -> Build:
    """An UPDATE finishing `count` keys (a power of two up to FINISH_MOST), `key_0` … as parameters.

    An IN list of parameters, as SQLAlchemy's expanding IN renders it (on PostgreSQL an `= ANY(array)` plan made
    while the table was small kept filtering every row of the channel as it grew); sizes are rounded up to a
    power of two so that a connection prepares a handful of statements, not one per batch size.
    """
    keys = _D.c.unique_key.in_([bindparam(f"key_{i}", type_=String) for i in range(count)])
    statement = update(_D).where(_D.c.channel == bindparam("ch"), keys).values(lease_until=null())
    return lambda _insert: statement


def _finish_steps(dialect: Dialect, channel: str, keys: Sequence[str]) -> list[Step]:
    """UPDATEs finishing `keys`, FINISH_MOST at most each, an IN list padded with its last key."""
    steps: list[Step] = []
    for start in range(0, len(keys), FINISH_MOST):
        chunk = list(keys[start : start + FINISH_MOST])
        size = 1 << (len(chunk) - 1).bit_length()
        chunk += chunk[-1:] * (size - len(chunk))  # a key twice in an IN list is the same key
        values = {"ch": channel, **{f"key_{i}": key for i, key in enumerate(chunk)}}
        steps.append((prepared(dialect, _finish_keys(size)), values))
    return steps


def stored_key(key: str) -> str:
    """The key as stored: itself when it fits the column, else a stable sha256 (never a colliding prefix)."""
    if len(key) <= KEY_CHARS:
        return key
    return HASH_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _message(row: Row[Any]) -> InboundMessage:
    m = row._mapping
    return InboundMessage(
        id=m["id"],
        channel=m["channel"],
        dedupe_key=m["dedupe_key"],
        body=m["body"],
        received_at=m["received_at"],
        state=m["state"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        last_error=m["last_error"],
    )


class SqlChannelStore:
    """Short auto-committed statements; conflicts resolved with the dialect's ON CONFLICT.

    `holder`: this process's lease-holder id now (storage.lease_holder), written beside the leases it takes and
    renews on PostgreSQL; None (the default, and always on SQLite): its leases can only lapse.
    """

    def __init__(self, engine: AsyncEngine, holder: Callable[[], int | None] = lambda: None) -> None:
        self._engine = engine
        self._holder = holder

    async def claim_inbound(self, channel: str, key: str, now: datetime) -> bool:
        async with self._engine.begin() as conn:
            stmt = (
                _insert(conn, t.inbound_dedup)
                .values(channel=channel, unique_key=stored_key(key), received_at=now)
                .on_conflict_do_nothing(index_elements=["channel", "unique_key"])
            )
            result = await conn.execute(stmt)
            return bool(result.rowcount)

    async def claim_inbound_many(self, channel: str, keys: Sequence[str], now: datetime) -> set[str]:
        """Claim several keys in one INSERT … ON CONFLICT DO NOTHING; returns the keys claimed first here."""
        unique = list(dict.fromkeys(stored_key(key) for key in keys))
        if not unique:
            return set()
        async with self._engine.begin() as conn:
            stmt = (
                _insert(conn, t.inbound_dedup)
                .values([{"channel": channel, "unique_key": key, "received_at": now} for key in unique])
                .on_conflict_do_nothing(index_elements=["channel", "unique_key"])
                .returning(t.inbound_dedup.c.unique_key)
            )
            claimed = {row[0] for row in await conn.execute(stmt)}
        return {key for key in keys if stored_key(key) in claimed}

    async def settle_leases(
        self, channel: str, take: Sequence[str], now: datetime, until: datetime, finish: Sequence[str]
    ) -> set[str]:
        """One UPDATE for the finished keys, one INSERT … ON CONFLICT DO UPDATE … WHERE lapsed … RETURNING."""
        finished = sorted({stored_key(key) for key in finish})
        # One row per key: PostgreSQL refuses an upsert that would touch the same row twice. A claim of a key
        # this batch finishes is a duplicate (its turn just ended here): it is not taken, and not sent.
        wanted = sorted({stored_key(key) for key in take} - set(finished))
        if not finished and not wanted:
            return set()
        # The finished keys and the claims commit together (a finished turn hands its slot to a claim).
        if self._engine.dialect.name == "postgresql":
            taken = await self._settle_in_statements(channel, finished, wanted, now, until)
        else:
            taken = await self._settle_in_one_trip(channel, finished, wanted, now, until)
        return {key for key in take if stored_key(key) in taken}

    async def _settle_in_statements(
        self, channel: str, finished: list[str], wanted: list[str], now: datetime, until: datetime
    ) -> set[str]:
        """PostgreSQL: an UPDATE for the finished keys, one upsert for the claims, sent to asyncpg directly.

        Either statement alone is atomic: no BEGIN and COMMIT round trips for it; both are one transaction.
        (One statement for both, an UPDATE … = ANY(array) in a CTE, was tried: a plan made while the table was
        small kept filtering every row of the channel as it grew.)
        """
        dialect = self._engine.dialect
        steps = _finish_steps(dialect, channel, finished)
        if wanted:
            values = {"ch": channel, "keys": wanted, "now": now, "until": until, "holder": self._holder()}
            steps.append((prepared(dialect, _take_all), values))
        async with self._engine.connect() as conn:
            results = await execute_direct(conn, steps)
        return {str(row["unique_key"]) for row in results[-1]} if wanted else set()

    async def _settle_in_one_trip(
        self, channel: str, finished: list[str], wanted: list[str], now: datetime, until: datetime
    ) -> set[str]:
        """SQLite: the finishing UPDATEs, then an upsert per claim, as one write transaction in one trip."""
        dialect = self._engine.dialect
        steps = _finish_steps(dialect, channel, finished)
        finishing = len(steps)
        rows = [{"channel": channel, "unique_key": k, "received_at": now, "lease_until": until} for k in wanted]
        steps += [insert_step(dialect, _take_leases, row) for row in rows]
        async with self._engine.connect() as conn:
            results = await write_at_once(conn, steps)
        return {str(row["unique_key"]) for rows in results[finishing:] for row in rows}

    async def inbound_lease(self, channel: str, key: str) -> InboundLease | None:
        postgres = self._engine.dialect.name == "postgresql"
        async with one_read(self._engine) as conn:  # the holder's lock is tried and let go within the statement
            statement = _LEASE_AND_HOLDER if postgres else _LEASE
            row = (await conn.execute(statement, {"ch": channel, "key": stored_key(key)})).first()
        if row is None:
            return None
        return InboundLease(row.lease_until, holder_gone=bool(postgres and row.lease_until is not None and row.gone))

    async def renew_inbound(self, channel: str, keys: Sequence[str], until: datetime) -> None:
        stored = sorted({stored_key(key) for key in keys})
        if not stored:
            return
        async with one_statement(self._engine) as conn:
            await conn.execute(_RENEW_LEASES, {"ch": channel, "keys": stored, "until": until, "holder": self._holder()})

    async def release_inbound(self, channel: str, key: str) -> None:
        async with one_statement(self._engine) as conn:
            await conn.execute(_RELEASE, {"ch": channel, "key": stored_key(key)})

    async def purge_inbound(self, older_than: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(t.inbound_dedup).where(t.inbound_dedup.c.received_at < older_than))
            # Done inbox rows only: pending ones still have work to do, failed ones wait for a person.
            done = await conn.execute(delete(_M).where(_M.c.state == "done", _M.c.received_at < older_than))
            return int(result.rowcount or 0) + int(done.rowcount or 0)

    # ------------------------------------------------------------------ durable inbox

    async def accept_inbound_many(
        self, channel: str, items: Sequence[tuple[str, str]], now: datetime, lease_until: datetime
    ) -> dict[str, int]:
        """One INSERT … ON CONFLICT DO NOTHING RETURNING for the whole batch: the row is the claim."""
        rows: dict[str, dict[str, Any]] = {}
        for key, body in items:
            rows.setdefault(
                stored_key(key),
                {
                    "channel": channel,
                    "dedupe_key": stored_key(key),
                    "body": body,
                    "received_at": now,
                    "state": "pending",
                    "attempts": 1,
                    "next_attempt_at": lease_until,
                    "updated_at": now,
                },
            )
        if not rows:
            return {}
        async with self._engine.begin() as conn:
            # executemany + RETURNING: sent as one multi-row INSERT ("insertmanyvalues"), and the statement is
            # compiled once and cached — a .values(list) statement is rebuilt and compiled on every flush.
            stmt = (
                _insert(conn, _M)
                .on_conflict_do_nothing(index_elements=["channel", "dedupe_key"])
                .returning(_M.c.dedupe_key, _M.c.id)
            )
            stored = {str(k): int(i) for k, i in await conn.execute(stmt, list(rows.values()))}
        return {key: stored[stored_key(key)] for key, _ in items if stored_key(key) in stored}

    async def claim_inbound_due(
        self, channel: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[InboundMessage]:
        m = _M.c
        due = (
            select(m.id)
            .where(m.channel == channel, m.state == "pending", m.next_attempt_at <= now)
            .order_by(m.next_attempt_at, m.id)
            .limit(limit)
        )
        lease = {"attempts": m.attempts + 1, "next_attempt_at": lease_until, "updated_at": now}
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Rows another replica holds are skipped, not waited for; a CTE so the lock query runs once.
                locked = due.with_for_update(skip_locked=True).cte("due")
                stmt = (
                    update(_M)
                    .where(m.id == locked.c.id, m.state == "pending", m.next_attempt_at <= now)
                    .values(**lease)
                    .returning(_M)
                )
            else:
                # SQLite: the transaction began IMMEDIATE (the write lock), so select-and-update is atomic.
                stmt = update(_M).where(m.id.in_(due.scalar_subquery())).values(**lease).returning(_M)
            rows = (await conn.execute(stmt)).all()
        return sorted((_message(r) for r in rows), key=lambda r: r.id)

    async def finish_inbound(self, message_id: int, now: datetime) -> None:
        await self._set(message_id, state="done", updated_at=now)

    async def finish_inbound_many(self, message_ids: Sequence[int], now: datetime) -> None:
        """Mark several rows done in one UPDATE (handlers finishing together share one write)."""
        ids = sorted(set(message_ids))
        if not ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(update(_M).where(_M.c.id.in_(ids)).values(state="done", updated_at=now))

    async def retry_inbound(self, message_id: int, now: datetime, next_attempt_at: datetime, error: str) -> None:
        await self._set(
            message_id, state="pending", next_attempt_at=next_attempt_at, last_error=error[:ERROR_CHARS], updated_at=now
        )

    async def fail_inbound(self, message_id: int, now: datetime, error: str) -> None:
        await self._set(message_id, state="failed", last_error=error[:ERROR_CHARS], updated_at=now)

    async def release_inbound_leases(self, message_ids: Sequence[int], now: datetime) -> None:
        if not message_ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(_M)
                .where(_M.c.id.in_(list(message_ids)), _M.c.state == "pending")
                .values(next_attempt_at=now, updated_at=now)
            )

    async def inbound_message(self, channel: str, key: str) -> InboundMessage | None:
        async with one_read(self._engine) as conn:
            row = (
                await conn.execute(select(_M).where(_M.c.channel == channel, _M.c.dedupe_key == stored_key(key)))
            ).first()
        return None if row is None else _message(row)

    async def _set(self, message_id: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(_M).where(_M.c.id == message_id).values(**values))

    async def link(self, channel: str, conversation_id: str, customer_id: int, by: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            stmt = _insert(conn, t.conversation_links).values(
                channel=channel, conversation_id=conversation_id, customer_id=customer_id, linked_by=by, linked_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["channel", "conversation_id"],
                set_={"customer_id": customer_id, "linked_by": by, "linked_at": now},
            )
            await conn.execute(stmt)

    async def unlink(self, channel: str, conversation_id: str) -> ConversationLink | None:
        async with self._engine.begin() as conn:
            existing = await self._linked(conn, channel, conversation_id)
            if existing is not None:
                await conn.execute(
                    delete(t.conversation_links).where(
                        t.conversation_links.c.channel == channel,
                        t.conversation_links.c.conversation_id == conversation_id,
                    )
                )
            return existing

    async def linked(self, channel: str, conversation_id: str) -> ConversationLink | None:
        async with one_read(self._engine) as conn:  # one SELECT: no transaction on PostgreSQL
            return await self._linked(conn, channel, conversation_id)

    async def save_reference(
        self, channel: str, user_key: str, reference: Mapping[str, Any], tenant_id: str | None, now: datetime
    ) -> None:
        async with self._engine.begin() as conn:
            values = {"reference": dict(reference), "tenant_id": tenant_id, "updated_at": now}
            stmt = _insert(conn, t.conversation_references).values(channel=channel, user_key=user_key, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["channel", "user_key"], set_=values))

    async def reference(self, channel: str, user_key: str) -> SavedReference | None:
        async with one_read(self._engine) as conn:
            row = (
                await conn.execute(
                    select(t.conversation_references).where(
                        t.conversation_references.c.channel == channel,
                        t.conversation_references.c.user_key == user_key,
                    )
                )
            ).first()
        if row is None:
            return None
        return SavedReference(row.channel, row.user_key, row.reference, row.tenant_id, row.updated_at)

    @staticmethod
    async def _linked(conn: Any, channel: str, conversation_id: str) -> ConversationLink | None:
        row = (
            await conn.execute(
                select(t.conversation_links).where(
                    t.conversation_links.c.channel == channel,
                    t.conversation_links.c.conversation_id == conversation_id,
                )
            )
        ).first()
        if row is None:
            return None
        return ConversationLink(row.channel, row.conversation_id, row.customer_id, row.linked_by, row.linked_at)
