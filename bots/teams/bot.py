"""The Kebiao Teams bot: activities → core.chat.service calls → Adaptive Cards (replies and invoke responses).

The endpoint has authenticated and de-duplicated the activity before it gets here; this class only
translates. Every handler returns botbuilder model objects.

Invokes (message-extension query, fetchTask, submitAction, card actions) must answer within Teams' ~5 s:
they read and write only the local database and run the in-memory matcher, and never call the Bot
Connector or any other remote service (tests/teams/test_bot_invokes.py fails the connector to check it).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from botbuilder.core import CardFactory, InvokeResponse, MessageFactory, TurnContext
from botbuilder.core.serializer_helper import serializer_helper
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.schema import (
    Activity,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
    ChannelAccount,
    ConversationAccount,
    Entity,
    Mention,
    ThumbnailCard,
)
from botbuilder.schema.teams import (
    MessagingExtensionAction,
    MessagingExtensionActionResponse,
    MessagingExtensionAttachment,
    MessagingExtensionQuery,
    MessagingExtensionResponse,
    MessagingExtensionResult,
    TaskModuleContinueResponse,
    TaskModuleMessageResponse,
    TaskModuleTaskInfo,
)
from msrest.exceptions import ClientRequestError, HttpOperationError

from bots.teams.clicks import CardClick, card_click
from bots.teams.dedup import activity_key
from bots.teams.from_wire import from_wire
from bots.teams.invoke_body import invoke_body
from bots.teams.references import Address, StoredReference, address_of, tenant_of
from bots.teams.scope import is_shared
from cards.adaptive import Card, card, text
from cards.labels import Lang
from cards.present import choice_title, hit_preview, present
from cards.text import clip, literal
from core.chat.ports import ChannelStore
from core.chat.service import (
    ChatContext,
    ChatResult,
    ChatService,
    ErrorResult,
    HelpResult,
    SummaryResult,
    TagResult,
)
from core.inbound import MAX_INT64
from core.types import Customer
from core.verbs import ALL_VERBS
from tagging.policy import is_visible

log = logging.getLogger(__name__)

CHANNEL = "teams"
SEARCH_COMMANDS = frozenset({"searchCustomers"})  # the manifest's composeExtensions command id
TAG_COMMAND = "tagFromMessage"
ACTION_COMMANDS = frozenset({TAG_COMMAND})  # the manifest's action command ids
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_ACTION_INVOKE = "adaptiveCard/action"
ERROR_TYPE = "application/vnd.microsoft.error"  # Universal Actions error response
AUTOMATIC = "automatic"  # value.trigger of a card refresh (a user click is "manual")
SEARCH_INVOKE = "application/search"
SEARCH_RESPONSE_TYPE = "application/vnd.microsoft.search.searchResponse"
CUSTOMER_DATASET = "kebiao.customers"  # the Data.Query dataset of the tag form's customer picker
CUSTOMER_CHOICES = 50  # the picker's static first page; typeahead (application/search) finds the rest
SEARCH_RESULTS = 15  # Teams shows at most 15 typeahead options
SAVED_LIMIT = 50_000
# A tag never spans another "<": each start scans only to the next one, so a run of "<" is linear.
_TAGS = re.compile(r"<[^<>]+>")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KebiaoBot(TeamsActivityHandler):
    """Commands and linked-conversation matching in chats and channels, message extension, card actions."""

    @staticmethod
    def _create_invoke_response(body: object = None) -> InvokeResponse:
        """As ActivityHandler's, but the body is written once (cards are not walked again; see invoke_body)."""
        return InvokeResponse(status=200, body=invoke_body(body))

    def __init__(self, chat: ChatService, channels: ChannelStore, clock: Clock = _utc_now) -> None:
        self.chat = chat
        self.channels = channels
        self.clock = clock
        self._saved: dict[str, _Saved] = {}  # reference key → last address saved by this process

    def _shown(self, now: datetime) -> datetime:
        """`now` in KEBIAO_TIMEZONE: cards show dates and "N 天后到期" in the zone of the `now` they get."""
        return now.astimezone(self.chat.rules.tz)

    # ------------------------------------------------------------ messages

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if _from_bot(activity):
            return  # our own echoes and other bots' messages
        click = card_click(activity)
        if click is not None:
            await self._remember(activity)
            await self._on_click(turn_context, click)
            return
        if not (activity.text or "").strip():
            return
        await self._remember(activity)
        ctx = await self._context(activity)
        addressed = not ctx.shared or _mentions_bot(activity)
        key = message_key(activity, ctx.conversation_id)
        results = await self.chat.respond(ctx, key, plain_text(activity), addressed=addressed)
        lang = language(activity)
        for result in results:
            built = present(result, self.chat.taxonomy, self._shown(ctx.now), lang)
            await turn_context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(built)))

    async def _on_click(self, turn_context: TurnContext, click: CardClick) -> None:
        """A messageBack / Action.Submit click: a card verb runs like Action.Execute; anything else is silent.

        The new state replaces the card the click came from (`replyToId`). A refusal is posted, as a new
        message, only in a 1:1 chat: in a shared conversation the clicker's mistake is nobody else's.
        """
        activity = turn_context.activity
        if click.verb not in ALL_VERBS:
            log.info("card click without a Kebiao verb (%r) ignored", click.verb[:60])
            return
        ctx = await self._context(activity)
        result = await self.chat.decide(ctx, click.verb, click.data)
        if isinstance(result, ErrorResult):
            log.info("card click %s refused: %s", click.verb, result.detail)
            if not ctx.shared:
                await self._show(turn_context, result, ctx, replace=None)
            return
        await self._show(turn_context, result, ctx, replace=activity.reply_to_id)

    async def _show(self, turn_context: TurnContext, result: ChatResult, ctx: ChatContext, replace: str | None) -> None:
        """Post the result card, or put it in place of message `replace` when there is one."""
        built = present(result, self.chat.taxonomy, ctx.now, language(turn_context.activity))
        reply = MessageFactory.attachment(CardFactory.adaptive_card(built))
        if replace:
            reply.id = replace
            await turn_context.update_activity(reply)
            return
        await turn_context.send_activity(reply)

    async def on_conversation_update_activity(self, turn_context: TurnContext) -> None:
        """Store the reference (for proactive alerts); greet with the help card when the bot is added."""
        activity = turn_context.activity
        await self._remember(activity)
        bot_id = activity.recipient.id if activity.recipient else None
        added = activity.members_added or []
        if bot_id and any(m.id == bot_id for m in added):
            lang = language(activity)
            built = present(HelpResult(), self.chat.taxonomy, self._shown(self.clock()), lang)
            await turn_context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(built)))
        channel = _named_channel(activity)
        if channel is not None:
            await self._offer_channel_link(turn_context, *channel)

    async def _offer_channel_link(self, turn_context: TurnContext, channel_id: str, name: str) -> None:
        """A channel created or renamed to "[VIP]ABC公司-合同续约中": offer, in that channel, to link it to ABC公司.

        The event arrives in the team's General channel; the offer is posted as a new message in the channel
        it is about, and only where that fails (the bot cannot post there) where the event arrived.
        """
        activity = turn_context.activity
        ctx = await self._context(activity, shared=True)
        offer = await self.chat.channel_named(ctx, channel_id, name)
        if offer is None:
            log.info("channel %s named %r: no link to offer", channel_id[:80], name[:80])
            return
        built = present(offer, self.chat.taxonomy, self._shown(ctx.now), language(activity))
        if await _post_in_channel(turn_context, channel_id, built):
            return
        await turn_context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(built)))

    # ------------------------------------------------------------ meetings

    async def on_teams_meeting_start_event(self, meeting: Any, turn_context: TurnContext) -> None:
        """A meeting starts: post the customer's card as prep in its chat, when the meeting is about one.

        The customer is the meeting chat's linked one, else the one customer the title names. Anything
        else (no conversation, no title, an unknown or ambiguous customer) posts nothing: the event was
        nobody's request, so it never answers with an error.
        """
        activity = turn_context.activity
        if activity.conversation is None or not activity.conversation.id:
            log.info("meeting start without a conversation id; nothing posted")
            return
        details = meeting if isinstance(meeting, dict) else {}
        raw_title = details.get("Title", details.get("title"))
        title = raw_title if isinstance(raw_title, str) else ""
        ctx = await self._context(activity, shared=True)  # a meeting chat is read by every participant
        result = await self.chat.meeting_start(ctx, title)
        if result is None or isinstance(result, ErrorResult):
            log.info("meeting start in %s: no customer to prepare for", ctx.conversation_id[:80])
            return
        built = present(result, self.chat.taxonomy, self._shown(ctx.now), language(activity))
        await turn_context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(built)))

    # ------------------------------------------------------------ card actions

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        """Action.Execute: run the verb and replace the card in place with its new state.

        A refresh (`trigger: automatic`) that cannot be served — a verb this version no longer knows, an
        item gone — answers the documented error object instead of a card: the client keeps showing the
        card it has, for every viewer, rather than swapping it for an error. A click still gets the
        error card, which tells the one who clicked what went wrong.
        """
        activity = turn_context.activity
        action = invoke_value.action
        raw = action if isinstance(action, dict) else (action.serialize() if action is not None else {})
        verb = str(raw.get("verb") or "")
        data_raw = raw.get("data")
        data: dict[str, Any] = data_raw if isinstance(data_raw, dict) else {}
        value = activity.value if isinstance(activity.value, dict) else {}
        refresh = str(value.get("trigger") or "").casefold() == AUTOMATIC
        ctx = await self._context(activity)
        result = await self.chat.decide(ctx, verb, data)
        if isinstance(result, ErrorResult):
            log.info("card %s %s refused: %s", "refresh" if refresh else "action", verb[:60], result.detail)
            if refresh:
                return _card_error(400, "BadRequest", f"{result.detail}; the card is left as it is")
        # Errors come back as an error card too: botbuilder 4.17 cannot serialise the text-message form.
        built = present(result, self.chat.taxonomy, self._shown(ctx.now), language(activity))
        return AdaptiveCardInvokeResponse(status_code=200, type=CARD_TYPE, value=built)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        """Adds `application/search` (typeahead of the customer picker), which botbuilder 4.17 lacks, and
        checks `adaptiveCard/action` itself: the SDK's own refusals carry an exception object that cannot
        be written as JSON."""
        name = turn_context.activity.name
        if name == SEARCH_INVOKE:
            return await self.on_search_invoke(turn_context)
        if name == CARD_ACTION_INVOKE:
            return await self._on_card_action(turn_context)
        return await super().on_invoke_activity(turn_context)

    async def _on_card_action(self, turn_context: TurnContext) -> InvokeResponse:
        """`adaptiveCard/action`: a malformed value gets the documented 400 error object, else the verb runs."""
        value = turn_context.activity.value
        problem = _card_action_problem(value)
        if problem is not None or not isinstance(value, dict):
            log.info("card action refused: %s", problem)
            refusal = _card_error(400, "BadRequest", problem or "the invoke has no value object")
            return InvokeResponse(status=200, body=serializer_helper(refusal))
        invoke_value = AdaptiveCardInvokeValue(action=value["action"], state=value.get("state"))
        response = await self.on_adaptive_card_invoke(turn_context, invoke_value)
        return InvokeResponse(status=200, body=serializer_helper(response))

    async def on_search_invoke(self, turn_context: TurnContext) -> InvokeResponse:
        """Typeahead for a Data.Query ChoiceSet: customers whose name matches, id as the value."""
        activity = turn_context.activity
        value = activity.value if isinstance(activity.value, dict) else {}
        dataset = str(value.get("dataset") or "")
        if dataset != CUSTOMER_DATASET:
            log.warning("typeahead for unknown dataset %r", dataset)
            return InvokeResponse(status=200, body=_search_response([]))
        raw_options = value.get("queryOptions")
        options: dict[str, Any] = raw_options if isinstance(raw_options, dict) else {}
        skip = _count(options.get("skip"), 0, 0, 10_000)
        top = _count(options.get("top"), SEARCH_RESULTS, 1, SEARCH_RESULTS)
        ctx = await self._context(activity, shared=True)
        found = await self.chat.pick_customers(ctx, str(value.get("queryText") or ""), skip, top)
        return InvokeResponse(status=200, body=_search_response(found))

    # ------------------------------------------------------------ message extension

    async def on_teams_messaging_extension_query(
        self, turn_context: TurnContext, query: MessagingExtensionQuery
    ) -> MessagingExtensionResponse:
        """searchCustomers: by name, else by tag expression; previews and cards at agent visibility."""
        activity = turn_context.activity
        lang = language(activity)
        if query.command_id not in SEARCH_COMMANDS:
            log.warning("unknown message extension query command %r", str(query.command_id)[:60])
            refusal = MessagingExtensionResult(type="message", text=_unknown_command_text(query.command_id, lang))
            return MessagingExtensionResponse(compose_extension=refusal)
        wanted = ""
        for parameter in query.parameters or []:
            if parameter.name != "initialRun" and isinstance(parameter.value, str):
                wanted = parameter.value.strip()
        options = query.query_options
        skip = _count(getattr(options, "skip", 0), 0, 0, 10_000)
        count = _count(getattr(options, "count", 25) or 25, 25, 1, 25)
        ctx = await self._context(activity, shared=True)  # the picked card is posted where anyone reads it
        found = await self.chat.lookup(ctx, wanted, skip, count)
        if not found.hits:
            return MessagingExtensionResponse(
                compose_extension=MessagingExtensionResult(type="message", text=_empty_text(wanted, lang))
            )
        attachments = []
        for summary in found.hits:
            title, subtitle = hit_preview(summary, lang)
            built = present(SummaryResult(summary, ctx.viewer), self.chat.taxonomy, self._shown(ctx.now), lang)
            attachments.append(
                MessagingExtensionAttachment(
                    content_type=CardFactory.content_types.adaptive_card,
                    content=built,
                    preview=CardFactory.thumbnail_card(ThumbnailCard(title=title, subtitle=subtitle)),
                )
            )
        return MessagingExtensionResponse(
            compose_extension=MessagingExtensionResult(type="result", attachment_layout="list", attachments=attachments)
        )

    async def on_teams_messaging_extension_fetch_task(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        """tagFromMessage: a form with the tags suggested for the message and a customer picker."""
        activity = turn_context.activity
        lang = language(activity)
        if action.command_id not in ACTION_COMMANDS:
            return _unknown_action(action, lang)
        ctx = await self._context(activity, shared=True)
        message = _payload_text(action)
        choices = await self.chat.customer_choices(ctx, CUSTOMER_CHOICES)
        # Pre-select only tags the pre-selected customer (the linked one, else the first listed) may hold.
        found = self.chat.suggest(ctx, message, (choices[0].region,) if choices else None)
        suggested = [] if isinstance(found, ErrorResult) else [s.tag for s in found.suggestions]
        customers = [(choice_title(c), str(c.id)) for c in choices]
        form = tag_form(self.chat, ctx, message, suggested, customers, lang)
        title = "给客户打标签" if lang == "zh" else "Tag a customer"
        return MessagingExtensionActionResponse(
            task=TaskModuleContinueResponse(
                value=TaskModuleTaskInfo(
                    title=title, card=CardFactory.adaptive_card(form), height="medium", width="medium"
                )
            )
        )

    async def on_teams_messaging_extension_submit_action(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        """Apply the chosen tags to the chosen customer and hand back the customer's card."""
        activity = turn_context.activity
        lang = language(activity)
        if action.command_id not in ACTION_COMMANDS:
            return _unknown_action(action, lang)
        ctx = await self._context(activity, shared=True)
        data = action.data if isinstance(action.data, dict) else {}
        tags = _names(data.get("tags"))
        customer = str(data.get("customer") or "").strip()
        result: Any
        if not customer or not tags:
            missing = ("customer", "客户") if not customer else ("tags", "标签")
            result = ErrorResult(
                f"the form has no {missing[0]}",
                "pick a customer and at least one tag",
                (f"表单里没有选择{missing[1]}", "请选择一个客户和至少一个标签"),
            )
        elif not customer.isascii() or not customer.isdigit() or int(customer[:40]) > MAX_INT64:
            # The picker sends the customer id; a typed name is never resolved again here (it could need a
            # choice card, and a task module cannot run the Action.Execute buttons of one).
            result = ErrorResult(
                f"customer {customer[:60]!r} is not one of the listed customers",
                "pick the customer from the list (type to search)",
                (f"“{customer[:60]}”不是列表中的客户", "请从列表中选择客户（可输入名称搜索）"),
            )
        else:
            result = await self.chat.tag(ctx, int(customer), tags, source_text=_payload_text(action))
        built = present(result, self.chat.taxonomy, self._shown(ctx.now), lang)
        if isinstance(result, TagResult | SummaryResult):
            attachment = MessagingExtensionAttachment(content_type=CARD_TYPE, content=built)
            return MessagingExtensionActionResponse(
                compose_extension=MessagingExtensionResult(
                    type="result", attachment_layout="list", attachments=[attachment]
                )
            )
        title = "打标签" if lang == "zh" else "Tag a customer"
        return MessagingExtensionActionResponse(
            task=TaskModuleContinueResponse(
                value=TaskModuleTaskInfo(title=title, card=CardFactory.adaptive_card(built))
            )
        )

    # ------------------------------------------------------------ pieces

    async def _context(self, activity: Activity, shared: bool | None = None) -> ChatContext:
        """Who acts (role looked up by AAD object id), where, and whether others read the replies."""
        sender = activity.from_property or ChannelAccount(id="")
        user_id = sender.aad_object_id or sender.id or ""
        now = self.clock()
        actor = await self.chat.actor(user_id, sender.name or "", now)
        others_read = is_shared(activity) if shared is None else shared
        return ChatContext(CHANNEL, conversation_key(activity), actor, now, others_read, team_of(activity))

    async def _remember(self, activity: Activity) -> None:
        """Save the conversation reference (and, in personal chat, under the user's AAD id for alerts).

        The activity id changes with every message; the address (service URL, conversation, bot, user, tenant)
        rarely does, so only a change of address is written, and an address this process saved last under
        every key is recognised from the activity's own fields before any reference is built.
        """
        key = conversation_key(activity)
        keys = [f"conversation:{key}"]
        sender = activity.from_property
        kind = activity.conversation.conversation_type if activity.conversation else None
        if kind == "personal" and sender is not None and sender.aad_object_id:
            keys.append(sender.aad_object_id)
        address = address_of(activity, key)
        if address is not None and all(self._saved.get(k, _NOTHING_SAVED).address == address for k in keys):
            return
        try:
            stored = StoredReference.from_activity(activity, key=key)
        except ValueError as exc:
            log.warning("conversation reference not stored: %s", exc)
            return
        reference = json.loads(stored.reference_json)
        reference["serviceUrl"] = stored.service_url
        encoded = json.dumps(
            {k: v for k, v in reference.items() if k != "activityId"}, sort_keys=True, ensure_ascii=False
        )
        for saved_key in keys:
            saved = self._saved.get(saved_key)
            if saved is not None and saved.encoded == encoded:
                self._saved[saved_key] = _Saved(address, encoded)  # unchanged: no write, the fast path knows it now
                continue
            await self.channels.save_reference(CHANNEL, saved_key, reference, stored.tenant_id or None, self.clock())
            if len(self._saved) >= SAVED_LIMIT:
                self._saved.clear()  # bounded memory; the next turn of each conversation writes once more
            self._saved[saved_key] = _Saved(address, encoded)


class _Saved(NamedTuple):
    """The last address this process saved under one key: as read from the activity, and as written."""

    address: Address | None
    encoded: str


_NOTHING_SAVED = _Saved(None, "")


def tag_form(
    chat: ChatService,
    ctx: ChatContext,
    message: str,
    suggested: list[str],
    customers: list[tuple[str, str]],
    lang: Lang,
) -> Card:
    """The task-module form: customer picker and the tags, pre-selected with the suggestions.

    `customers` are (title, customer id) pairs: the static first page, linked customer first; typing in
    the picker asks the bot for more (`choices.data`, answered by on_search_invoke).
    """
    sees = ctx.viewer.role.sees_sensitive
    taxonomy = chat.taxonomy
    tags = [t.name for d in taxonomy.dimensions if is_visible(d, sees) for t in d.iter_tags()]
    zh = lang == "zh"
    body = [
        text(("消息：" if zh else "Message: ") + _quote(message), isSubtle=True, size="Small"),
        {
            "type": "Input.ChoiceSet",
            "id": "customer",
            "label": "客户" if zh else "Customer",
            "style": "filtered",
            "isRequired": True,
            "errorMessage": "请选择客户" if zh else "Pick a customer",
            "choices": [{"title": title, "value": value} for title, value in customers],
            "choices.data": {"type": "Data.Query", "dataset": CUSTOMER_DATASET},
            **({"value": customers[0][1]} if customers else {}),
        },
        {
            "type": "Input.ChoiceSet",
            "id": "tags",
            "label": "标签" if zh else "Tags",
            "isMultiSelect": True,
            "style": "filtered",
            "isRequired": True,
            "errorMessage": "至少选择一个标签" if zh else "Pick at least one tag",
            "choices": [{"title": name, "value": name} for name in tags],
            "value": ",".join(suggested),
        },
    ]
    submit = {"type": "Action.Submit", "title": "打标签" if zh else "Tag", "style": "positive"}
    return card(body, [submit])


CHANNEL_EVENTS = frozenset({"channelCreated", "channelRenamed"})


def _named_channel(activity: Activity) -> tuple[str, str] | None:
    """(channel id, new name) of a channelCreated / channelRenamed update; None for anything else or missing parts."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    if data.get("eventType") not in CHANNEL_EVENTS:
        return None
    channel = data.get("channel")
    if not isinstance(channel, dict):
        return None
    channel_id, name = channel.get("id"), channel.get("name")
    if not isinstance(channel_id, str) or not isinstance(name, str) or not channel_id or not name.strip():
        return None
    return channel_id, name


async def _post_in_channel(turn_context: TurnContext, channel_id: str, built: Card) -> bool:
    """Post `built` as a new message in channel `channel_id` of the activity's team; False when that fails."""
    activity = turn_context.activity
    reference = TurnContext.get_conversation_reference(activity)
    tenant = tenant_of(activity)
    reference.conversation = ConversationAccount(
        id=channel_id, is_group=True, conversation_type="channel", tenant_id=tenant or None
    )
    post = TurnContext.apply_conversation_reference(
        MessageFactory.attachment(CardFactory.adaptive_card(built)), reference
    )
    post.reply_to_id = None  # a new post in the channel, not a reply to the event
    post.channel_data = {"channel": {"id": channel_id}, **({"tenant": {"id": tenant}} if tenant else {})}
    try:
        await turn_context.adapter.send_activities(turn_context, [post])
    except (HttpOperationError, ClientRequestError, OSError) as exc:
        reason = type(exc).__name__
        log.warning("link offer not posted in channel %s (%s); posted where the event arrived", channel_id[:80], reason)
        return False
    return True


def team_of(activity: Activity) -> str:
    """The Teams team id of an activity (channelData.team.id), empty outside a team."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    team = data.get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    return team_id if isinstance(team_id, str) and len(team_id) <= 500 else ""


def conversation_key(activity: Activity) -> str:
    """The conversation a link belongs to: a channel thread's `;messageid=` suffix is dropped."""
    conversation_id = activity.conversation.id if activity.conversation else ""
    return (conversation_id or "").split(";messageid=", 1)[0]


def message_key(activity: Activity, conversation_id: str) -> str:
    """The message's key for suggestions: its activity key, else its time and a digest of its text.

    An activity without an id (older and published shapes) must not share one key with every other such
    message of the conversation: the second would be taken for a retry of the first and matched never.
    """
    key = activity_key(activity)
    if key is not None:
        return key
    stamp = activity.timestamp.isoformat() if activity.timestamp else ""
    digest = hashlib.sha256((activity.text or "").encode("utf-8")).hexdigest()[:16]
    return f"{CHANNEL}:{conversation_id}:{stamp}:{digest}"


def plain_text(activity: Activity) -> str:
    """The message text without @mentions of the bot (or anyone), HTML tags and entities."""
    raw = activity.text or ""
    bot = activity.recipient
    for mention in _mentions(activity):
        if bot is not None and mention.mentioned is not None and mention.mentioned.id == bot.id and mention.text:
            raw = raw.replace(mention.text, " ")
    raw = strip_mentions(raw)
    return html.unescape(_TAGS.sub(" ", raw)).replace("\u00a0", " ").strip()


def strip_mentions(text: str) -> str:
    """`text` with every `<at …>…</at>` replaced by a space, in one left-to-right pass.

    A lazy pattern (`<at[^>]*>.*?</at>`) rescans to the end of the text from every unclosed `<at>`, which
    is quadratic; here each character is looked at a bounded number of times.
    """
    lower = text.translate(_ASCII_LOWER)  # same length as text (str.lower() may not be: "İ")
    out: list[str] = []
    position = 0
    while True:
        start = lower.find("<at", position)
        if start < 0:
            break
        close = lower.find(">", start)
        end = lower.find("</at>", close) if close >= 0 else -1
        if end < 0:
            break  # no closing tag anywhere after: no further mention can match either
        out.append(text[position:start])
        out.append(" ")
        position = end + len("</at>")
    out.append(text[position:])
    return "".join(out)


def language(activity: Activity) -> Lang:
    """English for English locales, Chinese otherwise."""
    return "en" if (activity.locale or "").lower().startswith("en") else "zh"


def _from_bot(activity: Activity) -> bool:
    sender, bot = activity.from_property, activity.recipient
    if sender is None:
        return True
    return (bot is not None and sender.id == bot.id) or (sender.role or "") == "bot" or sender.id.startswith("28:")


def _mentions_bot(activity: Activity) -> bool:
    bot = activity.recipient
    if bot is None:
        return False
    return any(m.mentioned is not None and m.mentioned.id == bot.id for m in _mentions(activity))


def _mentions(activity: Activity) -> list[Mention]:
    """The activity's mention entities as Mention models.

    The SDK hands back bare Entity objects whose `mentioned` and `text` sit in `additional_properties`
    (`serialize()` drops them), so the model is rebuilt from both.
    """
    out = []
    for entity in activity.entities or []:
        if (entity.type or "").lower() == "mention":
            extra = getattr(entity, "additional_properties", None) or {}
            # An incoming Entity declares only its type: that is all its serialize() writes.
            declared = (
                {"type": entity.type} if type(entity) is Entity and type(entity.type) is str else entity.serialize()
            )
            out.append(from_wire(Mention, {**declared, **extra}))
    return out


def _payload_text(action: MessagingExtensionAction) -> str:
    payload = action.message_payload
    body = payload.body if payload is not None else None
    content = (body.content if body is not None else None) or ""
    return html.unescape(_TAGS.sub(" ", strip_mentions(content))).strip()


def _names(value: Any) -> tuple[str, ...]:
    """Tag names from a form: a list, or the comma-separated string a multi-select ChoiceSet sends."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))


def _search_response(customers: list[Customer]) -> dict[str, Any]:
    """The body Teams expects for `application/search`: title shown, value (customer id) submitted."""
    results = [{"title": choice_title(c), "value": str(c.id)} for c in customers]
    return {"type": SEARCH_RESPONSE_TYPE, "value": {"results": results}}


def _count(value: Any, default: int, low: int, high: int) -> int:
    """An integer query option clamped to [low, high]; anything unreadable is the default."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return max(low, min(number, high))


def _unknown_command_text(command_id: Any, lang: Lang) -> str:
    """What a message-extension command Kebiao does not have gets: which one, and what to use instead."""
    named = clip(str(command_id or ""), 40)  # a plain-text pop-up: nothing to escape
    if lang == "zh":
        return f"客标没有“{named}”这个命令：请使用客标的“查找客户”或“打标签”"
    return f"Kebiao has no command “{named}”: use Kebiao's “Find customer” or “Tag customer”"


def _unknown_action(action: MessagingExtensionAction, lang: Lang) -> MessagingExtensionActionResponse:
    """A fetchTask / submitAction for an unknown command id: a message pop-up, never the tag form."""
    log.warning("unknown message extension action command %r", str(action.command_id)[:60])
    return MessagingExtensionActionResponse(
        task=TaskModuleMessageResponse(value=_unknown_command_text(action.command_id, lang))
    )


def _card_action_problem(value: Any) -> str | None:
    """Why an `adaptiveCard/action` value cannot be run (None when it can)."""
    if not isinstance(value, dict):
        return "the invoke has no value object"
    action = value.get("action")
    if not isinstance(action, dict):
        return "value.action is missing or not an object"
    kind = action.get("type")
    if kind != "Action.Execute":
        return f"value.action.type must be Action.Execute, got {str(kind)[:40]!r}"
    return None


def _card_error(status: int, code: str, message: str) -> AdaptiveCardInvokeResponse:
    """The Universal Actions error response: the client keeps the card it shows."""
    return AdaptiveCardInvokeResponse(status_code=status, type=ERROR_TYPE, value={"code": code, "message": message})


def _quote(message: str) -> str:
    return "“" + literal(message, 200) + "”"


def _empty_text(wanted: str, lang: Lang) -> str:
    if not wanted:
        return "输入客户名称或标签（如 VIP客户 AND 询价客户）" if lang == "zh" else "Type a customer name or tags"
    return f"没有找到与“{wanted[:40]}”匹配的客户" if lang == "zh" else f"No customer matches “{wanted[:40]}”"
