"""What each WeCom callback does, by message type; runs after the callback was acknowledged.

Text from members goes through the shared chat service (same commands as Teams); button clicks decide
suggestions like the Teams buttons and update the clicked card; external-contact events create or update
customers; change_external_tag re-imports the corp tag library.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bots.wecom.client import WeComApiError, WeComClient
from bots.wecom.parser import (
    ExternalContactEvent,
    ExternalTagEvent,
    TemplateCardEvent,
    TextMessage,
    UnknownEvent,
    WeComMessage,
)
from bots.wecom.render import result_markdown, result_payloads, result_template_card
from bots.wecom.replies import markdown_message
from bots.wecom.sync import WeComTagSync
from cards.present import alert_view
from cards.wecom import alert_template_card, error_markdown, parse_button
from core import verbs
from core.alerts.actions import Action, AlertStatus
from core.alerts.ports import AlertStore
from core.chat.ports import ChatEvents
from core.chat.service import AppliedState, ChatContext, ChatResult, ChatService, SuggestionState, TagResult
from core.errors import NotAllowedError, NotFoundError
from core.records import TaxonomyVersion
from core.tags.assignments import TagChange, TaggingRules
from core.tags.personal import PersonalSource, wecom_personal_tags
from core.types import SuggestionStatus
from core.wecom_sync.contacts import HANDLED, ContactDetails, record_contact_event
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

CHANNEL = "wecom"
DONE_LABEL = "已处理"

Handler = Callable[[Any], Awaitable[None]]
# core.alerts.actions.act_on_alert with its store bound by app.py: (alert id, user id, action, now) -> status.
AlertAction = Callable[[int, str, Action, datetime], Awaitable[AlertStatus]]
ALERT_ACTIONS: dict[str, Action] = {verbs.ALERT_ACK: "ack", verbs.ALERT_SNOOZE: "snooze"}
SNOOZED_LABEL = "已暂停提醒"
# Buttons that only show something (a digest in full, its pages): nothing is decided, so the clicked card
# keeps its buttons and is not stamped 已处理; the answer comes as new messages.
VIEW_VERBS = frozenset({verbs.ALERT_DIGEST_ALL})


@dataclass(frozen=True)
class WeComServices:
    """Everything the handlers need, wired by app.py (plain values and core services only)."""

    store: AlertStore  # the alert unit of work: contact events also record customer activity
    chat: ChatService
    taxonomy: Callable[[], Taxonomy]
    rules: TaggingRules
    client: WeComClient | None = None
    tag_sync: WeComTagSync | None = None
    on_taxonomy: Callable[[TaxonomyVersion], Awaitable[None]] | None = None
    alert_action: AlertAction | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    events: ChatEvents | None = None  # customer events (contact added / deleted) for the rules


class WeComHandlers:
    """Registry message type → handler; `dispatch` is what the callback route calls."""

    def __init__(self, services: WeComServices) -> None:
        self._s = services
        self._registry: dict[type, Handler] = {
            TextMessage: self.on_text,
            TemplateCardEvent: self.on_card_click,
            ExternalContactEvent: self.on_contact,
            ExternalTagEvent: self.on_tag_library,
            UnknownEvent: self.on_unknown,
        }
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per customer: lock, tasks using it

    async def dispatch(self, message: WeComMessage) -> None:
        """Run the handler registered for the message's type."""
        handler = self._registry.get(type(message))
        if handler is None:
            log.info("no WeCom handler for %s", type(message).__name__)
            return
        await handler(message)

    # ------------------------------------------------------------------ members' app chat

    def _shown(self, moment: datetime) -> datetime:
        """`moment` in KEBIAO_TIMEZONE: cards show dates in the zone of the `now` they get."""
        return moment.astimezone(self._s.rules.tz)

    async def _context(self, user_id: str) -> ChatContext:
        now = self._s.clock()
        actor = await self._s.chat.actor(user_id, "", now)
        return ChatContext(CHANNEL, user_id, actor, now)

    async def on_text(self, message: TextMessage) -> None:
        """A member's text: run it as a command (or match it in a linked chat) and reply via message/send."""
        ctx = await self._context(message.from_user)
        results = await self._s.chat.respond(ctx, f"wecom:{message.msg_id}", message.content)
        await self._after(results)
        for result in results:
            for payload in result_payloads(result, message.from_user, self._s.taxonomy(), self._shown(ctx.now)):
                await self._send(payload)

    async def on_card_click(self, event: TemplateCardEvent) -> None:
        """A button on a Kebiao card: decide through the chat service, then update the clicked card."""
        try:
            verb, ids, extras = parse_button(event.event_key)
        except ValueError as exc:
            log.warning("wecom card click with a foreign key ignored: %s", exc)
            return
        if verb in ALERT_ACTIONS:
            await self._on_alert_click(event, ALERT_ACTIONS[verb], ids[0])
            return
        ctx = await self._context(event.from_user)
        result = await self._s.chat.decide(ctx, verb, _action_data(verb, ids, extras))
        await self._after((result,))
        taxonomy = self._s.taxonomy()
        if verb in VIEW_VERBS:
            for payload in result_payloads(result, event.from_user, taxonomy, self._shown(ctx.now)):
                await self._send(payload)
            return
        card = result_template_card(result, taxonomy, task_id=event.task_id)
        if event.response_code and self._s.client is not None:
            try:
                if card is not None and isinstance(result, SuggestionState):
                    await self._s.client.update_template_card(event.response_code, template_card=card)
                else:
                    await self._s.client.update_template_card(event.response_code, replace_name=DONE_LABEL)
            except WeComApiError as exc:
                log.warning("wecom card update failed: %s", exc)
        if card is None or not isinstance(result, SuggestionState):
            body = result_markdown(result, taxonomy, self._shown(ctx.now))
            await self._send(markdown_message(body, to_users=[event.from_user]))

    async def _on_alert_click(self, event: TemplateCardEvent, action: Action, alert_id: int) -> None:
        """Acknowledge or snooze an alert, then show the outcome on the clicked card (or say why not)."""
        if self._s.alert_action is None:
            log.warning("wecom alert click ignored: alert actions are not wired")
            return
        try:
            status = await self._s.alert_action(alert_id, event.from_user, action, self._s.clock())
        except (NotFoundError, NotAllowedError) as exc:
            await self._send(markdown_message(error_markdown(str(exc)), to_users=[event.from_user]))
            return
        if not event.response_code or self._s.client is None:
            return
        try:
            if action == "ack":
                raised = self._shown(status.notice.raised_at)
                card = alert_template_card(alert_view(status), raised, task_id=event.task_id)
                await self._s.client.update_template_card(event.response_code, template_card=card)
            else:
                await self._s.client.update_template_card(event.response_code, replace_name=SNOOZED_LABEL)
        except WeComApiError as exc:
            log.warning("wecom alert card update failed: %s", exc)

    async def _after(self, results: Sequence[ChatResult]) -> None:
        """Tell the tag sync about committed tag changes (it pushes them to WeCom in the background)."""
        if self._s.tag_sync is None:
            return
        for customer_id, changes in _changes(results).items():
            await self._s.tag_sync.tags_changed(customer_id, changes)

    async def _send(self, payload: Mapping[str, Any]) -> None:
        if self._s.client is None:
            log.info("no WeCom client configured (WECOM_SECRET/WECOM_AGENT_ID); reply not sent")
            return
        try:
            await self._s.client.send_message(payload)
        except (WeComApiError, ValueError) as exc:
            log.warning("wecom reply could not be sent: %s", exc)

    # ------------------------------------------------------------------ customers (external contacts)

    async def on_contact(self, event: ExternalContactEvent) -> None:
        """add/edit/del external contact: create or update the customer; the add State applies a channel tag.

        Events of one customer run one after another, in arrival order (a delete must not overtake the add).
        """
        if event.change_type not in HANDLED:
            log.info("wecom external-contact change %s not handled", event.change_type)
            return
        key = event.external_user_id
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                await self._contact(event)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _contact(self, event: ExternalContactEvent) -> None:
        details = None
        if event.change_type in ("add_external_contact", "edit_external_contact"):
            details = await self._details(event.external_user_id)
        async with self._s.store.unit_of_work() as uow:
            outcome = await record_contact_event(
                uow,
                self._s.taxonomy(),
                self._s.rules,
                change_type=event.change_type,
                user_id=event.user_id,
                external_user_id=event.external_user_id,
                now=self._s.clock(),
                state=event.state,
                details=details,
            )
        if outcome.customer is not None:
            await self._read_personal(outcome.customer.id, details)
        if outcome.channel_tag is not None and outcome.customer is not None and self._s.tag_sync is not None:
            await self._s.tag_sync.tags_changed(outcome.customer.id, [outcome.channel_tag])
        lifecycle = {"add_external_contact": True, "del_follow_user": False}
        if self._s.events is not None and outcome.customer is not None and event.change_type in lifecycle:
            added = lifecycle[event.change_type]
            await self._s.events.contact(outcome.customer.id, added, event.user_id, self._s.clock(), event.dedupe_key)

    async def _details(self, external_user_id: str) -> ContactDetails | None:
        """Name and company from externalcontact/get; None (keep going) when WeCom cannot say."""
        if self._s.client is None:
            return None
        try:
            data = await self._s.client.get_external_contact(external_user_id)
        except (WeComApiError, ValueError) as exc:
            log.warning("wecom contact details unavailable: %s", exc)
            return None
        contact = data.get("external_contact") or {}
        return ContactDetails(
            name=str(contact.get("name") or "").strip(),
            corp_name=str(contact.get("corp_name") or "").strip(),
            personal=wecom_personal_tags(data.get("follow_user")),
        )

    async def _read_personal(self, customer_id: int, details: ContactDetails | None) -> None:
        """Each agent's own WeCom tags on the contact become that agent's personal tags on the customer."""
        store = self._s.chat.personal
        if store is None or details is None:
            return
        for author, names in details.personal.items():
            await store.replace_personal_source(customer_id, author, names, PersonalSource.WECOM, self._s.clock())

    async def on_tag_library(self, event: ExternalTagEvent) -> None:
        """A corp tag changed in WeCom: re-import the library so the `wecom` dimension stays in step."""
        if self._s.tag_sync is None:
            log.info("wecom corp tag %s ignored: tag sync needs WECOM_SECRET", event.change_type)
            return
        await self._s.tag_sync.import_corp_tags(self._s.on_taxonomy)

    async def on_unknown(self, event: UnknownEvent) -> None:
        log.debug("wecom %s/%s acknowledged, nothing to do", event.msg_type, event.event)


def _action_data(verb: str, ids: tuple[int, ...], extras: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The card-action data core.chat.service expects for a WeCom button key (verb, ids and the text
    extras it carries, e.g. the command a customer choice runs; the ids win over an extra of the same name)."""
    base = dict(extras or {})
    if verb.endswith("accept_all"):
        return base | {"suggestion_ids": list(ids)}
    if verb.startswith("suggestion."):
        return base | {"suggestion_id": ids[0]}
    if verb.startswith("customer."):
        return base | {"customer_id": ids[0]}
    if verb.startswith("assignment."):
        return base | {"assignment_id": ids[0]}
    if verb == verbs.ALERT_DIGEST_ALL:  # alert id, then the page (none: page 1; a list of pages is refused)
        page = {} if len(ids) == 1 else {"page": ids[1] if len(ids) == 2 else ",".join(map(str, ids[1:]))}
        return base | {"alert_id": ids[0]} | page
    return base | {"ids": list(ids)}


def _changes(results: Sequence[ChatResult]) -> dict[int, list[TagChange]]:
    """Tag changes per customer in chat results (commands, accepted suggestions, auto-applied tags)."""
    out: dict[int, list[TagChange]] = {}
    for result in results:
        if isinstance(result, TagResult):
            out.setdefault(result.summary.customer.id, []).extend(result.changes)
        elif isinstance(result, SuggestionState):
            accepted = [r for r in result.records if r.status is SuggestionStatus.ACCEPTED]
            out.setdefault(result.customer.id, []).extend(
                TagChange(r.customer_id, r.dimension, r.tag, "added") for r in accepted
            )
        elif isinstance(result, AppliedState):
            out.setdefault(result.customer.id, []).extend(
                TagChange(result.customer.id, e.dimension, e.tag, "added" if e.assignment_id else "removed")
                for e in result.entries
            )
    return out
