"""SQL implementation of core.learning.ports.LearningStore (learning_messages, learning_examples,
learning_models); short transactions on the shared engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    delete,
    exists,
    func,
    literal,
    null,
    select,
    true,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.learning.ports import MessageText, NewExample, Outcome, StoredModel
from storage import tables as t
from storage.repositories import READ_ONLY, _insert
from storage.staging import Progress, create_staging, drop_staging, fill_staging, staged, staging_table

_M = t.learning_messages
_X = t.learning_examples
_L = t.learning_models
_CHUNK = 1000

# Staging for `add_history`: the lines, the taxonomy's tags (in order) and each line's positives.
_LINES = staging_table("kb_learn_lines", Column("n", Integer, primary_key=True), Column("text", Text))
_TAGS = staging_table("kb_learn_tags", Column("ord", Integer), Column("dimension", String), Column("tag", String))
_POSITIVE = staging_table(
    "kb_learn_positive",
    Column("n", Integer),
    Column("dimension", String),
    Column("tag", String),
    PrimaryKeyConstraint("n", "dimension", "tag"),
)


def _message(row: Row[Any]) -> MessageText:
    m = row._mapping
    return MessageText(
        m["message_key"], m["channel"], m["conversation_id"], m["customer_id"], m["text"], m["created_at"]
    )


class SqlMessageTexts:
    """Remembered message texts inside a caller's transaction (a chat turn keeps its text with its suggestions)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def remember(self, messages: Sequence[MessageText]) -> None:
        """Keep each text unless its message key is kept already."""
        rows = [
            {
                "message_key": m.message_key,
                "channel": m.channel,
                "conversation_id": m.conversation_id,
                "customer_id": m.customer_id,
                "text": m.text,
                "created_at": m.created_at,
            }
            for m in messages
        ]
        for start in range(0, len(rows), _CHUNK):
            stmt = _insert(self._conn, _M).values(rows[start : start + _CHUNK])
            await self._conn.execute(stmt.on_conflict_do_nothing(index_elements=["message_key"]))


class SqlLearningStore:
    """Each method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def remember_messages(self, messages: Sequence[MessageText]) -> None:
        async with self._engine.begin() as conn:
            await SqlMessageTexts(conn).remember(messages)

    async def message_text(self, message_key: str) -> MessageText | None:
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READ_ONLY: True})
            row = (await conn.execute(select(_M).where(_M.c.message_key == message_key))).first()
        return _message(row) if row is not None else None

    async def last_message(self, channel: str, conversation_id: str, since: datetime) -> MessageText | None:
        stmt = (
            select(_M)
            .where(_M.c.channel == channel, _M.c.conversation_id == conversation_id, _M.c.created_at >= since)
            .order_by(_M.c.created_at.desc(), _M.c.id.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READ_ONLY: True})
            row = (await conn.execute(stmt)).first()
        return _message(row) if row is not None else None

    async def add_examples(self, examples: Sequence[NewExample]) -> int:
        rows = [
            {
                "text": e.text,
                "dimension": e.dimension,
                "tag": e.tag,
                "positive": e.positive,
                "outcome": e.outcome.value,
                "customer_id": e.customer_id,
                "message_key": e.message_key,
                "created_at": e.created_at,
            }
            for e in examples
        ]
        async with self._engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                await conn.execute(_X.insert(), rows[start : start + _CHUNK])
        return len(rows)

    async def add_history(
        self,
        lines: Sequence[tuple[str, Sequence[tuple[str, str]]]],
        tags: Sequence[tuple[str, str]],
        now: datetime,
        progress: Progress | None = None,
    ) -> int:
        """One imported example per (line, tag): positive for the line's tags, negative for the rest.

        The lines are staged, then one INSERT … SELECT over lines × tags writes every example (in line, then
        tag order), all or nothing; `progress` hears of staged lines.
        """
        async with staged(self._engine) as (conn, begin_merge):
            for table in (_LINES, _TAGS, _POSITIVE):
                await create_staging(conn, table)
            await fill_staging(conn, _TAGS, [(i, d, tag) for i, (d, tag) in enumerate(tags)])
            await fill_staging(conn, _POSITIVE, [(n, d, tag) for n, (_, held) in enumerate(lines) for d, tag in held])
            await fill_staging(conn, _LINES, [(n, text) for n, (text, _) in enumerate(lines)], progress)
            await begin_merge()
            if conn.dialect.name == "postgresql":
                # With the staged tables' statistics the planner walks the lines in order through their key and
                # sorts only each line's few tags (an incremental sort) instead of sorting lines × tags on disk;
                # compiling this one statement to machine code (JIT) costs more than it saves.
                await conn.exec_driver_sql(f"ANALYZE {_LINES.name}, {_TAGS.name}, {_POSITIVE.name}")
                await conn.exec_driver_sql("SET LOCAL jit = off")
            ln, tg, pos = _LINES.c, _TAGS.c, _POSITIVE.c
            positive = exists().where(pos.n == ln.n, pos.dimension == tg.dimension, pos.tag == tg.tag)
            rows = (
                select(
                    ln.text,
                    tg.dimension,
                    tg.tag,
                    positive,
                    literal(Outcome.IMPORTED.value),
                    null(),
                    null(),
                    literal(now, _X.c.created_at.type),
                )
                .select_from(_LINES.join(_TAGS, true()))
                .order_by(ln.n, tg.ord)
            )
            columns = ["text", "dimension", "tag", "positive", "outcome", "customer_id", "message_key", "created_at"]
            await conn.execute(_X.insert().from_select(columns, rows))
            await drop_staging(conn, _LINES, _TAGS, _POSITIVE)
        return len(lines) * len(tags)

    async def examples(self) -> list[NewExample]:
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READ_ONLY: True})
            result = await conn.execute(select(_X).order_by(_X.c.id))
            return [
                NewExample(
                    m["text"],
                    m["dimension"],
                    m["tag"],
                    bool(m["positive"]),
                    Outcome(m["outcome"]),
                    m["customer_id"],
                    m["created_at"],
                    m["message_key"],
                )
                for m in (row._mapping for row in result)
            ]

    async def count_examples(self, since: datetime | None = None) -> int:
        stmt = select(func.count()).select_from(_X)
        if since is not None:
            stmt = stmt.where(_X.c.created_at > since)
        async with self._engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def unlabelled_texts(self, limit: int) -> list[str]:
        labelled = select(_X.c.message_key).where(_X.c.message_key.is_not(None))
        stmt = select(_M.c.text).where(_M.c.message_key.not_in(labelled)).order_by(_M.c.created_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [row[0] for row in await conn.execute(stmt)]

    async def forget_customer(self, customer_id: int) -> tuple[int, int]:
        async with self._engine.begin() as conn:
            examples = await conn.execute(delete(_X).where(_X.c.customer_id == customer_id))
            messages = await conn.execute(delete(_M).where(_M.c.customer_id == customer_id))
        return int(examples.rowcount), int(messages.rowcount)  # type: ignore[attr-defined]

    async def purge(self, before: datetime) -> tuple[int, int]:
        async with self._engine.begin() as conn:
            examples = await conn.execute(delete(_X).where(_X.c.created_at < before))
            messages = await conn.execute(delete(_M).where(_M.c.created_at < before))
        return int(examples.rowcount), int(messages.rowcount)  # type: ignore[attr-defined]

    async def save_model(
        self, meta: Mapping[str, Any], arrays: bytes, metrics: Sequence[Mapping[str, Any]], size: int, now: datetime
    ) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                _L.insert()
                .values(created_at=now, training_size=size, metrics=list(metrics), meta=dict(meta), arrays=arrays)
                .returning(_L.c.id)
            )
            return int(result.scalar_one())

    async def latest_model(self, with_arrays: bool = True) -> StoredModel | None:
        columns = [_L.c.id, _L.c.created_at, _L.c.training_size, _L.c.metrics, _L.c.meta]
        if with_arrays:
            columns.append(_L.c.arrays)
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READ_ONLY: True})
            row = (await conn.execute(select(*columns).order_by(_L.c.id.desc()).limit(1))).first()
        if row is None:
            return None
        m = row._mapping
        arrays = bytes(m["arrays"]) if with_arrays else None
        return StoredModel(m["id"], m["created_at"], m["training_size"], m["metrics"], m["meta"], arrays)

    async def latest_model_version(self) -> int | None:
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READ_ONLY: True})  # a poll: never queue at SQLite's writer
            value = (await conn.execute(select(func.max(_L.c.id)))).scalar_one()
        return int(value) if value is not None else None
