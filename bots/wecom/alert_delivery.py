"""Alert delivery through WeCom app messages (template cards), with WeCom's duplicate check on."""

from __future__ import annotations

import logging
from datetime import UTC, tzinfo

from bots.wecom.client import (
    BUSY_ERRCODES,
    DUPLICATE_CHECK_MAX_SECONDS,
    STALE_TOKEN_ERRCODES,
    WeComApiError,
    WeComClient,
)
from cards.present import alert_view_from_payload, rule_suggestion_view
from cards.wecom import alert_template_card, suggestion_template_card
from core.alerts.ports import Delivery, DeliveryOutcome, OutboxMessage
from core.alerts.selection import AlertNotice

log = logging.getLogger(__name__)

WECOM_CHANNEL = "wecom"


class WeComAlertDeliverer:
    """Sends the alert card to the recipient's WeCom userid.

    The message body depends only on the stored payload (times are shown relative to when the alert was
    raised, not to when it is sent), so a resend after a crash is byte-identical and WeCom's duplicate
    check drops it: `resend_is_safe`.
    """

    channel = WECOM_CHANNEL
    resend_is_safe = True

    def __init__(
        self, client: WeComClient, duplicate_check_interval: int = DUPLICATE_CHECK_MAX_SECONDS, tz: tzinfo = UTC
    ) -> None:
        self._client = client
        self._interval = duplicate_check_interval
        self._tz = tz  # KEBIAO_TIMEZONE: the zone the card's times are shown in

    async def deliver(self, message: OutboxMessage) -> Delivery:
        view = alert_view_from_payload(message)
        task_id = f"kebiao-alert-{message.id}"
        notice = AlertNotice.from_payload(message.payload)
        # A rule's suggestion goes out with Accept / Reject buttons (as in Teams), else the alert card.
        card = (suggestion_template_card(rule_suggestion_view(notice), task_id) if notice.suggestions else None) or (
            alert_template_card(view, view.raised_at.astimezone(self._tz), task_id=task_id)
        )
        payload = {"touser": message.recipient, "msgtype": "template_card", "template_card": card}
        try:
            answer = await self._client.send_message(
                payload, enable_duplicate_check=True, duplicate_check_interval=self._interval
            )
        except WeComApiError as exc:
            if exc.errcode in BUSY_ERRCODES or exc.errcode in STALE_TOKEN_ERRCODES:
                # A token that went stale again right after the client's refresh (another replica, or WeCom
                # revoking it early) is not this alert's fault: it goes out at the next attempt.
                return Delivery(DeliveryOutcome.RETRY, str(exc))
            return Delivery(DeliveryOutcome.PERMANENT, str(exc))
        except ValueError as exc:  # e.g. WECOM_AGENT_ID unset: configuration, not a transient fault
            return Delivery(DeliveryOutcome.PERMANENT, f"WeCom is not fully configured: {exc}")
        invalid = str(answer.get("invaliduser") or "").split("|")
        if message.recipient in invalid:
            return Delivery(DeliveryOutcome.PERMANENT, f"WeCom does not know user {message.recipient!r} (invaliduser)")
        return Delivery(DeliveryOutcome.SENT, external_id=str(answer.get("msgid", "")))
