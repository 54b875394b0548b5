"""The outbox: enqueue with a de-duplication key, claim, deliver per channel, retry, recover after crashes.

A row is claimed (pending → sending, committed) before it is sent and marked after, so two replicas never
send the same row, and a process that dies mid-send leaves a `sending` row that the next drain turns into
`unknown` once its lease has run out. An `unknown` row is sent again only through a channel that drops an
identical resend (WeCom's duplicate check) while that check still covers it; otherwise it stays `unknown`
and is reported, so nothing is sent twice and nothing disappears silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from core.alerts.ports import (
    AlertStore,
    Deliverer,
    Delivery,
    DeliveryOutcome,
    NewOutboxMessage,
    OutboxMessage,
    OutboxRepository,
    OutboxState,
)
from core.alerts.selection import QuietHours, release_time
from core.errors import NotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """Retry, lease and quiet-hours settings of the drain."""

    max_attempts: int = 6
    base_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=2)
    lease: timedelta = timedelta(minutes=10)  # longer than a deliverer's own in-call retries
    resend_window: timedelta = timedelta(hours=3, minutes=30)  # inside WeCom's 4 h duplicate check
    batch: int = 50
    max_batches: int = 20  # batch * max_batches rows per drain at most; the next run continues
    concurrency: int = 8  # deliveries in flight at once, over all endpoints
    per_endpoint: int = 1  # deliveries in flight at once to one endpoint (1: each endpoint's rows in order)
    quiet: QuietHours | None = None
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def backoff(self, attempts: int) -> timedelta:
        """Delay before the next attempt after `attempts` failed ones (doubling, capped)."""
        return min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unknown: int = 0
    requeued: int = 0
    elsewhere: dict[str, int] = field(default_factory=dict)  # due rows of channels this process cannot deliver
    quiet_until: datetime | None = None  # set when the drain ran inside quiet hours and sent nothing

    def __str__(self) -> str:
        text = (
            f"sent {self.sent}, retry later {self.retried}, failed {self.failed}, "
            f"unknown {self.unknown}, re-queued {self.requeued}"
        )
        if self.quiet_until is not None:
            text += f"; quiet hours: held until {self.quiet_until.isoformat()}"
        if self.elsewhere:
            waiting = ", ".join(f"{n} for {channel}" for channel, n in sorted(self.elsewhere.items()))
            text += f"; left pending for a process that delivers them: {waiting}"
        return text


async def enqueue(store: AlertStore, messages: list[NewOutboxMessage], now: datetime) -> int:
    """Insert each message unless its dedupe key is already queued; returns how many were new."""
    async with store.unit_of_work() as uow:
        return await uow.outbox.enqueue_many(messages, now)


async def drain(
    store: AlertStore, deliverers: Mapping[str, Deliverer], policy: OutboxPolicy, now: datetime
) -> DrainReport:
    """Recover stale sends, then claim and deliver due rows of the channels held here, in batches (bounded).

    Inside quiet hours nothing is claimed (a row queued just before the window opened waits for its end);
    rows of channels without a deliverer in this process stay pending for a process that has one.
    """
    report = DrainReport()
    await recover(store, deliverers, policy, now, report)
    release = release_time(now, policy.quiet, policy.tz)
    if release != now:
        report.quiet_until = release
        return report
    channels = sorted(deliverers)
    if channels:
        await _deliver_due(store, deliverers, channels, policy, now, report)
    async with store.unit_of_work() as uow:
        due = await uow.outbox.due_by_channel(now)
    report.elsewhere = {channel: n for channel, n in due.items() if channel not in deliverers}
    return report


async def _deliver_due(
    store: AlertStore,
    deliverers: Mapping[str, Deliverer],
    channels: list[str],
    policy: OutboxPolicy,
    now: datetime,
    report: DrainReport,
) -> None:
    """Deliver due rows concurrently: at most `policy.concurrency` in flight, `policy.per_endpoint` per endpoint.

    A receiver that hangs holds only its own endpoint's slot until its timeout; rows of other endpoints are
    claimed past it. One row per claim: a crash then leaves only the rows really in flight `unknown`.
    """
    in_flight: dict[tuple[str, str | None], int] = defaultdict(int)
    running: dict[asyncio.Task[BaseException | None], tuple[str, str | None]] = {}
    budget = policy.batch * policy.max_batches
    width = max(1, policy.concurrency)
    try:
        while True:
            claimed: list[OutboxMessage] = []
            if budget > 0 and len(running) < width:
                busy = [endpoint for endpoint, n in in_flight.items() if n >= max(1, policy.per_endpoint)]
                async with store.unit_of_work() as uow:
                    claimed = await uow.outbox.claim(now, 1, channels, busy)
            if claimed:
                message = claimed[0]
                budget -= 1
                endpoint = endpoint_of(message, deliverers.get(message.channel))
                in_flight[endpoint] += 1
                task = asyncio.create_task(
                    _guarded(_deliver_one(store, deliverers.get(message.channel), message, policy, now, report))
                )
                running[task] = endpoint
                continue
            if not running:
                return
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                in_flight[running.pop(task)] -= 1
                died = task.result()
                if died is not None:
                    raise died  # the process is going down (SystemExit …): leave the rest in flight as is
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


def endpoint_of(message: OutboxMessage, deliverer: Deliverer | None) -> tuple[str, str | None]:
    """Where a row goes: its recipient for a channel whose recipients are separate servers (webhooks), else the
    channel's one platform API (a chat channel: recipient None)."""
    separate = bool(getattr(deliverer, "per_recipient", False))
    return (message.channel, message.recipient if separate else None)


async def _guarded(delivery: Coroutine[Any, Any, None]) -> BaseException | None:
    """Run one delivery in a task; a process-ending exception is handed back to the drain to raise, since
    asyncio would otherwise raise it out of the event loop itself."""
    try:
        await delivery
    except (KeyboardInterrupt, SystemExit) as exc:
        return exc
    return None


async def recover(
    store: AlertStore, deliverers: Mapping[str, Deliverer], policy: OutboxPolicy, now: datetime, report: DrainReport
) -> None:
    """Stale `sending` rows become `unknown`; those a resend cannot duplicate go back to pending."""
    async with store.unit_of_work() as uow:
        stale = await uow.outbox.mark_stale_unknown(now - policy.lease, now)
        for message in stale:
            log.warning(
                "outbox %d (%s to %s): sender stopped while sending; outcome unknown",
                message.id,
                message.channel,
                message.recipient,
            )
        unknown = await uow.outbox.unknown(policy.batch * policy.max_batches)
        # A resend goes out no earlier than the end of quiet hours; it is safe only while the platform's
        # duplicate check, counted from the FIRST uncertain attempt, still covers that moment.
        at = release_time(now, policy.quiet, policy.tz)
        for message in unknown:
            deliverer = deliverers.get(message.channel)
            if deliverer is None or not deliverer.resend_is_safe:
                report.unknown += 1
                continue
            if message.attempts >= policy.max_attempts:
                reason = (
                    f"outcome unknown after {message.attempts} attempts (first uncertain send "
                    f"{message.unsure_since.isoformat()}); not resent again: check with the recipient"
                )
                if await uow.outbox.fail_unknown(message.id, now, reason):
                    report.failed += 1
                    log.warning("outbox %d to %s: %s", message.id, message.recipient, reason)
                continue
            if at - message.unsure_since < policy.resend_window:
                note = f"outcome unknown; resent at {at.isoformat()} under the platform's duplicate check"
                if await uow.outbox.requeue_unknown(message.id, now, note, at):
                    report.requeued += 1
            else:
                report.unknown += 1


async def _deliver_one(
    store: AlertStore,
    deliverer: Deliverer | None,
    message: OutboxMessage,
    policy: OutboxPolicy,
    now: datetime,
    report: DrainReport,
) -> None:
    if deliverer is None:
        result = Delivery(
            DeliveryOutcome.PERMANENT, f"no deliverer for channel {message.channel!r}: is that channel configured?"
        )
    else:
        try:
            result = await deliverer.deliver(message)
        except Exception as exc:  # a bug, not a platform answer: it may or may not have gone out
            log.exception("outbox %d: deliverer for %s raised", message.id, message.channel)
            async with store.unit_of_work() as uow:
                await uow.outbox.mark_unknown(message.id, f"deliverer raised {type(exc).__name__}; outcome unknown")
            report.unknown += 1
            return
    async with store.unit_of_work() as uow:
        if result.outcome is DeliveryOutcome.SENT:
            await uow.outbox.mark_sent(message.id, now, result.external_id)
            report.sent += 1
        elif result.outcome is DeliveryOutcome.RETRY and message.attempts < policy.max_attempts:
            at = release_time(now + policy.backoff(message.attempts), policy.quiet, policy.tz)
            await uow.outbox.mark_retry(message.id, now, at, result.reason)
            report.retried += 1
            log.info("outbox %d: %s; retry at %s", message.id, result.reason, at.isoformat())
        else:
            reason = result.reason
            if result.outcome is DeliveryOutcome.RETRY:
                reason = f"gave up after {message.attempts} attempts: {reason}"
            await uow.outbox.mark_failed(message.id, now, reason)
            report.failed += 1
            log.warning("outbox %d to %s failed permanently: %s", message.id, message.recipient, reason)


async def resend_unknown(store: AlertStore, message_id: int, now: datetime, by: str) -> OutboxMessage:
    """A person decided the `unknown` row did not arrive: send it again at the next drain."""
    async with store.unit_of_work() as uow:
        message = await _unknown_row(uow.outbox, message_id)
        await uow.outbox.requeue_unknown(message.id, now, f"resend requested by {by} at {now.isoformat()}")
    return message


async def settle_unknown(store: AlertStore, message_id: int, now: datetime, by: str) -> OutboxMessage:
    """A person confirmed the `unknown` row arrived: record it as sent, never resend it."""
    async with store.unit_of_work() as uow:
        message = await _unknown_row(uow.outbox, message_id)
        await uow.outbox.settle_unknown(message.id, now, f"confirmed delivered by {by} at {now.isoformat()}")
    return message


async def _unknown_row(outbox: OutboxRepository, message_id: int) -> OutboxMessage:
    message = await outbox.get(message_id)
    if message is None:
        raise NotFoundError(f"outbox message {message_id} does not exist")
    if message.state is not OutboxState.UNKNOWN:
        raise ValueError(
            f"outbox message {message_id} is {message.state.value}, not unknown: only a row whose outcome is "
            "unknown can be resent or marked sent (see `kebiao alerts unknown`)"
        )
    return message
