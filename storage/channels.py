"""SQL implementation of the channel bookkeeping port (links, references, inbound de-duplication)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.channel_ports import ConversationLink, SavedReference
from storage import tables as t
from storage.database import READ_ONLY
from storage.repositories import _insert


class SqlChannelStore:
    """Short auto-committed statements; conflicts resolved with the dialect's ON CONFLICT."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim_inbound(self, channel: str, key: str, now: datetime) -> bool:
        async with self._engine.begin() as conn:
            stmt = (
                _insert(conn, t.inbound_dedup)
                .values(channel=channel, unique_key=key[:500], received_at=now)
                .on_conflict_do_nothing(index_elements=["channel", "unique_key"])
            )
            result = await conn.execute(stmt)
            return bool(result.rowcount)

    async def claim_inbound_many(self, channel: str, keys: Sequence[str], now: datetime) -> set[str]:
        """Claim several keys in one INSERT … ON CONFLICT DO NOTHING; returns the keys claimed first here."""
        unique = list(dict.fromkeys(key[:500] for key in keys))
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
        return {key for key in keys if key[:500] in claimed}

    async def release_inbound(self, channel: str, key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(t.inbound_dedup).where(
                    t.inbound_dedup.c.channel == channel, t.inbound_dedup.c.unique_key == key[:500]
                )
            )

    async def purge_inbound(self, older_than: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(t.inbound_dedup).where(t.inbound_dedup.c.received_at < older_than))
            return int(result.rowcount or 0)

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
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})  # a read: no SQLite write lock
            return await self._linked(conn, channel, conversation_id)

    async def save_reference(
        self, channel: str, user_key: str, reference: Mapping[str, Any], tenant_id: str | None, now: datetime
    ) -> None:
        async with self._engine.begin() as conn:
            values = {"reference": dict(reference), "tenant_id": tenant_id, "updated_at": now}
            stmt = _insert(conn, t.conversation_references).values(channel=channel, user_key=user_key, **values)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["channel", "user_key"], set_=values))

    async def reference(self, channel: str, user_key: str) -> SavedReference | None:
        async with self._engine.connect() as conn:
            await conn.execution_options(**{READ_ONLY: True})
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
