"""The channel-neutral chat service: commands, linked-conversation messages and card actions → results.

Teams and WeCom both turn what a person did into a call here and render the returned result; nothing in
this module knows about either platform. Every call is idempotent: a retried message or a second click
returns the current state instead of doing the work twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from functools import partial
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from core import verbs
from core.alerts.actions import SNOOZE_DAYS, Action, AlertStatus, DigestContents, act_on_alert, digest_contents
from core.alerts.activity import note_message
from core.alerts.ports import AlertStore
from core.alerts.selection import AlertNotice, expiry_reason
from core.chat.channel_names import parse_channel_name
from core.chat.commands import HELP_TOPICS, Command, Verb, parse_command
from core.chat.link_offers import OfferSeal, check_seal, expired_on, seal_offer
from core.chat.meetings import customer_in_title, customers_named
from core.chat.ports import ChannelStore, ChatEvents, ConversationLink, TurnStore, TurnUnitOfWork
from core.errors import NotAllowedError, NotFoundError
from core.inbound import MAX_INT64
from core.learning.capture import Recorder
from core.learning.ports import MessageText
from core.learning.ports import Outcome as LearnedOutcome
from core.ports import Store, UnitOfWork
from core.records import SuggestionRecord
from core.tags.assignments import TagChange, TaggingRules, apply_tag, plain_apply, remove_tag
from core.tags.customers import resolve_customer
from core.tags.expression import ExpressionError
from core.tags.personal import PersonalChange, PersonalRefusal, PersonalTagStore, change_personal
from core.tags.search import search_customers
from core.tags.suggestions import (
    AUTO_ACTOR,
    MessageOutcome,
    SuggestionSource,
    applies_itself,
    decide_suggestion,
    planned_suggestions,
    store_suggestions,
)
from core.tags.summary import CustomerSummary, customer_summaries, customer_summary
from core.tags.users import display_names, get_user
from core.types import AssignmentState, Customer, EventKind, Role, Source, TagEvent, User
from tagging.normaliser import name_key
from tagging.policy import (
    AmbiguousTagError,
    CapRefusal,
    PolicyRefusal,
    ScopeRefusal,
    UnknownTagError,
    is_soft_cap_warning,
    is_visible,
    soft_cap_warning,
)
from tagging.regions import in_regions
from tagging.suggestion import Suggestion
from tagging.taxonomy import Taxonomy, Visibility

log = logging.getLogger(__name__)


PAGE_SIZE = 10
# How long a user's role, a conversation's link and the name and region of a linked conversation's customer are
# reused without asking the database. Changes made through this service (link, unlink) take effect at once; a
# role set from the CLI or another replica, a link changed by another replica, or a customer renamed or moved to
# another region (the scope of regional tags) is picked up within this many seconds.
CACHE_SECONDS = 10.0
# Conversation activity for churn scoring is written at most this often per customer (signals count days).
ACTIVITY_EVERY = timedelta(hours=1)
K = TypeVar("K")
V = TypeVar("V")
_CREATED = (EventKind.ADDED, EventKind.REPLACED)
HELP_HINT = "send help (帮助) for the list of commands"
FIND_HINT = "write tag names joined by AND / OR / NOT, e.g. find VIP客户 AND 询价客户"
UNCHANGED_HINT = "nothing was changed; fix the names and send it again"
UNCHANGED_HINT_ZH = "没有做任何修改；请改正后重新发送"


@dataclass(frozen=True, slots=True)
class ChatContext:
    """Who acts where and when; `shared` is True in group chats and channels (everyone sees the reply)."""

    channel: str
    conversation_id: str
    actor: User
    now: datetime
    shared: bool = False
    team_id: str = ""  # the Teams team the activity came from (empty outside a team)

    @property
    def viewer(self) -> User:
        """Whose eyes a reply is rendered for: in a shared conversation, the least privileged reader."""
        if self.shared and self.actor.role is not Role.AGENT:
            return replace(self.actor, role=Role.AGENT)
        return self.actor


# ---------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SummaryResult:
    """A customer's tags as the viewer may see them; `note` is a fixed sentence shown above them.

    `personal` holds the viewer's own personal tags, only where nobody else reads the reply (None: not shown);
    `personal_change` is what a `mytag` command just changed.
    """

    summary: CustomerSummary
    viewer: User
    note: str | None = None
    personal: tuple[str, ...] | None = None
    personal_change: PersonalChange | None = None
    prep: bool = False  # shown as meeting prep (会前准备)


@dataclass(frozen=True, slots=True)
class TagResult:
    """A `tag` command that changed (or renewed) tags, with the customer's tags afterwards."""

    summary: CustomerSummary
    viewer: User
    changes: tuple[TagChange, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkResult:
    """The conversation is now linked to `customer` (or, `linked` False, no longer linked to it)."""

    customer: Customer
    linked: bool
    summary: CustomerSummary | None = None
    viewer: User | None = None
    channel_name: str | None = None  # set when another channel was linked (from a channel-name offer)


@dataclass(frozen=True, slots=True)
class ChannelOffer:
    """A channel named by the convention ("[VIP]ABC公司-合同续约中") for `customer`: offer to link it."""

    channel_id: str
    channel_name: str
    customer: Customer
    seal: OfferSeal | None = None  # signs the Link button's data (channel, customer, team, expiry)


@dataclass(frozen=True, slots=True)
class SuggestResult:
    """Tags the matcher finds in a text (a dry run: nothing is stored)."""

    text: str
    suggestions: tuple[Suggestion, ...]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of customers matching a tag expression, each with the tags the viewer may see."""

    query: str
    hits: tuple[CustomerSummary, ...]
    total: int
    page: int
    page_size: int
    viewer: User
    total_is_lower_bound: bool = False  # there are more than `total` matches (they are counted up to a cap)


@dataclass(frozen=True, slots=True)
class ChoiceResult:
    """Several customers match; `context` goes back with the chosen customer id (verb customer.choose)."""

    query: str
    candidates: tuple[Customer, ...]
    context: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class HelpResult:
    topics: tuple[tuple[str, str, str], ...] = HELP_TOPICS
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorResult:
    """What went wrong (`detail`) and how to fix it (`hint`); `zh` holds both in Chinese where written."""

    detail: str
    hint: str | None = None
    zh: tuple[str, str | None] | None = None


@dataclass(frozen=True, slots=True)
class DigestPage:
    """Which page of a digest opened in full a result holds: `page` of `pages` (1-based), `total` rows in all."""

    page: int
    pages: int
    total: int


@dataclass(frozen=True, slots=True)
class AlertResult:
    """An alert after the recipient acknowledged or snoozed it; `names` maps user ids to display names.

    `page` is set when the alert is an expiry digest opened in full: its reasons are that page's rows.
    """

    status: AlertStatus
    names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    page: DigestPage | None = None


@dataclass(frozen=True, slots=True)
class SuggestionState:
    """The pending/decided suggestions raised by one message (one card); `names` maps user ids to names."""

    customer: Customer
    message_key: str
    records: tuple[SuggestionRecord, ...]
    names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    """A tag applied automatically from a message; `assignment_id` 0 once it is no longer held."""

    assignment_id: int
    dimension: str
    tag: str
    matched: tuple[str, ...]
    expires_at: datetime | None = None
    undone_by: str | None = None
    undone_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AppliedState:
    """Tags auto-applied from one message (the compact card with Undo)."""

    customer: Customer
    message_key: str
    entries: tuple[AppliedEntry, ...]
    names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


ChatResult = (
    SummaryResult
    | TagResult
    | LinkResult
    | SuggestResult
    | SearchResult
    | ChoiceResult
    | HelpResult
    | ErrorResult
    | SuggestionState
    | AppliedState
    | AlertResult
    | ChannelOffer
)


class BadAction(ValueError):
    """A card action's data is missing a key or holds the wrong type; the message names the key."""


Decider = Callable[["ChatService", ChatContext, Mapping[str, Any]], Awaitable[ChatResult]]


# ---------------------------------------------------------------- service


class _Recent(Generic[K, V]):
    """A small per-process memo whose entries are trusted for `seconds` (monotonic clock)."""

    def __init__(self, seconds: float, limit: int = 10_000) -> None:
        self.seconds = seconds
        self.limit = limit
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        item = self._items.get(key)
        if item is None or time.monotonic() - item[0] > self.seconds:
            return False, None
        return True, item[1]

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= self.limit:
            self._items.clear()  # crude but bounded; entries are cheap to reload
        self._items[key] = (time.monotonic(), value)

    def forget(self, key: K) -> None:
        self._items.pop(key, None)


class ChatService:
    """Runs chat commands and card actions through the core services, one unit of work each.

    `turns`, when given, writes a linked message's suggestions, text (learning) and customer event in one
    transaction; without it each takes its own. `activity`, when given, receives conversation activity for
    churn scoring (at most hourly per customer) and is the store the alert card actions (acknowledge, snooze)
    act on; without it they answer an error.
    """

    def __init__(
        self,
        store: Store,
        channels: ChannelStore,
        taxonomy: Callable[[], Taxonomy],
        matcher: Callable[[], SuggestionSource | None],
        rules: TaggingRules,
        activity: AlertStore | None = None,
        cache_seconds: float = CACHE_SECONDS,
        events: ChatEvents | None = None,
        learning: Recorder | None = None,
        personal: PersonalTagStore | None = None,
        link_key: bytes | None = None,
        turns: TurnStore | None = None,
    ) -> None:
        self.store = store
        # Signs channel-link offers; without a configured key, offers work only within this process.
        self._link_key = link_key or secrets.token_bytes(32)
        self._turns = turns
        self.personal = personal
        self.channels = channels
        self._taxonomy = taxonomy
        self._matcher = matcher
        self.rules = rules
        self._activity = activity
        self._events = events
        self.learning = learning or Recorder(None)
        self._users: _Recent[str, User] = _Recent(cache_seconds)
        self._links: _Recent[tuple[str, str], ConversationLink | None] = _Recent(cache_seconds)
        self._customers: _Recent[int, Customer] = _Recent(cache_seconds)
        self._noted: dict[int, datetime] = {}

    @property
    def taxonomy(self) -> Taxonomy:
        return self._taxonomy()

    async def actor(self, user_id: str, display_name: str, now: datetime) -> User:
        """The stored user (role, regions); a new or renamed user's display name is remembered."""
        hit, cached = self._users.get(user_id)
        if hit and cached is not None and (not display_name or cached.display_name == display_name):
            return cached
        # One read: the turn store's unit of work without a transaction takes no BEGIN and ROLLBACK round trips.
        reading = self._turns.unit_of_work(one_write=True) if self._turns is not None else None
        async with reading or self.store.unit_of_work(read_only=True) as uow:
            user = await get_user(uow, user_id)
        if display_name and user.display_name != display_name:  # only a new or renamed user writes
            async with self.store.unit_of_work() as uow:
                user = await get_user(uow, user_id)
                if user.display_name != display_name:
                    user = await uow.users.save(replace(user, display_name=display_name), now)
        self._users.put(user_id, user)
        return user

    def forget_user(self, user_id: str) -> None:
        """Drop a cached user (after a role change made in this process)."""
        self._users.forget(user_id)

    async def linked(self, channel: str, conversation_id: str) -> ConversationLink | None:
        """The conversation's customer link, reused for a few seconds."""
        hit, link = self._links.get((channel, conversation_id))
        if hit:
            return link
        link = await self.channels.linked(channel, conversation_id)
        self._links.put((channel, conversation_id), link)
        return link

    # ------------------------------------------------------------ text

    async def respond(
        self, ctx: ChatContext, message_key: str, text: str, *, addressed: bool = True
    ) -> tuple[ChatResult, ...]:
        """A message to the bot: a command runs; other text in a linked conversation is matched.

        Only a message addressed to the bot (an @mention, or any message in a personal chat) is a command:
        in a shared conversation people say `建议你们尽快退款` or `查看一下报价单` to each other, and that is
        conversation to match for the linked customer, not a command. Unknown text that was addressed to the
        bot and produced nothing gets the help card, never silence.
        """
        if not addressed:
            return await self.handle_message(ctx, message_key, text)
        command = parse_command(text)
        if command.verb is not Verb.UNKNOWN:
            return (await self.run(ctx, command),)
        matched = await self.handle_message(ctx, message_key, text)
        if matched:
            return matched
        if await self.linked(ctx.channel, ctx.conversation_id) is not None:
            return ()  # ordinary chat in a linked conversation that simply held no tags
        return (HelpResult(note="unknown"),)

    async def run(self, ctx: ChatContext, command: Command) -> ChatResult:
        """Run one parsed command; bad input becomes an ErrorResult and changes nothing."""
        if command.verb is Verb.HELP:
            return HelpResult()
        if command.verb is Verb.UNKNOWN:
            return HelpResult(note="unknown")
        if command.error is not None:
            if command.verb is Verb.MYTAG and command.customer is None and (command.add or command.remove):
                link = await self.linked(ctx.channel, ctx.conversation_id)
                if link is not None:  # `mytag +A` in a linked conversation notes the linked customer
                    return await self._mytag(ctx, link.customer_id, command.add, command.remove)
            if command.verb is Verb.PREP and command.customer is None:
                link = await self.linked(ctx.channel, ctx.conversation_id)
                if link is not None:  # `prep` in a linked conversation: the linked customer
                    return await self.prep(ctx, link.customer_id)
                zh = ("缺少客户；用法：会前 <客户>", "请写出客户名称，或先绑定本会话：绑定 <客户>")
                return ErrorResult(
                    command.error, "name the customer, or link this conversation first: link <customer>", zh
                )
            if command.verb is Verb.TAG and command.customer is None and (command.add or command.remove):
                link = await self.linked(ctx.channel, ctx.conversation_id)
                if link is not None:  # `tag +A` in a linked conversation tags the linked customer
                    result = await self._tag(ctx, link.customer_id, command.add, command.remove)
                    await self._learn_conversation_tags(ctx, link.customer_id, result)
                    return result
                return ErrorResult(command.error, "name the customer, or link this conversation first: link <customer>")
            return ErrorResult(command.error, HELP_HINT)
        if command.verb is Verb.UNLINK:
            return await self._unlink(ctx, command.customer)
        if command.verb is Verb.FIND:
            return await self.search(ctx, command.argument, 1)
        if command.verb is Verb.SUGGEST:
            return self.suggest(ctx, command.argument, await self.suggest_regions(ctx))
        if command.verb is Verb.MYTAG and (refused := self._personal_refusal(ctx)) is not None:
            return refused
        name = command.customer or ""
        async with self.store.unit_of_work(read_only=True) as uow:
            resolution = await resolve_customer(uow, name)
        if resolution.customer is None:
            if not resolution.candidates:
                hint = "check the spelling, or use the crm id or full name"
                if command.verb is Verb.MYTAG and not command.add and not command.remove and " " in name.strip():
                    hint = "put + before a tag to add it and - to remove it, e.g. mytag ABC公司 +周三拜访"
                return ErrorResult(f"no customer matches {name!r}", hint)
            context = {"verb": command.verb.value, "add": "\n".join(command.add), "remove": "\n".join(command.remove)}
            return ChoiceResult(name, resolution.candidates, MappingProxyType(context))
        return await self._for_customer(ctx, command.verb, resolution.customer.id, command.add, command.remove)

    async def _for_customer(
        self, ctx: ChatContext, verb: Verb, customer_id: int, add: tuple[str, ...], remove: tuple[str, ...]
    ) -> ChatResult:
        if verb is Verb.TAG:
            result = await self._tag(ctx, customer_id, add, remove)
            link = await self.linked(ctx.channel, ctx.conversation_id)
            if link is not None and link.customer_id == customer_id:
                await self._learn_conversation_tags(ctx, customer_id, result)
            return result
        if verb is Verb.LINK:
            return await self._link(ctx, customer_id)
        if verb is Verb.MYTAG:
            return await self._mytag(ctx, customer_id, add, remove)
        if verb is Verb.PREP:
            return await self.prep(ctx, customer_id)
        return await self.summary(ctx, customer_id)

    async def prep(self, ctx: ChatContext, customer_id: int) -> ChatResult:
        """The customer's card as meeting prep (personal tags too, where only the viewer reads it)."""
        result = await self.summary(ctx, customer_id)
        return replace(result, prep=True) if isinstance(result, SummaryResult) else result

    async def channel_named(self, ctx: ChatContext, channel_id: str, name: str) -> ChannelOffer | None:
        """A channel created or renamed: the link offer when its name follows the convention for one customer.

        None (post nothing) for any other name, near misses included, an unknown or ambiguous customer, or a
        channel already linked to that customer.
        """
        parsed = parse_channel_name(name)
        if parsed is None or not _is_thread_id(channel_id) or not ctx.team_id:
            return None
        async with self.store.unit_of_work(read_only=True) as uow:
            named = await customers_named(uow, parsed.customer)
        if len(named) != 1:
            return None
        customer = named[0]
        link = await self.linked(ctx.channel, channel_id)
        if link is not None and link.customer_id == customer.id:
            return None
        seal = seal_offer(self._link_key, channel_id, customer.id, ctx.team_id, ctx.now)
        return ChannelOffer(channel_id, name.strip(), customer, seal)

    async def meeting_start(self, ctx: ChatContext, title: str) -> ChatResult | None:
        """The prep card for a meeting that starts: its chat's linked customer, else the one its title names.

        None (post nothing) when the meeting is about no known customer, or its title names several.
        """
        link = await self.linked(ctx.channel, ctx.conversation_id)
        if link is not None:
            return await self.prep(ctx, link.customer_id)
        async with self.store.unit_of_work(read_only=True) as uow:
            customer = await customer_in_title(uow, title)
        if customer is None:
            return None
        return await self.prep(ctx, customer.id)

    async def summary(self, ctx: ChatContext, customer_id: int, note: str | None = None) -> ChatResult:
        """The customer's card for the viewer."""
        async with self.store.unit_of_work(read_only=True) as uow:
            try:
                summary = await customer_summary(uow, self.taxonomy, customer_id, ctx.viewer, ctx.now)
            except NotFoundError as exc:
                return ErrorResult(str(exc), HELP_HINT)
        return SummaryResult(summary, ctx.viewer, note, await self._personal_names(ctx, customer_id))

    async def _personal_names(self, ctx: ChatContext, customer_id: int) -> tuple[str, ...] | None:
        """The actor's personal tags on the customer, only for a reply nobody else reads (None: not shown)."""
        if self.personal is None or ctx.shared:
            return None
        return tuple(t.name for t in await self.personal.personal_for(customer_id, ctx.actor.id))

    def _personal_refusal(self, ctx: ChatContext) -> ErrorResult | None:
        """Why `mytag` cannot run here: no personal-tag store, or a conversation others read."""
        if self.personal is None:
            return ErrorResult(
                "personal tags are not available here", HELP_HINT, ("这里不能使用个人标签", "发送 帮助 查看可用命令")
            )
        if ctx.shared:
            return ErrorResult(
                "personal tags are private: use mytag in your 1:1 chat with the bot, not here",
                "open a personal chat with the bot and send the command there",
                ("个人标签只有自己可见，请在与机器人的私聊中使用“我的标签”", "打开与机器人的一对一聊天再发送该命令"),
            )
        return None

    async def _mytag(
        self, ctx: ChatContext, customer_id: int, add: tuple[str, ...], remove: tuple[str, ...]
    ) -> ChatResult:
        """Change (or, with no + or -, list) the actor's personal tags on the customer; shown with the card."""
        if (refused := self._personal_refusal(ctx)) is not None or self.personal is None:
            return refused or ErrorResult("personal tags are not available here")
        async with self.store.unit_of_work(read_only=True) as uow:
            try:
                summary = await customer_summary(uow, self.taxonomy, customer_id, ctx.viewer, ctx.now)
            except NotFoundError as exc:
                return ErrorResult(str(exc), HELP_HINT)
        try:
            change = await change_personal(self.personal, customer_id, ctx.actor.id, add, remove, ctx.now)
        except PersonalRefusal as exc:
            zh = ("；".join(p[1] for p in exc.problems), UNCHANGED_HINT_ZH)
            return ErrorResult("; ".join(p[0] for p in exc.problems), UNCHANGED_HINT, zh)
        names = tuple(t.name for t in change.held)
        return SummaryResult(summary, ctx.viewer, None, names, change if add or remove else None)

    async def search(self, ctx: ChatContext, query: str, page: int) -> ChatResult:
        """One page of customers matching a tag expression (page is 1-based)."""
        page = max(page, 1)
        async with self.store.unit_of_work(read_only=True) as uow:
            try:
                found = await search_customers(
                    uow, self.taxonomy, query, ctx.viewer, ctx.now, (page - 1) * PAGE_SIZE, PAGE_SIZE
                )
            except ExpressionError as exc:
                return ErrorResult(f"tag expression: {exc}", FIND_HINT)
            except (UnknownTagError, AmbiguousTagError) as exc:
                return ErrorResult(_message(exc), FIND_HINT)
            hits = tuple(await customer_summaries(uow, self.taxonomy, found.customers, ctx.viewer, ctx.now))
        return SearchResult(query, hits, found.total, page, PAGE_SIZE, ctx.viewer, found.total_is_lower_bound)

    async def lookup(self, ctx: ChatContext, text: str, skip: int, count: int) -> SearchResult:
        """Message-extension search: customers by name first, else by tag expression; never an error."""
        wanted = text.strip()
        count = max(1, min(count, 25))
        empty = SearchResult(wanted, (), 0, 1, count, ctx.viewer)
        if not wanted:
            return empty
        async with self.store.unit_of_work(read_only=True) as uow:
            resolution = await resolve_customer(uow, wanted, limit=skip + count + 1)
            named = [resolution.customer] if resolution.customer else list(resolution.candidates)
            more = False
            if named:
                page = named[skip : skip + count]
                total = len(named)
            else:
                try:
                    found = await search_customers(uow, self.taxonomy, wanted, ctx.viewer, ctx.now, skip, count)
                except (ExpressionError, UnknownTagError, AmbiguousTagError):
                    return empty  # neither a customer nor a tag expression the viewer may use
                page, total, more = list(found.customers), found.total, found.total_is_lower_bound
            hits = tuple(await customer_summaries(uow, self.taxonomy, page, ctx.viewer, ctx.now))
        return SearchResult(wanted, hits, total, skip // count + 1, count, ctx.viewer, more)

    async def customer_choices(self, ctx: ChatContext, limit: int) -> list[Customer]:
        """Customers for a picker: the conversation's linked customer first, then others by name."""
        link = await self.linked(ctx.channel, ctx.conversation_id)
        async with self.store.unit_of_work(read_only=True) as uow:
            first = await uow.customers.get(link.customer_id) if link else None
            others = await uow.customers.find_by_name_key("", limit)
        out = [first] if first else []
        out.extend(c for c in others if first is None or c.id != first.id)
        return out[:limit]

    def suggest(
        self, ctx: ChatContext, text: str, regions: tuple[str, ...] | None = None
    ) -> SuggestResult | ErrorResult:
        """A dry run of the matcher on `text`, without tags the viewer may not see nor (given `regions`, a
        customer's region or a manager's) tags scoped to other regions."""
        matcher = self._matcher()
        if matcher is None:
            return ErrorResult("the tag matcher is still loading", "try again in a few seconds")
        sees = ctx.viewer.role.sees_sensitive
        found = tuple(s for s in matcher.suggest(text) if is_visible(self.taxonomy.dimension(s.dimension), sees))
        if regions is not None:
            found = in_regions(self.taxonomy, found, regions)
        return SuggestResult(text, found)

    async def suggest_regions(self, ctx: ChatContext) -> tuple[str, ...] | None:
        """The regions a dry run is for: the linked customer's, else the actor's own (a regional manager's),
        else None (every region)."""
        link = await self.linked(ctx.channel, ctx.conversation_id)
        if link is not None:
            async with self.store.unit_of_work(read_only=True) as uow:
                customer = await uow.customers.get(link.customer_id)
            if customer is not None:
                return (customer.region,)
        return ctx.actor.regions or None

    async def _tag(
        self, ctx: ChatContext, customer_id: int, add: tuple[str, ...], remove: tuple[str, ...]
    ) -> ChatResult:
        """Apply every + and remove every - in one transaction; any problem rolls all of it back."""
        sees = ctx.viewer.role.sees_sensitive
        changes: list[TagChange] = []
        problems: list[tuple[str, str]] = []  # (English, Chinese)
        async with self.store.unit_of_work() as uow:
            # Removals first, then additions; each step is (sign, name, the call less its shared keywords).
            steps = [("-", name, partial(remove_tag, uow, self.taxonomy, customer_id, name)) for name in remove]
            steps += [
                ("+", name, partial(apply_tag, uow, self.taxonomy, self.rules, customer_id, name)) for name in add
            ]
            for sign, name, step in steps:
                try:
                    changes.append(
                        await step(actor=ctx.actor.id, source=Source.MANUAL, now=ctx.now, sees_sensitive=sees)
                    )
                except (UnknownTagError, AmbiguousTagError, PolicyRefusal, NotFoundError) as exc:
                    problems.append((f"{sign}{name}: {_message(exc, sees)}", f"{sign}{name}：{_message_zh(exc, sees)}"))
            if problems:
                uow.discard()
                zh = ("；".join(p[1] for p in problems), UNCHANGED_HINT_ZH)
                return ErrorResult("; ".join(p[0] for p in problems), UNCHANGED_HINT, zh)
            summary = await customer_summary(uow, self.taxonomy, customer_id, ctx.viewer, ctx.now)
        warnings = tuple(dict.fromkeys(w for c in changes for w in c.warnings))
        if not sees:
            warnings = _visible_warnings(warnings, summary)
        return TagResult(summary, ctx.viewer, tuple(changes), warnings)

    async def tag(self, ctx: ChatContext, customer_id: int, add: tuple[str, ...], source_text: str = "") -> ChatResult:
        """Add tags to the customer with this id (a picker sent the id: no name to resolve again).

        `source_text` is the message the person tagged from (the message action): it becomes a positive
        example of each added tag.
        """
        result = await self._tag(ctx, customer_id, add, ())
        if isinstance(result, TagResult) and source_text.strip():
            added = [(c.dimension, c.tag) for c in result.changes if c.outcome in ("added", "renewed")]
            await self.learning.tagged(source_text, added, customer_id, ctx.now)
        return result

    async def _learn_conversation_tags(self, ctx: ChatContext, customer_id: int, result: ChatResult) -> None:
        """A `tag +A` command in a linked conversation: the conversation's latest message is an example of A."""
        if not isinstance(result, TagResult):
            return
        added = [(c.dimension, c.tag) for c in result.changes if c.outcome in ("added", "renewed")]
        await self.learning.tagged_in_conversation(ctx.channel, ctx.conversation_id, added, customer_id, ctx.now)

    async def pick_customers(self, ctx: ChatContext, text: str, skip: int, count: int) -> list[Customer]:
        """Customers for a typeahead picker: by name (normalised, prefix and contained), best first."""
        wanted = name_key(text)
        count = max(1, min(count, 50))
        async with self.store.unit_of_work(read_only=True) as uow:
            if not wanted:
                found = await uow.customers.find_by_name_key("", skip + count)
            else:
                exact = await uow.customers.find_exact(text.strip())
                by_key = await uow.customers.find_by_name_key(wanted, skip + count)
                found = list({c.id: c for c in [*exact, *by_key]}.values())
        return found[skip : skip + count]

    async def _link(self, ctx: ChatContext, customer_id: int) -> ChatResult:
        await self.channels.link(ctx.channel, ctx.conversation_id, customer_id, ctx.actor.id, ctx.now)
        self._links.forget((ctx.channel, ctx.conversation_id))
        async with self.store.unit_of_work(read_only=True) as uow:
            summary = await customer_summary(uow, self.taxonomy, customer_id, ctx.viewer, ctx.now)
        log.info("%s conversation linked to customer %d by %s", ctx.channel, customer_id, ctx.actor.id)
        return LinkResult(summary.customer, True, summary, ctx.viewer)

    async def _unlink(self, ctx: ChatContext, named: str | None) -> ChatResult:
        self._links.forget((ctx.channel, ctx.conversation_id))  # decide on the stored link, not a memo
        link = await self.linked(ctx.channel, ctx.conversation_id)
        if link is None:
            return ErrorResult("this conversation is not linked to a customer", "link it with: link <customer>")
        async with self.store.unit_of_work(read_only=True) as uow:
            customer = await uow.customers.get(link.customer_id)
            if named:
                resolution = await resolve_customer(uow, named)
                if resolution.customer is None or resolution.customer.id != link.customer_id:
                    linked_name = customer.name if customer else str(link.customer_id)
                    return ErrorResult(
                        f"this conversation is linked to {linked_name}, not {named}",
                        "send unlink without a name to remove the current link",
                    )
        await self.channels.unlink(ctx.channel, ctx.conversation_id)
        self._links.forget((ctx.channel, ctx.conversation_id))
        return LinkResult(customer or Customer(id=link.customer_id, name=str(link.customer_id)), False)

    # ------------------------------------------------------------ linked conversations

    async def handle_message(self, ctx: ChatContext, message_key: str, text: str) -> tuple[ChatResult, ...]:
        """Match a person's message in a linked conversation: (applied card, suggestion card), each if any.

        A message seen before (same key) changes nothing and gets its cards again, rendered from what was
        stored: it only arrives again when the platform never got its reply (the channel de-duplicates
        retries of messages that were answered).
        """
        link = await self.linked(ctx.channel, ctx.conversation_id)
        matcher = self._matcher()
        if link is None or matcher is None or not text.strip():
            return ()
        await self._note_activity(ctx, link.customer_id)
        customer_id = link.customer_id
        if self._turns is None:  # no turn store: the text and the event each take their own transaction
            await self.learning.remember(message_key, ctx.channel, ctx.conversation_id, customer_id, text, ctx.now)
        taxonomy = self.taxonomy
        sees = ctx.viewer.role.sees_sensitive
        suggestions = matcher.suggest(text)  # CPU work: done before the write transaction, never inside it
        kept = self.learning.kept(message_key, ctx.channel, ctx.conversation_id, customer_id, text, ctx.now)
        out: list[ChatResult] = []
        new_event = False
        # A message that applies no tag writes only its suggestions, text and event: one write, which needs no
        # transaction where the store makes it one statement; so does one applying a single tag where the store
        # writes that tag in the same statement. Anything more reads and writes in one transaction.
        applying = sum(1 for s in suggestions if applies_itself(s))
        written: tuple[MessageOutcome, bool] | None = None
        if self._turns is not None and (applying == 0 or (applying == 1 and self._turns.applies_at_once)):
            one = self._turns.unit_of_work(one_write=True)
            async with one:
                written = await self._write_suggested(one, ctx, customer_id, message_key, taxonomy, suggestions, kept)
                if written is not None and written[0].duplicate:
                    return await self._stored_cards(one, ctx, customer_id, message_key)
        if written is not None:
            outcome, new_event = written
        else:  # the tag's policy replaces, renews or refuses: apply_definition decides it in the transaction
            turn = self._turns.unit_of_work() if self._turns is not None else None  # `uow` below
            async with turn or self.store.unit_of_work() as uow:
                customer = await self._customer(uow, customer_id)
                outcome = await store_suggestions(
                    uow, suggestions, taxonomy, self.rules, customer_id, message_key, ctx.now, customer
                )
                if outcome.duplicate:
                    return await self._stored_cards(uow, ctx, customer_id, message_key)
                if turn is not None:
                    new_event = await self._keep_with_turn(turn, ctx, customer_id, message_key, kept)
        applied = fresh_applied_state(outcome, message_key, taxonomy, sees)
        if applied is not None:
            out.append(applied)
        # A new message's pending rows are exactly the ones just stored (undecided, no names to look up).
        visible = tuple(r for r in outcome.pending if is_visible(taxonomy.dimension(r.dimension), sees))
        if visible and outcome.customer is not None:
            out.append(SuggestionState(outcome.customer, message_key, visible))
        for reason in outcome.refused:
            log.info("auto-apply refused for customer %d: %s", customer_id, reason)
        if self._events is not None:
            matched = tuple(dict.fromkeys([*(c.tag for c in outcome.applied), *(r.tag for r in outcome.pending)]))
            if self._turns is None:
                await self._events.message(customer_id, message_key, ctx.channel, matched, ctx.now)
            else:
                await self._events.after_message(customer_id, message_key, matched, ctx.now, new_event)
        return tuple(out)

    async def _keep_with_turn(
        self, uow: TurnUnitOfWork, ctx: ChatContext, customer_id: int, message_key: str, kept: MessageText | None
    ) -> bool:
        """The message's text (learning) and its `message` event, in the turn's transaction; True: a new event.

        They commit or roll back with the suggestions: a failure here fails the turn, whose retry runs again.
        """
        event = self._message_event(ctx, customer_id, message_key)
        return await uow.keep_message(message_key, kept, event, ctx.now)

    async def _write_suggested(
        self,
        uow: TurnUnitOfWork,
        ctx: ChatContext,
        customer_id: int,
        message_key: str,
        taxonomy: Taxonomy,
        suggestions: Sequence[Suggestion],
        kept: MessageText | None,
    ) -> tuple[MessageOutcome, bool] | None:
        """A message's suggestions, text and event, and the one tag it may apply, in one write; (outcome, new
        event). None, with nothing written, when that tag's policy needs more than adding it (`plain_apply`)."""
        customer = await self._customer(uow, customer_id)
        planned = planned_suggestions(suggestions, taxonomy, customer, message_key, ctx.now)
        auto = next((p for p in planned if p.auto), None)
        plan = None
        if auto is not None:
            # Read outside any transaction, as a transaction at READ COMMITTED would read it: the write below
            # still skips a row added meanwhile (the active-tag unique index), as apply_definition does.
            held = await uow.assignments.holding(
                customer_id, auto.dimension.key, name_key(auto.tag.name), whole_dimension=auto.dimension.exclusive
            )
            evidence = dict(auto.row.evidence, message_key=message_key, score=auto.row.score)
            plan = plain_apply(
                auto.dimension, auto.tag, self.rules, customer, held,
                actor=AUTO_ACTOR, source=Source.KEYWORD, now=ctx.now, evidence=evidence,
            )
            if plan is None:
                return None
        event = self._message_event(ctx, customer_id, message_key)
        applies = plan.added if plan is not None else None
        wrote = await uow.write_message(message_key, [p.row for p in planned], kept, event, ctx.now, applies)
        duplicate = not wrote.added and wrote.seen  # every suggestion was stored by an earlier run of it
        pending = tuple(r for r in wrote.added if not r.auto_applied)
        outcome = MessageOutcome((), pending, duplicate=duplicate, customer=customer)
        if plan is not None and auto is not None and any(r.auto_applied for r in wrote.added):
            matched = (tuple(auto.suggestion.matched),)
            outcome = replace(outcome, applied=(plan.landed(wrote.applied_id),), applied_matched=matched)
        return outcome, wrote.new_event

    def _message_event(self, ctx: ChatContext, customer_id: int, message_key: str) -> Any:
        """The message's `message` event for the turn to store (None when events are not recorded)."""
        if self._events is None:
            return None
        return self._events.message_event(customer_id, message_key, ctx.channel, ctx.now)

    async def _customer(self, uow: UnitOfWork, customer_id: int) -> Customer:
        """A linked conversation's customer: its name for the cards, its region for the scope of regional tags.

        Reused for a few seconds, like the conversation's link; the tags it holds, which the tag policy checks,
        are always read in the turn's own transaction.
        """
        hit, customer = self._customers.get(customer_id)
        if not hit or customer is None:
            customer = await uow.customers.get(customer_id)
            if customer is None:
                raise NotFoundError(f"customer {customer_id} does not exist")
            self._customers.put(customer_id, customer)
        return customer

    async def _stored_cards(
        self, uow: UnitOfWork, ctx: ChatContext, customer_id: int, message_key: str
    ) -> tuple[ChatResult, ...]:
        """The cards of a message handled before, in their current state (applied card, suggestion card)."""
        out: list[ChatResult] = []
        applied = await self._applied_state(uow, ctx, customer_id, message_key)
        if applied is not None and applied.entries:
            out.append(applied)
        suggested = await self._suggestion_state(uow, ctx, message_key)
        if suggested is not None:
            out.append(suggested)
        return tuple(out)

    async def _note_activity(self, ctx: ChatContext, customer_id: int) -> None:
        """Record that the customer's conversation is alive (for churn scoring), at most hourly per customer."""
        if self._activity is None:
            return
        last = self._noted.get(customer_id)
        if last is not None and last <= ctx.now < last + ACTIVITY_EVERY:
            return
        try:
            await note_message(self._activity, customer_id, ctx.channel, ctx.now)
        except Exception:
            # Churn scoring tolerates a missed beat; the person's message must still be answered.
            log.exception("could not record conversation activity for customer %d", customer_id)
            return
        if len(self._noted) >= 100_000:
            self._noted.clear()
        self._noted[customer_id] = ctx.now

    async def _suggestion_state(
        self, uow: UnitOfWork, ctx: ChatContext, message_key: str, problems: tuple[str, ...] = ()
    ) -> SuggestionState | None:
        """The suggestion card of a message as the viewer may see it (None when the message is unknown)."""
        sees = ctx.viewer.role.sees_sensitive
        rows = [
            r
            for r in await uow.suggestions.for_message(message_key)
            if not r.auto_applied and is_visible(self.taxonomy.dimension(r.dimension), sees)
        ]
        if not rows:
            return None
        customer = await uow.customers.get(rows[0].customer_id)
        if customer is None:
            return None
        names = await _names(uow, [r.decided_by for r in rows])
        return SuggestionState(customer, message_key, tuple(rows), names, problems)

    async def _applied_state(
        self, uow: UnitOfWork, ctx: ChatContext, customer_id: int, message_key: str
    ) -> AppliedState | None:
        """The applied card of a message: each auto-applied tag, still held (Undo) or undone (who, when)."""
        customer = await uow.customers.get(customer_id)
        if customer is None:
            return None
        sees = ctx.viewer.role.sees_sensitive
        rows = [
            r
            for r in await uow.suggestions.for_message(message_key)
            if r.auto_applied
            and r.customer_id == customer_id
            and is_visible(self.taxonomy.dimension(r.dimension), sees)
        ]
        active = {(a.dimension, name_key(a.tag)): a for a in await uow.assignments.active_for(customer_id)}
        events = await uow.events.for_customer(customer_id, 0, 200)
        entries: list[AppliedEntry] = []
        for r in rows:
            created = _created_by(events, message_key, r.dimension, r.tag)
            if created is None:
                continue  # the customer already held the tag: this message only renewed it, nothing to undo
            matched = tuple(str(w) for w in r.evidence.get("matched", ()))
            held = active.get((r.dimension, name_key(r.tag)))
            if held is not None and held.assigned_by == AUTO_ACTOR and held.assigned_at == created.at:
                entries.append(AppliedEntry(held.id, r.dimension, r.tag, matched, held.expires_at))
                continue
            ended = next(
                (
                    e
                    for e in events  # newest first: the change that ended it
                    if e.dimension == r.dimension
                    and name_key(e.tag) == name_key(r.tag)
                    and e.kind in (EventKind.REMOVED, EventKind.EXPIRED)
                    and e.at >= r.created_at
                ),
                None,
            )
            who = ended.actor if ended is not None else None
            when = ended.at if ended is not None else r.created_at
            entries.append(AppliedEntry(0, r.dimension, r.tag, matched, None, who or "?", when))
        names = await _names(uow, [e.undone_by for e in entries])
        return AppliedState(customer, message_key, tuple(entries), names)

    # ------------------------------------------------------------ card actions

    async def decide(self, ctx: ChatContext, verb: str, data: Mapping[str, Any]) -> ChatResult:
        """Run a card action (accept, reject, accept-all, undo, choose, show, page) by its verb."""
        handler = DECISIONS.get(verb)
        if handler is None:
            return ErrorResult(f"unknown card action {verb!r}", "the card may be from an older version; ask again")
        try:
            return await handler(self, ctx, data)
        except BadAction as exc:
            return ErrorResult(f"card action {verb}: {exc}", "the card may be damaged; ask for a new one")
        except NotFoundError as exc:
            return ErrorResult(str(exc), "the item may have been deleted; ask for a new card")

    async def _decide_one(self, ctx: ChatContext, data: Mapping[str, Any], accept: bool) -> ChatResult:
        return await self._decide_many(ctx, (_int(data, "suggestion_id"),), accept)

    async def _decide_many(self, ctx: ChatContext, ids: tuple[int, ...], accept: bool) -> ChatResult:
        """Decide each suggestion in its own transaction (one refusal keeps the others); return the card."""
        sees = ctx.viewer.role.sees_sensitive
        problems: list[str] = []
        message_key = ""
        for suggestion_id in ids:
            async with self.store.unit_of_work(read_only=True) as uow:
                record = await uow.suggestions.get(suggestion_id)
                if record is None or not is_visible(self.taxonomy.dimension(record.dimension), sees):
                    raise NotFoundError(f"suggestion {suggestion_id} does not exist")
                message_key = message_key or record.message_key
            try:
                async with self.store.unit_of_work() as uow:
                    decision = await decide_suggestion(
                        uow, self.taxonomy, self.rules, suggestion_id, accept=accept, actor=ctx.actor.id, now=ctx.now
                    )
            except (PolicyRefusal, UnknownTagError, AmbiguousTagError) as exc:
                problems.append(f"{record.tag}: {_message(exc, sees)}")
                continue
            if self._events is not None and not decision.already:
                await self._events.decided(record.customer_id, suggestion_id, record.tag, accept, ctx.actor.id, ctx.now)
            if not decision.already:
                outcome = LearnedOutcome.ACCEPTED if accept else LearnedOutcome.REJECTED
                await self.learning.decided(
                    record.message_key, record.dimension, record.tag, outcome, record.customer_id, ctx.now
                )
        async with self.store.unit_of_work(read_only=True) as uow:
            state = await self._suggestion_state(uow, ctx, message_key, tuple(problems))
        if state is None:
            raise NotFoundError(f"no suggestions for message {message_key!r}")
        return state


async def _accept(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    return await service._decide_one(ctx, data, True)


async def _reject(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    return await service._decide_one(ctx, data, False)


async def _accept_all(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    raw = data.get("suggestion_ids")
    if not isinstance(raw, list | tuple) or not raw:
        raise BadAction("suggestion_ids must be a non-empty list of suggestion ids")
    return await service._decide_many(ctx, tuple(_int({"id": v}, "id") for v in raw), True)


async def _undo(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    """Remove an auto-applied tag (once: a second click finds it gone) and return the refreshed card."""
    assignment_id = _int(data, "assignment_id")
    customer_id = _int(data, "customer_id")
    message_key = _str(data, "message_key")
    sees = ctx.viewer.role.sees_sensitive
    undone: tuple[str, str] | None = None
    async with service.store.unit_of_work() as uow:
        before = await service._applied_state(uow, ctx, customer_id, message_key)
        # Only an assignment this message's auto-apply created can be undone from its card.
        undoable = before is not None and any(e.assignment_id == assignment_id for e in before.entries)
        held = next((a for a in await uow.assignments.active_for(customer_id) if a.id == assignment_id), None)
        if undoable and held is not None and is_visible(service.taxonomy.dimension(held.dimension), sees):
            await remove_tag(
                uow,
                service.taxonomy,
                customer_id,
                held.tag,
                actor=ctx.actor.id,
                source=Source.MANUAL,
                now=ctx.now,
                evidence={"undo_of": assignment_id, "message_key": message_key},
                dimension=held.dimension,
                sees_sensitive=sees,
            )
            undone = (held.dimension, held.tag)
        state = await service._applied_state(uow, ctx, customer_id, message_key)
    if state is None:
        raise NotFoundError(f"customer {customer_id} does not exist")
    if undone is not None:
        await service.learning.decided(message_key, *undone, LearnedOutcome.UNDONE, customer_id, ctx.now)
    return state


async def _choose(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    """The person picked one customer from a choice card: run the original command for it."""
    customer_id = _int(data, "customer_id")
    raw_verb = str(data.get("verb") or Verb.TAGS.value)
    try:
        verb = Verb(raw_verb)
    except ValueError:
        raise BadAction(f"verb {raw_verb!r} is not a command") from None
    add = tuple(n for n in str(data.get("add") or "").split("\n") if n)
    remove = tuple(n for n in str(data.get("remove") or "").split("\n") if n)
    return await service._for_customer(ctx, verb, customer_id, add, remove)


async def _show(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    return await service.summary(ctx, _int(data, "customer_id"))


async def _page(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    return await service.search(ctx, _str(data, "query"), _int(data, "page", MAX_PAGE))


async def _link_channel(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    """The Link button of a channel-name offer: link that channel to the customer."""
    channel_id = _str(data, "channel_id")
    if not _is_thread_id(channel_id):
        raise BadAction(f"channel_id {channel_id[:60]!r} is not a Teams channel id")
    customer_id = _int(data, "customer_id")
    refusal = check_seal(service._link_key, data, channel_id, customer_id, ctx.team_id, ctx.now)
    if refusal is not None:
        log.warning("channel link click refused (%s) for channel %s", refusal, channel_id[:80])
        return _offer_refusal(refusal, data, service.rules.tz)
    async with service.store.unit_of_work(read_only=True) as uow:
        if await uow.customers.get(customer_id) is None:
            raise NotFoundError(f"customer {customer_id} does not exist")
    result = await service._link(replace(ctx, conversation_id=channel_id), customer_id)
    name = data.get("channel_name")
    if isinstance(result, LinkResult) and isinstance(name, str) and name.strip():
        return replace(result, channel_name=name.strip()[:200])
    return result


def _offer_refusal(refusal: str, data: Mapping[str, Any], tz: tzinfo) -> ErrorResult:
    """The card for a Link button that cannot link: forged or altered, expired, or used outside its team."""
    again = (
        "rename the channel to the convention again for a new offer, or send link <customer> in that channel",
        "请按命名规范重新命名频道以获得新的绑定提示，或在该频道里发送：绑定 <客户>",
    )
    if refusal == "expired":
        day = datetime.fromtimestamp(expired_on(data), tz).date().isoformat()
        zh = (f"这个绑定按钮已于 {day} 过期，没有绑定", again[1])
        return ErrorResult(f"this Link button expired on {day}; nothing was linked", again[0], zh)
    if refusal == "elsewhere":
        return ErrorResult(
            "this Link button works only in the team whose channel it offers to link; nothing was linked",
            again[0],
            ("这个绑定按钮只能在它所属的团队里使用，没有绑定", again[1]),
        )
    return ErrorResult(
        "this Link button's data is not what Kebiao signed (forged or altered); nothing was linked",
        again[0],
        ("这个绑定按钮的数据不是客标签发的（被伪造或改动过），没有绑定", again[1]),
    )


async def _alert(service: ChatService, ctx: ChatContext, data: Mapping[str, Any], action: Action) -> ChatResult:
    """Acknowledge or snooze an alert for its recipient and return the alert card's new state."""
    alert_id = _int(data, "alert_id")
    days = _int(data, "days") if action == "snooze" and data.get("days") is not None else SNOOZE_DAYS
    if not 1 <= days <= 90:
        raise BadAction(f"days must be between 1 and 90, got {days}")
    store = service._activity
    if store is None:
        return ErrorResult(
            "alert actions are not available on this channel",
            "handle the alert where it was delivered",
            ("这个渠道不能处理提醒", "请在收到提醒的地方处理"),
        )
    try:
        status = await act_on_alert(store, alert_id, ctx.actor.id, action, ctx.now, days)
    except NotAllowedError as exc:
        return ErrorResult(
            str(exc),
            "only the person the alert was sent to can acknowledge or snooze it",
            (f"提醒 {alert_id} 是发给别人的，只有收到提醒的人才能处理", "只有收到提醒的人才能确认或暂停提醒"),
        )
    names = {ctx.actor.id: ctx.actor.display_name} if ctx.actor.display_name else {}
    owner = status.notice.owner
    if owner and owner not in names:  # the card says whose customer it is by name, not by id
        async with service.store.unit_of_work(read_only=True) as uow:
            names |= await _names(uow, [owner])
    return AlertResult(status, MappingProxyType(names))


async def _ack(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    return await _alert(service, ctx, data, "ack")


async def _snooze(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    return await _alert(service, ctx, data, "snooze")


async def _digest_all(service: ChatService, ctx: ChatContext, data: Mapping[str, Any]) -> ChatResult:
    """'显示全部' on an expiry digest: the digest again, listing every tag it covers that the viewer may see,
    DIGEST_PAGE_SIZE rows a page (`page` in the data, 1 when absent)."""
    alert_id = _int(data, "alert_id")
    page = 1 if data.get("page") is None else _int(data, "page", MAX_PAGE)
    if page < 1:
        raise BadAction("page must be 1 or more, got 0")
    if service._activity is None:
        return ErrorResult(
            "alerts are not available on this channel",
            "open the digest where it was delivered",
            ("这个渠道不能查看提醒", "请在收到提醒的地方查看"),
        )
    try:
        contents = await digest_contents(service._activity, alert_id, ctx.actor.id, ctx.now)
    except NotAllowedError as exc:
        return ErrorResult(
            str(exc),
            "only the person the digest was sent to can open it",
            (f"提醒 {alert_id} 是发给别人的", "只有收到提醒的人才能查看全部标签"),
        )
    full = _full_digest(service, ctx, contents)
    total = len(full.reasons)
    pages = max(1, -(-total // DIGEST_PAGE_SIZE))
    if page > pages:
        return ErrorResult(
            f"alert {alert_id} has {pages} page(s) of tags; there is no page {page}",
            "open it again with 显示全部标签 to start from page 1",
            (f"这份提醒共 {pages} 页，没有第 {page} 页", "请点“显示全部标签”从第 1 页看起"),
        )
    rows = full.reasons[(page - 1) * DIGEST_PAGE_SIZE : page * DIGEST_PAGE_SIZE]
    status = replace(contents.status, notice=replace(full, reasons=rows))
    names = {ctx.actor.id: ctx.actor.display_name} if ctx.actor.display_name else {}
    return AlertResult(status, MappingProxyType(names), DigestPage(page, pages, total))


def _full_digest(service: ChatService, ctx: ChatContext, contents: DigestContents) -> AlertNotice:
    """The digest's notice with one row per covered tag (soonest first); managers-only tags only for managers."""
    sees = ctx.viewer.role.sees_sensitive
    rows = []
    for a in sorted(contents.assignments, key=lambda a: (a.expires_at or ctx.now, a.id)):
        dimension = service.taxonomy.dimension(a.dimension)
        hidden = dimension is None or dimension.visibility is Visibility.MANAGERS
        if (hidden and not sees) or a.customer_id not in contents.customers:
            continue
        ended = _ENDED.get(a.state if a.state is not AssignmentState.ACTIVE or a.expires_at else None, "")
        expires = a.expires_at or ctx.now
        name = contents.customers[a.customer_id].name
        rows.append(expiry_reason(a.customer_id, name, a.tag, expires, ctx.now, service.rules.tz, ended))
    return replace(contents.status.notice, reasons=tuple(rows), unlisted=0)


# How a row reads when the tag no longer expires as the digest said (None: it no longer expires at all).
_ENDED: Mapping[AssignmentState | None, str] = MappingProxyType(
    {AssignmentState.EXPIRED: "已过期", AssignmentState.REMOVED: "已移除", None: "不再到期"}
)


# Card action verb → handler; the platforms dispatch Action.Execute / button clicks through it.
DECISIONS: Mapping[str, Decider] = MappingProxyType(
    {
        verbs.SUGGESTION_ACCEPT: _accept,
        verbs.SUGGESTION_REJECT: _reject,
        verbs.SUGGESTION_ACCEPT_ALL: _accept_all,
        verbs.ASSIGNMENT_UNDO: _undo,
        verbs.CUSTOMER_CHOOSE: _choose,
        verbs.CUSTOMER_SHOW: _show,
        verbs.SEARCH_PAGE: _page,
        verbs.ALERT_ACK: _ack,
        verbs.ALERT_SNOOZE: _snooze,
        verbs.ALERT_DIGEST_ALL: _digest_all,
        verbs.CHANNEL_LINK: _link_channel,
    }
)


# ---------------------------------------------------------------- pieces


MAX_PAGE = 10_000  # search pages a card can ask for; (page - 1) * PAGE_SIZE stays a small offset
# Rows a page of a digest opened in full: one Teams card holds them even with the longest names, and a
# WeCom page is a few markdown messages at most.
DIGEST_PAGE_SIZE = 20


def _int(data: Mapping[str, Any], key: str, maximum: int = MAX_INT64) -> int:
    """A non-negative integer from card data (Teams may send numbers as strings), within the database's range."""
    value = data.get(key)
    if isinstance(value, bool) or (isinstance(value, str) and len(value) > 40):
        raise BadAction(f"{key} must be a number, got {str(value)[:40]!r}")
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise BadAction(f"{key} must be a number, got {str(value)[:40]!r}") from None
    if number < 0:
        raise BadAction(f"{key} must not be negative, got {number}")
    if number > maximum:
        raise BadAction(f"{key} must be at most {maximum}, got a larger number")
    return number


def _is_thread_id(value: str) -> bool:
    """A Teams channel or chat thread id ("19:…@thread.tacv2"), short enough to store."""
    return 0 < len(value) <= 500 and value.startswith("19:") and "@thread." in value and ";" not in value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise BadAction(f"{key} must be a non-empty string, got {value!r}")
    return value


def _created_by(events: list[TagEvent], message_key: str, dimension: str, tag: str) -> TagEvent | None:
    """The event in which the message's auto-apply added the tag (None: the message did not add it)."""
    key = name_key(tag)
    for e in events:
        if (
            e.kind in _CREATED
            and e.dimension == dimension
            and name_key(e.tag) == key
            and e.evidence.get("message_key") == message_key
        ):
            return e
    return None


def _message(exc: Exception, sees_sensitive: bool = True) -> str:
    """The user-facing text of a service error (LookupError str() adds quotes).

    A cap refusal counts managers-only tags too, so a viewer who cannot see them gets it without numbers.
    """
    if isinstance(exc, CapRefusal):
        return exc.reason if sees_sensitive else exc.hidden_reason()[1]
    if isinstance(exc, PolicyRefusal):
        return exc.reason
    return str(exc.args[0]) if exc.args else str(exc)


def _message_zh(exc: Exception, sees_sensitive: bool = True) -> str:
    """The Chinese text of a service error, for Chinese cards."""
    if isinstance(exc, CapRefusal) and not sees_sensitive:
        return exc.hidden_reason()[0]
    if isinstance(exc, ScopeRefusal):
        return exc.zh
    if isinstance(exc, UnknownTagError):
        close = f"；你是不是想找：{'、'.join(exc.close)}？" if exc.close else ""
        return f"没有名为「{exc.name}」的标签{close}"
    if isinstance(exc, AmbiguousTagError):
        return f"多个维度都有标签「{exc.name}」（{'、'.join(exc.dimensions)}），请写成 维度:标签"
    if isinstance(exc, NotFoundError):
        return f"找不到：{_message(exc)}"
    return _message(exc, sees_sensitive)


def _visible_warnings(warnings: tuple[str, ...], summary: CustomerSummary) -> tuple[str, ...]:
    """Warnings for a viewer who cannot see managers-only tags: the soft cap counted on visible tags only."""
    if not any(is_soft_cap_warning(w) for w in warnings):
        return warnings
    kept = [w for w in warnings if not is_soft_cap_warning(w)]
    visible = soft_cap_warning(sum(len(g.tags) for g in summary.groups))
    return tuple(kept + ([visible] if visible else []))


def fresh_applied_state(
    outcome: MessageOutcome, message_key: str, taxonomy: Taxonomy, sees_sensitive: bool
) -> AppliedState | None:
    """The applied card of a message handled just now, from what its handling did (no read): each tag it added.

    The same card `_applied_state` renders from storage for a new message: a tag the customer held before is
    only renewed (nothing to undo), and nothing is undone yet, so there are no names to look up.
    """
    customer = outcome.customer
    if customer is None:
        return None
    entries = tuple(
        AppliedEntry(change.assignment_id, change.dimension, change.tag, matched, change.expires_at)
        for change, matched in zip(outcome.applied, outcome.applied_matched, strict=True)
        if change.assignment_id is not None and is_visible(taxonomy.dimension(change.dimension), sees_sensitive)
    )
    return AppliedState(customer, message_key, entries, MappingProxyType({})) if entries else None


async def _names(uow: UnitOfWork, user_ids: list[str | None]) -> Mapping[str, str]:
    """Display names of the users who decided, for the cards (ids without a stored name are left out)."""
    return MappingProxyType(await display_names(uow, user_ids))
