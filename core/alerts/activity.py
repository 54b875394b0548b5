"""Customer activity the churn signals read: the last conversation, and a customer deleting their agent."""

from __future__ import annotations

from datetime import datetime

from core.alerts.ports import AlertStore


async def note_message(store: AlertStore, customer_id: int, channel: str, now: datetime) -> None:
    """Record that the customer talked with us (feeds 'no conversation for N days')."""
    async with store.unit_of_work() as uow:
        await uow.activity.record_message(customer_id, channel, now)


async def note_agent_removed(store: AlertStore, customer_id: int, agent: str, now: datetime) -> None:
    """Record that the customer deleted their agent in WeCom (del_follow_user)."""
    async with store.unit_of_work() as uow:
        await uow.activity.record_agent_removed(customer_id, agent, now)
