"""What the product records about customers by itself, as customer events, with the rules they trigger."""

from __future__ import annotations

import logging
from datetime import datetime

from core.rules.ingest import own_event, own_event_id, record_event
from core.rules.ports import NewCustomerEvent
from core.rules.service import RuleContext, run_for_events, run_for_message

log = logging.getLogger(__name__)


class RuleHooks:
    """Chat and WeCom report here: a customer message (message rules + a `message` event), a suggestion decision
    (`suggestion_accepted` / `suggestion_rejected`), a WeCom contact added or deleted. Failures are logged only."""

    def __init__(self, ctx: RuleContext) -> None:
        self._ctx = ctx

    async def message(
        self, customer_id: int, message_key: str, channel: str, tags: tuple[str, ...], now: datetime
    ) -> None:
        await record_event(self._ctx, f"message:{message_key}", customer_id, "message", now, {"channel": channel})
        try:
            await run_for_message(self._ctx, customer_id, message_key, tags, now)
        except Exception:
            log.exception("message rules failed for customer %d", customer_id)

    def message_event(self, customer_id: int, message_key: str, channel: str, now: datetime) -> NewCustomerEvent:
        """The `message` event the caller's unit of work stores (its failure is the caller's)."""
        return own_event(f"message:{message_key}", customer_id, "message", now, {"channel": channel})

    async def after_message(
        self, customer_id: int, message_key: str, tags: tuple[str, ...], now: datetime, new: bool
    ) -> None:
        """Event rules for the message's event (when it was new), then message rules; failures are logged."""
        if new:
            last = {customer_id: own_event_id(f"message:{message_key}")}  # its id only: no digest to compute
            try:
                await run_for_events(self._ctx, {customer_id: {"message"}}, last, now)
            except Exception:
                log.exception("event rules failed for the message event of customer %d", customer_id)
        try:
            await run_for_message(self._ctx, customer_id, message_key, tags, now)
        except Exception:
            log.exception("message rules failed for customer %d", customer_id)

    async def decided(
        self, customer_id: int, suggestion_id: int, tag: str, accepted: bool, by: str, now: datetime
    ) -> None:
        kind = "suggestion_accepted" if accepted else "suggestion_rejected"
        await record_event(self._ctx, f"suggestion:{suggestion_id}", customer_id, kind, now, {"tag": tag, "by": by})

    async def contact(self, customer_id: int, added: bool, user_id: str, now: datetime, key: str) -> None:
        kind = "wecom_contact_added" if added else "wecom_contact_deleted"
        await record_event(self._ctx, f"wecom:{key}", customer_id, kind, now, {"user": user_id})
