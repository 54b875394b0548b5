"""Tag sync both ways: WeCom corp tags into the `wecom` dimension, Kebiao tag changes out via mark_tag.

WeCom sends no callback for API writes, so Kebiao's event log stays the source of truth: a push reads the
customer's active tags at the time it runs, so a retry never re-adds a tag removed meanwhile. Corp tag ids
are remembered per tag name in the channel store (channel `wecom_tag`). A failed push is logged and retried
in the background with growing pauses; the Kebiao change itself was committed before and is never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bots.wecom.background import Background
from bots.wecom.client import TAG_NAME_MAX_CHARS, WeComApiError, WeComClient
from core.assignments import TagChange
from core.channel_ports import ChannelStore
from core.corp_tags import CorpTag, CorpTagImport, corp_tags_from_groups, import_corp_tags
from core.ports import AllOf, Store
from core.records import TaxonomyVersion
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

TAG_CHANNEL = "wecom_tag"
RETRY_DELAYS = (30.0, 120.0, 600.0, 1800.0)
SYNC_ACTOR = "wecom-sync"
PAGE = 200


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one mark_tag push did for a customer (or why it did nothing)."""

    customer_id: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    skipped: str | None = None


class WeComTagSync:
    """Mirrors Kebiao tag changes to WeCom and imports WeCom's corp tags (core.corp_tags.TagChangeListener)."""

    def __init__(
        self,
        client: WeComClient,
        store: Store,
        channels: ChannelStore,
        taxonomy: Callable[[], Taxonomy],
        background: Background,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._store = store
        self._channels = channels
        self._taxonomy = taxonomy
        self._background = background
        self._delays = tuple(retry_delays)
        self._clock = clock

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
        """Hook for every flow that changed tags (after commit): pushes in the background, never raises."""
        tags = _touched(changes)
        if tags:
            self._background.spawn(self._push_with_retry(customer_id, tags, 0), name=f"wecom-mark:{customer_id}")

    async def _push_with_retry(self, customer_id: int, tags: tuple[tuple[str, str], ...], attempt: int) -> None:
        try:
            await self.push(customer_id, tags)
        except (WeComApiError, ValueError) as exc:
            if attempt >= len(self._delays):
                log.error(
                    "wecom mark_tag for customer %d gave up after %d attempts (%s); Kebiao keeps the change — "
                    "run `kebiao wecom sync-tags` to reconcile",
                    customer_id,
                    attempt + 1,
                    exc,
                )
                return
            delay = self._delays[attempt]
            log.warning(
                "wecom mark_tag for customer %d failed (%s); retry %d in %.0fs", customer_id, exc, attempt + 1, delay
            )
            self._background.later(
                delay,
                lambda: self._push_with_retry(customer_id, tags, attempt + 1),
                name=f"wecom-mark-retry:{customer_id}",
            )

    async def push(self, customer_id: int, tags: Sequence[tuple[str, str]]) -> PushResult:
        """Make WeCom agree with Kebiao's current state for `tags` ((dimension, name) pairs) on one customer."""
        async with self._store.unit_of_work() as uow:
            customer = await uow.customers.get(customer_id)
            active = await uow.assignments.active_for(customer_id) if customer else []
        if customer is None:
            return PushResult(customer_id, skipped="customer no longer exists")
        if not customer.owner or not customer.wecom_external_userid:
            return PushResult(customer_id, skipped="customer has no owner userid or WeCom external user id")
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
        """Push every customer's active tags (reconcile after outages); returns (customers pushed, failures)."""
        pushed = failed = 0
        skip = 0
        while True:
            async with self._store.unit_of_work() as uow:
                ids, total = await uow.assignments.search(
                    AllOf(()),  # AllOf() = every customer
                    self._clock(),
                    None,
                    skip,
                    PAGE,
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
            skip += len(ids)
            if not ids or skip >= total:
                return pushed, failed


def _touched(changes: Sequence[TagChange]) -> tuple[tuple[str, str], ...]:
    """(dimension, tag) pairs a batch of changes touched, replaced exclusive siblings included."""
    out: dict[tuple[str, str], None] = {}
    for change in changes:
        if change.outcome in ("added", "removed"):
            out[(change.dimension, change.tag)] = None
            for old in change.replaced:
                out[(change.dimension, old)] = None
    return tuple(out)
