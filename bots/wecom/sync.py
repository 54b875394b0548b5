"""Tag sync both ways: WeCom corp tags into the `wecom` dimension, Kebiao tag changes out via mark_tag.

WeCom sends no callback for API writes, so Kebiao's event log stays the source of truth: a push reads the
customer's active tags at the time it runs, so a retry never re-adds a tag removed meanwhile. Corp tag ids
are remembered per tag name in the channel store (channel `wecom_tag`).

Every tag change reaches WeCom, whichever flow made it (Teams, admin API, import, archive ingest, alert
rules, WeCom callbacks): each drain pass first reads the append-only tag-event log after a persisted cursor
and, in the same transaction, records the customers named there (those with an owner and a WeCom external
user id) in the pending-push table and advances the cursor, so a crash between a commit and its push loses
nothing. The first pass with WeCom enabled starts the cursor at the newest event: history is not replayed
(`kebiao wecom sync-tags` is the full catch-up). The WeCom callback handlers also call `tags_changed` right
after their change for low latency; the cursor then marks the customer again, which costs at most one
extra, idempotent mark_tag.

Pushes are durable: a pending row is deleted by a successful push and rescheduled by a failed one (capped
backoff with jitter). A drain — at start-up, every 30 s and from `kebiao wecom sync-tags` — claims due rows
(one replica per row) and pushes them, so a failed push survives restarts. A push recomputes the tags from
Kebiao's state: those held are added, those the event log shows Kebiao held before are removed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bots.wecom.background import Background
from bots.wecom.client import TAG_NAME_MAX_CHARS, WeComApiError, WeComClient
from core.chat.ports import ChannelStore
from core.ports import AllOf, Store
from core.records import TaxonomyVersion
from core.tags.assignments import TagChange
from core.wecom_sync.corp_tags import CorpTag, CorpTagImport, corp_tags_from_groups, import_corp_tags
from core.wecom_sync.ports import PendingPush, PendingTagPushes
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

TAG_CHANNEL = "wecom_tag"
RETRY_DELAYS = (30.0, 120.0, 600.0, 1800.0)  # roughly ×4 per failure, then every 30 min until it works
DRAIN_INTERVAL = 30.0
LEASE_SECONDS = 300.0  # a claimed customer is hidden from other drains this long (a push takes seconds)
DRAIN_BATCH = 10
DRAIN_MAX_BATCHES = 10  # at most 100 customers per pass; the next pass continues
EVENT_CURSOR = "wecom_tags"  # sync_cursors row: tag events up to here are already marked pending
EVENT_BATCH = 500
EVENT_MAX_BATCHES = 20  # at most 10,000 events read per pass; the next pass continues
GONE = "customer no longer exists"
NOT_ON_WECOM = "customer has no owner userid or WeCom external user id"
PERMANENT_SKIPS = frozenset({GONE, NOT_ON_WECOM})  # retrying cannot help: the row is dropped
SYNC_ACTOR = "wecom-sync"
PAGE = 200


@dataclass
class DrainReport:
    """What one drain pass did."""

    pushed: int = 0
    dropped: int = 0
    failed: int = 0
    events: int = 0
    marked: int = 0

    @property
    def claimed(self) -> int:
        return self.pushed + self.dropped + self.failed

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def __str__(self) -> str:
        return (
            f"{self.events} tag events read, {self.marked} customers marked; "
            f"pushed {self.pushed}, dropped {self.dropped}, failed {self.failed}"
        )


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one mark_tag push did for a customer (or why it did nothing)."""

    customer_id: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    skipped: str | None = None


class WeComTagSync:
    """Mirrors Kebiao tag changes to WeCom and imports WeCom's corp tags (a corp_tags.TagChangeListener)."""

    def __init__(
        self,
        client: WeComClient,
        store: Store,
        channels: ChannelStore,
        taxonomy: Callable[[], Taxonomy],
        background: Background,
        pending: PendingTagPushes,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        lease_seconds: float = LEASE_SECONDS,
        batch: int = DRAIN_BATCH,
        max_batches: int = DRAIN_MAX_BATCHES,
        event_batch: int = EVENT_BATCH,
    ) -> None:
        self._client = client
        self._store = store
        self._channels = channels
        self._taxonomy = taxonomy
        self._background = background
        self._pending = pending
        self._delays = tuple(retry_delays)
        self._clock = clock
        self._rng = rng or random.Random()
        self._lease = lease_seconds
        self._batch = batch
        self._max_batches = max_batches
        self._event_batch = event_batch
        self._wake_at: float | None = None

    # ------------------------------------------------------------------ WeCom -> Kebiao

    async def import_corp_tags(
        self, on_version: Callable[[TaxonomyVersion], Awaitable[None]] | None = None
    ) -> CorpTagImport:
        """Fetch every corp tag, remember its id, store them as the `wecom` dimension (new version if changed)."""
        tags = corp_tags_from_groups(await self._client.get_corp_tag_list())
        for tag in tags:
            await self._remember(tag)
        async with self._store.unit_of_work() as uow:
            current = await uow.taxonomies.current()
            base = current.taxonomy if current else self._taxonomy()
            result = await import_corp_tags(uow, base, tags, SYNC_ACTOR, self._clock())
        if result.change is not None and on_version is not None:
            await on_version(result.change.version)
        log.info("wecom corp tags imported: %d tags, new version: %s", len(tags), result.change is not None)
        return result

    async def _remember(self, tag: CorpTag) -> None:
        await self._channels.save_reference(
            TAG_CHANNEL,
            name_key(tag.name),
            {"tag_id": tag.id, "group_id": tag.group_id, "name": tag.name},
            None,
            self._clock(),
        )

    # ------------------------------------------------------------------ Kebiao -> WeCom

    async def tags_changed(self, customer_id: int, changes: Sequence[TagChange]) -> None:
        """Hook for every flow that changed tags (after commit): records the customer as pending, pushes in
        the background, never raises. The pending row outlives a crash or restart until a push succeeds."""
        if not _touched(changes):
            return
        now = self._clock()
        try:
            item = await self._pending.mark(customer_id, now, now + timedelta(seconds=self._lease))
        except Exception:
            # The change is committed; without the row only this process's attempt remains (logged loudly).
            log.exception("wecom sync: could not record customer %d as pending; pushing once anyway", customer_id)
            item = PendingPush(customer_id, 0, 0, now, None, now)
        else:
            if item is None:
                log.info("wecom sync: customer %d no longer exists; nothing to push", customer_id)
                return
        self._background.spawn(self._attempt(item), name=f"wecom-mark:{customer_id}")

    async def drain_pending(self, limit: int | None = None) -> DrainReport:
        """Mark the customers of new tag events, then claim due customers in small batches and push each
        (tags recomputed now); bounded per call."""
        report = DrainReport()
        try:
            await self._read_events(report)
        except Exception:
            # Pending rows already recorded still get pushed; the cursor has not moved, the next pass retries.
            log.exception("wecom sync: reading the tag-event log failed")
        budget = self._batch * self._max_batches if limit is None else limit
        while budget > 0:
            now = self._clock()
            batch = await self._pending.claim(now, now + timedelta(seconds=self._lease), min(self._batch, budget))
            if not batch:
                break
            budget -= len(batch)
            for item in batch:
                report.add(await self._attempt(item))
        if report.claimed or report.marked:
            log.info("wecom sync drain: %s", report)
        return report

    async def _read_events(self, report: DrainReport) -> None:
        """Turn tag events after the cursor into pending rows (one transaction per batch), a bounded number."""
        for _ in range(EVENT_MAX_BATCHES):
            scan = await self._pending.mark_from_events(EVENT_CURSOR, self._clock(), self._event_batch)
            report.events += scan.events
            report.marked += scan.marked
            if scan.busy or scan.waiting or scan.events < self._event_batch:
                return

    async def drain_forever(self, interval: float = DRAIN_INTERVAL) -> None:
        """Drain at once and then every `interval` seconds until cancelled (the app's cleanup_ctx task)."""
        while True:
            try:
                await self.drain_pending()
            except Exception:
                log.exception("wecom sync drain failed; next try in %.0fs", interval)
            await asyncio.sleep(interval)

    async def _attempt(self, item: PendingPush) -> str:
        """Push one pending customer and settle its row: 'pushed', 'dropped' or 'failed'."""
        customer_id = item.customer_id
        try:
            result = await self.reconcile(customer_id)
        except (WeComApiError, ValueError) as exc:
            await self._failed(item, str(exc))
            return "failed"
        except Exception as exc:
            log.exception("wecom mark_tag for customer %d failed unexpectedly", customer_id)
            await self._failed(item, f"unexpected {type(exc).__name__}")  # type only: messages may hold data
            return "failed"
        if result.skipped in PERMANENT_SKIPS:
            log.warning("wecom sync: customer %d dropped from the push queue: %s", customer_id, result.skipped)
            await self._pending.done(customer_id, item.generation)
            return "dropped"
        await self._pending.done(customer_id, item.generation)
        return "pushed"

    async def _failed(self, item: PendingPush, error: str) -> None:
        """Count the failure, schedule the next attempt (capped backoff with jitter), wake a drain then."""
        now = self._clock()
        delay = backoff(item.attempts + 1, self._delays, self._rng)
        attempts = await self._pending.failed(item.customer_id, now, now + timedelta(seconds=delay), error)
        attempts = attempts if attempts is not None else item.attempts + 1
        if attempts > len(self._delays):
            log.error(
                "wecom mark_tag for customer %d still failing after %d attempts (%s); Kebiao keeps the change and "
                "retries in %.0fs — `kebiao wecom sync-tags` retries at once",
                item.customer_id,
                attempts,
                error,
                delay,
            )
        else:
            log.warning(
                "wecom mark_tag for customer %d failed (%s); retry %d in %.0fs",
                item.customer_id,
                error,
                attempts,
                delay,
            )
        self._wake_in(delay)

    def _wake_in(self, delay: float) -> None:
        """Run a drain pass once the earliest retry is due (the periodic drain covers it too, just later)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        if self._wake_at is not None and self._wake_at <= at:
            return
        self._wake_at = at

        async def wake() -> None:
            self._wake_at = None
            await self.drain_pending()

        self._background.later(delay, wake, name="wecom-sync-wake")

    async def reconcile(self, customer_id: int) -> PushResult:
        """Make WeCom agree with Kebiao for every tag Kebiao holds or ever held on the customer (from the log)."""
        async with self._store.unit_of_work() as uow:
            active = await uow.assignments.active_for(customer_id)
        tags = {(a.dimension, a.tag): None for a in active}
        tags.update(dict.fromkeys(await self._pending.tags_in_history(customer_id)))
        return await self.push(customer_id, tuple(tags))

    async def push(self, customer_id: int, tags: Sequence[tuple[str, str]]) -> PushResult:
        """Make WeCom agree with Kebiao's current state for `tags` ((dimension, name) pairs) on one customer."""
        async with self._store.unit_of_work() as uow:
            customer = await uow.customers.get(customer_id)
            active = await uow.assignments.active_for(customer_id) if customer else []
        if customer is None:
            return PushResult(customer_id, skipped=GONE)
        if not customer.owner or not customer.wecom_external_userid:
            return PushResult(customer_id, skipped=NOT_ON_WECOM)
        held = {name_key(a.tag) for a in active}
        dimensions = {d.key: d.name for d in self._taxonomy().dimensions}
        add: list[str] = []
        remove: list[str] = []
        for dimension, name in tags:
            if name_key(name) in held:
                tag_id = await self._tag_id(name, dimensions.get(dimension, dimension), create=True)
                if tag_id:
                    add.append(tag_id)
            else:
                tag_id = await self._tag_id(name, "", create=False)
                if tag_id:
                    remove.append(tag_id)
        add, remove = sorted(set(add)), sorted(set(remove) - set(add))
        if not add and not remove:
            return PushResult(customer_id, skipped="no tag has a WeCom counterpart")
        await self._client.mark_tag(customer.owner, customer.wecom_external_userid, add, remove)
        return PushResult(customer_id, tuple(add), tuple(remove))

    async def _tag_id(self, name: str, group_name: str, *, create: bool) -> str | None:
        """The corp tag id for a Kebiao tag name; created in group `group_name` when missing and allowed."""
        saved = await self._channels.reference(TAG_CHANNEL, name_key(name))
        if saved is not None:
            return str(saved.reference["tag_id"])
        if not create:
            return None
        if len(name.strip()) > TAG_NAME_MAX_CHARS:
            log.warning("tag %r is longer than %d characters; not mirrored to WeCom", name, TAG_NAME_MAX_CHARS)
            return None
        group = (group_name.strip() or "Kebiao")[:TAG_NAME_MAX_CHARS]
        created = await self._client.add_corp_tag([name], group_name=group)
        for tag in created.get("tag", []):
            corp = CorpTag(str(tag["id"]), str(tag["name"]), str(created.get("group_id", "")), group)
            await self._remember(corp)
            if name_key(corp.name) == name_key(name):
                return corp.id
        return None

    async def push_all(self) -> tuple[int, int]:
        """Drain every pending customer (due or not), then push every customer's active tags (reconcile after
        outages); returns (customers pushed, failures)."""
        await self._pending.make_due(self._clock())
        drained = await self.drain_pending(limit=await self._pending.count())
        pushed, failed = drained.pushed, drained.failed
        after = 0  # keyset paging by customer id: every page costs the same, however many customers
        while True:
            async with self._store.unit_of_work() as uow:
                ids, _ = await uow.assignments.search(
                    AllOf(()),  # AllOf() = every customer
                    self._clock(),
                    None,
                    0,
                    PAGE,
                    after,
                    count_up_to=0,  # only the page is wanted, not how many customers there are
                )
                held = {cid: [(a.dimension, a.tag) for a in await uow.assignments.active_for(cid)] for cid in ids}
            for cid, tags in held.items():
                if not tags:
                    continue
                try:
                    result = await self.push(cid, tags)
                except (WeComApiError, ValueError) as exc:
                    failed += 1
                    log.warning("wecom sync of customer %d failed: %s", cid, exc)
                    continue
                pushed += int(result.skipped is None)
            if len(ids) < PAGE:
                return pushed, failed
            after = ids[-1]


def backoff(attempts: int, delays: Sequence[float], rng: random.Random) -> float:
    """Seconds before the next try after `attempts` failures: the schedule's step (capped at its last) with
    jitter (three quarters to all of it), so replicas and customers do not retry in lockstep."""
    if not delays:
        return 0.0
    ceiling = delays[min(max(attempts, 1), len(delays)) - 1]
    return ceiling * rng.uniform(0.75, 1.0)


def _touched(changes: Sequence[TagChange]) -> tuple[tuple[str, str], ...]:
    """(dimension, tag) pairs a batch of changes touched, replaced exclusive siblings included."""
    out: dict[tuple[str, str], None] = {}
    for change in changes:
        if change.outcome in ("added", "removed"):
            out[(change.dimension, change.tag)] = None
            for old in change.replaced:
                out[(change.dimension, old)] = None
    return tuple(out)
