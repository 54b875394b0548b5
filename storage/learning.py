"""SQL implementation of core.learning.ports.LearningStore (learning_messages, learning_examples, imported
history in learning_import_batches and learning_imported_lines, learning_models); short transactions on the
shared engine."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    Text,
    delete,
    exists,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.learning.ports import MessageText, NewExample, Outcome, StoredModel
from storage import tables as t
from storage.bulk import CHUNK
from storage.repositories import READ_ONLY, prebuilt
from storage.staging import Progress, create_staging, drop_staging, fill_staging, staged, staging_table

_M = t.learning_messages
_X = t.learning_examples
_L = t.learning_models
_B = t.learning_import_batches
_I = t.learning_imported_lines
_CHUNK = 1000

# Staging for `add_history` on SQLite: the lines in file order with their positives (JSON text).
_LINES = staging_table(
    "kb_learn_lines", Column("n", Integer, primary_key=True), Column("text", Text), Column("positives", Text)
)
_COPY_COLUMNS = ["batch_id", "text", "positives", "created_at"]


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """[dimension, tag] pairs as JSON text."""
    return json.dumps([list(p) for p in pairs], ensure_ascii=False)


def _tag_pairs(document: str) -> list[tuple[str, str]]:
    """JSON text of [dimension, tag] pairs back as tuples."""
    return [(d, tag) for d, tag in json.loads(document)]


async def _new_batch(conn: AsyncConnection, tags: Sequence[tuple[str, str]], now: datetime) -> int:
    """Insert an import batch with the taxonomy's tags in order; its id."""
    stmt = _B.insert().values(created_at=now, tag_count=len(tags), tags=_pairs(tags)).returning(_B.c.id)
    return int((await conn.execute(stmt)).scalar_one())


async def _copy_lines(conn: AsyncConnection, records: Sequence[tuple[Any, ...]], progress: Progress | None) -> None:
    """COPY (batch_id, text, positives, created_at) records into learning_imported_lines (PostgreSQL)."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    for start in range(0, len(records), CHUNK):
        part = records[start : start + CHUNK]
        await driver.copy_records_to_table(_I.name, records=part, columns=_COPY_COLUMNS)
        if progress is not None:
            progress(len(part))


def _expand(
    out: list[NewExample], tags: Sequence[tuple[str, str]], lines: Iterable[tuple[str, str]], at: datetime
) -> None:
    """Append one imported example per (line, tag), positive iff the tag is among the line's positives."""
    imported = Outcome.IMPORTED
    for text, held in lines:
        positives = set(_tag_pairs(held)) if held != "[]" else set()
        out.extend(NewExample(text, d, tag, (d, tag) in positives, imported, None, at) for d, tag in tags)


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
        rows = [text_row(m) for m in messages]
        # The statement is built once and executed with the rows as parameters (a chat turn keeps one text).
        for start in range(0, len(rows), _CHUNK):
            await self._conn.execute(prebuilt(self._conn, _text_if_absent), rows[start : start + _CHUNK])


def text_row(m: MessageText) -> dict[str, Any]:
    """The `learning_messages` row keeping `m`."""
    return {
        "message_key": m.message_key,
        "channel": m.channel,
        "conversation_id": m.conversation_id,
        "customer_id": m.customer_id,
        "text": m.text,
        "created_at": m.created_at,
    }


def _text_if_absent(insert: Any) -> Any:
    return insert(_M).on_conflict_do_nothing(index_elements=["message_key"])


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

        Stored compactly (one batch row with `tags`, one row per line with its positives; `examples` expands
        them), all or nothing; `progress` hears of written lines. PostgreSQL: the lines are COPYed straight in,
        in the import's one transaction; SQLite: staged first, then one INSERT … SELECT under the write lock.
        """
        rows = [(text, _pairs(held)) for text, held in lines]
        async with staged(self._engine) as (conn, begin_merge):
            if conn.dialect.name == "postgresql":
                batch = await _new_batch(conn, tags, now)
                await _copy_lines(conn, [(batch, text, held, now) for text, held in rows], progress)
            else:
                await create_staging(conn, _LINES)
                await fill_staging(conn, _LINES, [(n, text, held) for n, (text, held) in enumerate(rows)], progress)
                await begin_merge()
                batch = await _new_batch(conn, tags, now)
                ln = _LINES.c
                source = select(literal(batch), ln.text, ln.positives, literal(now, _I.c.created_at.type)).order_by(
                    ln.n
                )
                await conn.execute(_I.insert().from_select(["batch_id", "text", "positives", "created_at"], source))
                await drop_staging(conn, _LINES)
        return len(lines) * len(tags)

    async def examples(self) -> list[NewExample]:
        """Every example, oldest first (decisions by creation, then id; each import batch expanded in file and
        tag order, before decisions of the same instant), so the latest decision on a text wins."""
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(**{READ_ONLY: True})
            result = await conn.execute(select(_X).order_by(_X.c.created_at, _X.c.id))
            stored = [
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
            batches = (await conn.execute(select(_B).order_by(_B.c.created_at, _B.c.id))).all()
            by_batch: dict[int, list[tuple[str, str]]] = {}
            if batches:
                result = await conn.execute(select(_I.c.batch_id, _I.c.text, _I.c.positives).order_by(_I.c.id))
                for batch_id, text, held in result:
                    by_batch.setdefault(batch_id, []).append((text, held))
        out: list[NewExample] = []
        taken = 0
        for batch in batches:
            m = batch._mapping
            while taken < len(stored) and stored[taken].created_at < m["created_at"]:
                out.append(stored[taken])
                taken += 1
            _expand(out, _tag_pairs(m["tags"]), by_batch.get(m["id"], ()), m["created_at"])
        out.extend(stored[taken:])
        return out

    async def count_examples(self, since: datetime | None = None) -> int:
        """Stored examples, imported lines counted once per tag of their batch."""
        rows = select(func.count()).select_from(_X)
        imported = select(func.coalesce(func.sum(_B.c.tag_count), 0)).select_from(_I.join(_B, _I.c.batch_id == _B.c.id))
        if since is not None:
            rows = rows.where(_X.c.created_at > since)
            imported = imported.where(_I.c.created_at > since)
        async with self._engine.connect() as conn:
            return int((await conn.execute(rows)).scalar_one()) + int((await conn.execute(imported)).scalar_one())

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
        """Delete examples (imported lines counted once per tag of their batch) and messages older than `before`."""
        old_lines = _I.c.created_at < before
        imported = select(func.coalesce(func.sum(_B.c.tag_count), 0)).select_from(_I.join(_B, _I.c.batch_id == _B.c.id))
        async with self._engine.begin() as conn:
            expanded = int((await conn.execute(imported.where(old_lines))).scalar_one())
            await conn.execute(delete(_I).where(old_lines))
            await conn.execute(delete(_B).where(~exists().where(_I.c.batch_id == _B.c.id)))
            examples = await conn.execute(delete(_X).where(_X.c.created_at < before))
            messages = await conn.execute(delete(_M).where(_M.c.created_at < before))
        return int(examples.rowcount) + expanded, int(messages.rowcount)  # type: ignore[attr-defined]

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
