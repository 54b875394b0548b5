"""Alert delivery into a manager's stored Teams conversation through TeamsNotifier."""

from __future__ import annotations

import json
import logging
from datetime import UTC, tzinfo

from bots.teams.bot import CHANNEL as BOT_CHANNEL
from bots.teams.notifier import TEAMS_CHANNEL, DeliveryStatus, TeamsNotifier
from bots.teams.references import InvalidReference, StoredReference
from cards.alert import build_alert_card
from cards.present import alert_view_from_payload, rule_suggestion_card
from core.alerts.ports import Delivery, DeliveryOutcome, OutboxMessage
from core.alerts.selection import AlertNotice
from core.chat.ports import ChannelStore, SavedReference

log = logging.getLogger(__name__)


def stored_reference(saved: SavedReference) -> StoredReference:
    """The notifier's reference from the stored row (a serialised ConversationReference)."""
    data = dict(saved.reference)
    if "reference_json" in data:  # stored in StoredReference's own shape
        return StoredReference(
            key=saved.user_key,
            reference_json=str(data["reference_json"]),
            tenant_id=str(data.get("tenant_id") or saved.tenant_id or ""),
            service_url=str(data.get("service_url") or ""),
            user_aad_id=str(data.get("user_aad_id") or ""),
        )
    return StoredReference(
        key=saved.user_key,
        reference_json=json.dumps(data, ensure_ascii=False, sort_keys=True),
        tenant_id=saved.tenant_id or "",
        service_url=str(data.get("serviceUrl") or data.get("service_url") or ""),
    )


class TeamsAlertDeliverer:
    """Sends the alert card into the recipient's stored 1:1 conversation.

    Teams has no duplicate check, so a send whose outcome is unknown is never repeated (`resend_is_safe`
    is False): the row stays `unknown` for a person to look at instead of risking a second card.
    """

    channel = TEAMS_CHANNEL
    resend_is_safe = False

    def __init__(self, notifier: TeamsNotifier, references: ChannelStore, tz: tzinfo = UTC) -> None:
        self._notifier = notifier
        self._references = references
        self._tz = tz  # KEBIAO_TIMEZONE: the zone the card's times are shown in

    async def deliver(self, message: OutboxMessage) -> Delivery:
        saved = await self._references.reference(TEAMS_CHANNEL, message.recipient)
        if saved is None:  # the bot keeps a user's 1:1 address under its own channel name
            saved = await self._references.reference(BOT_CHANNEL, message.recipient)
        if saved is None:
            return Delivery(
                DeliveryOutcome.PERMANENT,
                f"no Teams conversation stored for {message.recipient}: they must install the app or message "
                "the bot once",
            )
        try:
            reference = stored_reference(saved)
        except InvalidReference as exc:
            return Delivery(DeliveryOutcome.PERMANENT, str(exc))
        view = alert_view_from_payload(message)
        notice = AlertNotice.from_payload(message.payload)
        shown_at = view.raised_at.astimezone(self._tz)
        # A rule's suggestion goes out as the suggestion card (its Accept / Reject decide it), else the alert card.
        built = rule_suggestion_card(notice, shown_at) if notice.suggestions else build_alert_card(view, shown_at)
        result = await self._notifier.send_card(reference, built)
        if result.status is DeliveryStatus.DELIVERED:
            return Delivery(DeliveryOutcome.SENT, external_id=result.activity_id)
        if result.status is DeliveryStatus.RETRY_LATER:
            return Delivery(DeliveryOutcome.RETRY, result.reason)
        return Delivery(DeliveryOutcome.PERMANENT, result.reason)
