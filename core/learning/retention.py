"""Retention of training data: examples and remembered texts older than the configured days are deleted."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.learning.ports import LearningStore


async def purge_expired(store: LearningStore, now: datetime, days: int) -> tuple[int, int]:
    """Delete examples and remembered messages older than `days`: (examples, messages) deleted."""
    return await store.purge(now - timedelta(days=days))


async def forget_customer(store: LearningStore, customer_id: int) -> tuple[int, int]:
    """Delete every example and remembered message of one customer: (examples, messages) deleted."""
    return await store.forget_customer(customer_id)
