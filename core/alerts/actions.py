"""What a manager does with an alert card: acknowledge it, or snooze its rule for the customer for 7 days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from core.alerts.ports import AcknowledgementRepository, AlertStore
from core.alerts.selection import EXPIRY_RULE, AlertNotice
from core.errors import NotAllowedError, NotFoundError
from core.types import Assignment, Customer

SNOOZE_DAYS = 7
Action = Literal["ack", "snooze"]


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """An alert as the card shows it after an action: the notice and who handled it."""

    alert_id: int
    notice: AlertNotice
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None


async def act_on_alert(
    store: AlertStore, alert_id: int, user_id: str, action: Action, now: datetime, days: int = SNOOZE_DAYS
) -> AlertStatus:
    """Store the acknowledgement or snooze; the jobs skip that alert (or rule) for the user from then on.

    Only the alert's recipient may act on it (the id comes from a card anyone could forward).
    """
    if action not in ("ack", "snooze"):
        raise ValueError(f"unknown alert action {action!r}; use ack or snooze")
    if not 1 <= days <= 90:
        raise ValueError(f"snooze days must be between 1 and 90, got {days}")
    async with store.unit_of_work() as uow:
        message = await uow.outbox.get(alert_id)
        if message is None or "alert_key" not in message.payload:
            raise NotFoundError(f"alert {alert_id} does not exist")
        if message.recipient != user_id:
            raise NotAllowedError(f"alert {alert_id} was sent to someone else; only its recipient can handle it")
        notice = AlertNotice.from_payload(message.payload)
        if action == "ack":
            await uow.acknowledgements.record(notice.alert_key, user_id, "ack", None, now)
            return AlertStatus(alert_id, notice, acknowledged_by=user_id, acknowledged_at=now)
        until = now + timedelta(days=days)
        await uow.acknowledgements.record(notice.snooze_key, user_id, "snooze", until, now)
        return AlertStatus(alert_id, notice, snoozed_until=until)


@dataclass(frozen=True, slots=True)
class DigestContents:
    """An expiry digest with its handling state, every tag it covers and those tags' customers."""

    status: AlertStatus
    assignments: tuple[Assignment, ...]
    customers: dict[int, Customer]


async def digest_contents(store: AlertStore, alert_id: int, user_id: str, now: datetime) -> DigestContents:
    """Every tag an expiry digest covers (listed on its card or only counted), for the digest's recipient."""
    async with store.unit_of_work() as uow:
        message = await uow.outbox.get(alert_id)
        if message is None or "alert_key" not in message.payload:
            raise NotFoundError(f"alert {alert_id} does not exist")
        if message.recipient != user_id:
            raise NotAllowedError(f"alert {alert_id} was sent to someone else; only its recipient can open it")
        notice = AlertNotice.from_payload(message.payload)
        if notice.rule != EXPIRY_RULE:
            raise NotFoundError(f"alert {alert_id} is not an expiry digest")
        assignments = await uow.assignments.get_many(notice.assignment_ids)
        customers = await uow.customers.get_many(sorted({a.customer_id for a in assignments}))
        status = await _status(uow.acknowledgements, alert_id, notice, user_id, now)
    return DigestContents(status, tuple(assignments), {c.id: c for c in customers})


async def _status(
    acks: AcknowledgementRepository, alert_id: int, notice: AlertNotice, user_id: str, now: datetime
) -> AlertStatus:
    """The alert as its recipient left it: acknowledged, snoozed (still in force) or open."""
    acked = await acks.get(notice.alert_key, user_id)
    if acked is not None and acked[0] == "ack":
        return AlertStatus(alert_id, notice, acknowledged_by=user_id, acknowledged_at=acked[2])
    snoozed = await acks.get(notice.snooze_key, user_id)
    if snoozed is not None and snoozed[0] == "snooze" and snoozed[1] is not None and snoozed[1] > now:
        return AlertStatus(alert_id, notice, snoozed_until=snoozed[1])
    return AlertStatus(alert_id, notice)
