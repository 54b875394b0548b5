"""What a manager does with an alert card: acknowledge it, or snooze its rule for the customer for 7 days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from core.alerts.ports import AlertStore
from core.alerts.selection import AlertNotice
from core.errors import NotAllowedError, NotFoundError

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
