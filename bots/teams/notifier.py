"""Proactive Teams messages: throttled per conversation, retried on 429/5xx, permanent failures reported.

Teams allows about 7 messages per second per conversation in bursts and far less sustained; a token
bucket per conversation (7 tokens, 1 per second) keeps the bot under that, and a 429 is still honoured
through its Retry-After. 403 (app removed, bot blocked or disabled) and 404 (conversation gone) will not
heal by retrying, so they are reported `undeliverable` at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationParameters
from msrest.exceptions import ClientRequestError, HttpOperationError

from bots.teams.references import StoredReference

log = logging.getLogger(__name__)

TEAMS_CHANNEL = "msteams"
PERMANENT_STATUSES = {400: "rejected", 403: "forbidden", 404: "conversation not found", 413: "too large"}


class DeliveryStatus(StrEnum):
    """Outcome of one proactive send."""

    DELIVERED = "delivered"
    RETRY_LATER = "retry_later"
    UNDELIVERABLE = "undeliverable"


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to a send: status, a human reason for failures, the Teams activity id on success."""

    status: DeliveryStatus
    reason: str = ""
    activity_id: str = ""


class ConversationUnavailable(Exception):
    """A 1:1 conversation could not be opened; `result` says whether it is worth retrying."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.reason)
        self.result = result


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; Retry-After above `max_retry_after` is left to the caller."""

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.25
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rand: float) -> float:
        """Delay before retry number `attempt` (1-based), with `rand` in [0, 1) spreading replicas apart."""
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay * (1 + self.jitter * rand)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ConversationThrottle:
    """A token bucket per conversation: `burst` messages at once, then `rate` per second."""

    def __init__(
        self,
        burst: int = 7,
        rate: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_idle_buckets: int = 10_000,
    ) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("ConversationThrottle needs burst >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._max_buckets = max_idle_buckets
        self._buckets: dict[str, _Bucket] = {}

    async def acquire(self, conversation_id: str) -> None:
        """Wait until `conversation_id` may receive one more message, then spend its token."""
        bucket = self._buckets.get(conversation_id)
        if bucket is None:
            self._prune()
            bucket = self._buckets[conversation_id] = _Bucket(float(self.burst), self._clock())
        async with bucket.lock:  # waiters of one conversation are served in arrival order
            while True:
                self._refill(bucket)
                if bucket.tokens >= 1:
                    bucket.tokens -= 1
                    return
                await self._sleep((1 - bucket.tokens) / self.rate)

    def _refill(self, bucket: _Bucket) -> None:
        now = self._clock()
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now

    def _prune(self) -> None:
        """Drop full, idle buckets so the map does not grow with every conversation ever seen."""
        if len(self._buckets) < self._max_buckets:
            return
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket)
            if bucket.tokens >= self.burst and not bucket.lock.locked():
                del self._buckets[key]


@dataclass
class _Attempt:
    activity_id: str = ""
    error: Exception | None = None


class TeamsNotifier:
    """Sends cards proactively into stored conversations through the CloudAdapter."""

    def __init__(
        self,
        adapter: CloudAdapter,
        app_id: str,
        retry: RetryPolicy | None = None,
        throttle: ConversationThrottle | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.adapter = adapter
        self.app_id = app_id
        self.retry = retry or RetryPolicy()
        self.throttle = throttle or ConversationThrottle()
        self._sleep = sleep
        self._rand = rand

    async def send_card(self, reference: StoredReference, card: dict[str, Any]) -> DeliveryResult:
        """Send one Adaptive Card (a card-body dict) into the conversation of `reference`."""
        return await self.send(reference, lambda: MessageFactory.attachment(CardFactory.adaptive_card(card)))

    async def send(self, reference: StoredReference, build: Callable[[], Activity]) -> DeliveryResult:
        """Send the activity `build()` makes (fresh per attempt: the SDK mutates what it sends)."""
        conversation_id = reference.conversation_id
        reason = ""
        for attempt in range(1, self.retry.max_attempts + 1):
            await self.throttle.acquire(conversation_id)
            outcome = await self._attempt(reference, build())
            if outcome.error is None:
                return DeliveryResult(DeliveryStatus.DELIVERED, activity_id=outcome.activity_id)
            permanent, reason, retry_after = _classify(outcome.error)
            if permanent:
                log.warning("undeliverable to %s: %s", reference.key, reason)
                return DeliveryResult(DeliveryStatus.UNDELIVERABLE, reason)
            if attempt == self.retry.max_attempts:
                break
            delay = self.retry.backoff(attempt, self._rand())
            if retry_after is not None:
                if retry_after > self.retry.max_retry_after:
                    return DeliveryResult(
                        DeliveryStatus.RETRY_LATER, f"{reason}; Retry-After {retry_after:g}s"
                    )
                delay = retry_after + self.retry.jitter * self._rand()
            log.info(
                "send to %s failed (%s), attempt %d, retrying in %.2fs", reference.key, reason, attempt, delay
            )
            await self._sleep(delay)
        log.warning(
            "giving up on %s for now after %d attempts: %s", reference.key, self.retry.max_attempts, reason
        )
        return DeliveryResult(
            DeliveryStatus.RETRY_LATER, f"{reason} (after {self.retry.max_attempts} attempts)"
        )

    async def open_personal_conversation(
        self, service_url: str, tenant_id: str, user_id: str, key: str | None = None
    ) -> StoredReference:
        """Create (or fetch) the bot's 1:1 chat with `user_id` and return its reference."""
        parameters = ConversationParameters(
            is_group=False,
            bot=ChannelAccount(id=f"28:{self.app_id}"),
            members=[ChannelAccount(id=user_id)],
            tenant_id=tenant_id,
            channel_data={"tenant": {"id": tenant_id}},
        )
        captured: list[StoredReference] = []

        async def on_created(turn_context: TurnContext) -> None:
            activity = turn_context.activity
            activity.from_property = ChannelAccount(id=user_id)
            captured.append(StoredReference.from_activity(activity, key=key or user_id))

        try:
            await self.adapter.create_conversation(
                self.app_id, on_created, parameters, channel_id=TEAMS_CHANNEL, service_url=service_url
            )
        except (HttpOperationError, ClientRequestError, OSError) as exc:
            permanent, reason, _ = _classify(exc)
            status = DeliveryStatus.UNDELIVERABLE if permanent else DeliveryStatus.RETRY_LATER
            raise ConversationUnavailable(DeliveryResult(status, reason)) from None
        return captured[0]

    async def _attempt(self, reference: StoredReference, activity: Activity) -> _Attempt:
        """One send; errors are captured inside the turn so no on_turn_error handler can swallow them."""
        outcome = _Attempt()
        if reference.tenant_id:
            # Teams reads the tenant from channelData too; the reference's conversation carries it as well.
            activity.channel_data = {**(activity.channel_data or {}), "tenant": {"id": reference.tenant_id}}

        async def callback(turn_context: TurnContext) -> None:
            turn_context.on_send_activities(_new_message)
            try:
                response = await turn_context.send_activity(activity)
                outcome.activity_id = (response.id or "") if response else ""
            except (HttpOperationError, ClientRequestError, OSError) as exc:
                outcome.error = exc

        try:
            await self.adapter.continue_conversation(
                reference.conversation_reference(), callback, bot_app_id=self.app_id
            )
        except (ClientRequestError, OSError) as exc:  # e.g. the bot's own token could not be fetched
            outcome.error = exc
        return outcome


async def _new_message(
    turn_context: TurnContext, activities: list[Activity], next_send: Callable[[], Awaitable[Any]]
) -> Any:
    """Post proactive messages as new messages, not replies to the synthetic continuation event id."""
    for activity in activities:
        activity.reply_to_id = None
    return await next_send()


def _classify(error: Exception) -> tuple[bool, str, float | None]:
    """(permanent?, reason, Retry-After seconds) for a failed connector call."""
    if not isinstance(error, HttpOperationError):
        return False, f"transport error: {type(error).__name__}", None
    response = getattr(error, "response", None)
    status = int(getattr(response, "status_code", 0) or 0)
    detail = _error_detail(error)
    reason = f"HTTP {status}" + (f" {detail}" if detail else "")
    if status in PERMANENT_STATUSES:
        return True, f"{PERMANENT_STATUSES[status]}: {reason}", None
    if status == 429 or status >= 500:
        headers = getattr(response, "headers", None) or {}
        return False, reason, _retry_after(headers.get("Retry-After"))
    return False, reason, None


def _error_detail(error: HttpOperationError) -> str:
    """`Code: message` from the connector's ErrorResponse body, when there is one."""
    body = getattr(error, "error", None)
    inner = getattr(body, "error", None)
    code = getattr(inner, "code", None)
    message = getattr(inner, "message", None)
    if code or message:
        return f"{code or ''}: {message or ''}".strip(": ")
    return ""


def _retry_after(raw: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
