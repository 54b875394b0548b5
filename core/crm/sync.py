"""The sync service: pull changed CRM records page by page (each page and its cursor in one transaction),
then write Kebiao-mastered tags to the CRM from the durable pending-write table."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.crm.attributes import merged_attributes
from core.crm.mapping import SyncRules, crm_values, held_values, kebiao_values
from core.crm.port import CrmConnector, CrmError, CrmRecord, CrmRecordGone, CrmRef, TagWrite
from core.crm.ports import CrmLink, CrmStore, CrmUnitOfWork, LeaseLost, LinkState, PendingWrite
from core.records import NewEvent
from core.tags.assignments import ApplyItem, TaggingRules, apply_many
from core.types import AssignmentState, EventKind, Source
from tagging.policy import PolicyRefusal
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

STATISTICS_AFTER = 2000  # new customers since the database last refreshed its planner statistics


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """How the sync runs: lease length, write batch, retry back-off, managers-only write-back."""

    lease: timedelta = timedelta(minutes=5)
    write_batch: int = 100
    retry_base: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    write_managers_only: bool = False

    def retry_after(self, attempts: int) -> timedelta:
        return min(self.retry_base * (2 ** min(attempts, 20)), self.retry_max)


@dataclass(slots=True)
class SyncReport:
    """What one run did."""

    connector: str
    dry_run: bool = False
    busy: bool = False
    pages: int = 0
    records: int = 0
    created: int = 0
    added: int = 0
    removed: int = 0
    conflicts: int = 0
    unlinked: int = 0
    refused: int = 0
    attributes: int = 0  # existing customers whose basic attributes changed
    written: int = 0
    write_failures: int = 0
    cursor: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class CrmSync:
    """One connector's sync; `owner` names this process in the lease."""

    def __init__(
        self,
        store: CrmStore,
        connector: CrmConnector,
        taxonomy: Callable[[], Taxonomy],
        tagging: TaggingRules,
        owner: str,
        options: SyncOptions | None = None,
    ) -> None:
        self.store, self.connector, self.taxonomy, self.tagging, self.owner = store, connector, taxonomy, tagging, owner
        self.options = options or SyncOptions()

    @property
    def actor(self) -> str:
        return f"crm:{self.connector.name}"

    async def run(self, now: datetime, *, full: bool = False, dry_run: bool = False) -> SyncReport:
        """Pull every change since the stored cursor (all records with `full`), then write pending tags."""
        name = self.connector.name
        report = SyncReport(name, dry_run=dry_run)
        if not await self.store.acquire(name, self.owner, now, now + self.options.lease):
            report.busy = True
            return report
        try:
            rules = SyncRules.of(self.taxonomy(), self.options.write_managers_only)
            await self.connector.check(rules.fields)
            if full and not dry_run:
                await self.store.reset_cursor(name, self.owner)
            state = await self.store.state(name)
            cursor = None if full or state is None else state.cursor
            await self._pull(rules, cursor, now, report)
            if not dry_run:
                if full:
                    await self.store.mark_all_linked(name, now)
                await self.store.mark_from_events(name, [d.key for d in rules.kebiao], now, 10_000)
                await self._push(rules, now, report)
        except (CrmError, LeaseLost) as exc:
            report.error = str(exc)
            log.warning("crm sync stopped: %s", exc)
        except Exception as exc:
            await self.store.release(name, self.owner, now, f"{name} sync failed unexpectedly: {exc!r}"[:300])
            raise
        await self.store.release(name, self.owner, now, report.error, record=not dry_run)
        return report

    async def _pull(self, rules: SyncRules, cursor: str | None, now: datetime, report: SyncReport) -> None:
        """Apply pages until the CRM has no more; each page commits with its cursor (or rolls back on dry runs).

        The next page is fetched while the current one is written (the cursor it resumes from is already known).
        """
        page = await self.connector.changes(cursor, rules.fields)
        created = report.created
        while True:
            ahead = None if page.done else asyncio.create_task(self.connector.changes(page.cursor, rules.fields))
            try:
                async with self.store.unit_of_work() as uow:
                    await self._apply(uow, rules, page.records, now, report)
                    if report.dry_run:
                        uow.discard()
                    else:
                        await uow.crm.save_cursor(self.connector.name, self.owner, page.cursor, len(page.records), now)
                await self.store.acquire(self.connector.name, self.owner, now, now + self.options.lease)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                    await asyncio.gather(ahead, return_exceptions=True)
                raise
            if report.created - created >= STATISTICS_AFTER and not report.dry_run:
                await self.store.refresh_statistics()
                created = report.created
            report.cursor = page.cursor
            report.pages += 1
            report.records += len(page.records)
            if ahead is None:
                return
            page = await ahead

    async def _apply(
        self, uow: CrmUnitOfWork, rules: SyncRules, records: Sequence[CrmRecord], now: datetime, report: SyncReport
    ) -> None:
        """One page: match or create customers, make CRM-mastered dimensions equal the CRM, note conflicts."""
        name = self.connector.name
        ids = await uow.crm.customers_by_crm_id([r.ref.crm_id for r in records])
        new = {r.ref.crm_id: r.name for r in records if r.ref.crm_id not in ids and not r.deleted and not r.merged_into}
        incoming = {r.ref.crm_id: r.attributes for r in records if r.attributes and not r.deleted and not r.merged_into}
        if new:
            fresh = {k: merged_attributes({}, "", v) or ({}, "") for k, v in incoming.items() if k in new}
            ids.update(await uow.crm.add_customers(list(new.items()), now, fresh))
            report.created += len(new)
        await self._attributes(uow, {ids[k]: v for k, v in incoming.items() if k not in new and k in ids}, now, report)
        links = await uow.crm.links(name, list(ids.values()))
        active = await uow.assignments.active_for_many(list(ids.values()))
        items: list[ApplyItem] = []
        ends: dict[int, NewEvent] = {}  # assignment id -> its removal event
        overruled: list[NewEvent] = []  # the losing side's changes, recorded only
        saved: list[CrmLink] = []
        pending: list[int] = []
        for record in records:
            cid = ids.get(record.ref.crm_id)
            if cid is None:
                continue
            old = links.get(cid)
            if record.deleted or record.merged_into:
                state = LinkState.MERGED if record.merged_into else LinkState.DELETED
                saved.append(
                    CrmLink(
                        cid, record.ref.crm_id, record.ref.kind, state, old.synced if old else {}, record.merged_into
                    )
                )
                report.unlinked += int(old is None or old.state is not state)
                continue
            held = active.get(cid, [])
            crm = crm_values(rules, record)
            base = old.synced if old else {}
            evidence = {"crm": name, "crm_id": record.ref.crm_id}
            for dim in rules.crm:
                want, have = set(crm[dim.key]), set(held_values(dim.key, held))
                changed_here = dim.key in base and set(base[dim.key]) != have and want != set(base[dim.key])
                note = (
                    {**evidence, "conflict": "kebiao change overruled: the CRM is master"} if changed_here else evidence
                )
                report.conflicts += int(changed_here)
                by_name = {t.name: t for t in dim.iter_tags()}
                items += [ApplyItem(cid, dim, by_name[t], now, note) for t in sorted(want - have) if t in by_name]
                for row in held:
                    if row.dimension == dim.key and row.tag not in want:
                        ends[row.id] = NewEvent(
                            cid, dim.key, row.tag, EventKind.REMOVED, self.actor, Source.SYNC, now, note
                        )
            kebiao = kebiao_values(rules, held)
            for dim in rules.kebiao:
                theirs, ours = set(crm[dim.key]), set(kebiao[dim.key])
                if theirs != ours:
                    pending.append(cid)
                if dim.key not in base:
                    continue
                was = set(base[dim.key])
                note = {**evidence, "conflict": "crm change overruled: Kebiao is master"}
                for tag, kind in [
                    *((t, EventKind.ADDED) for t in theirs - was - ours),
                    *((t, EventKind.REMOVED) for t in (was - theirs) & ours),
                ]:
                    report.conflicts += 1
                    change = {**note, "change": kind.value}
                    overruled.append(NewEvent(cid, dim.key, tag, kind, self.actor, Source.SYNC, now, change))
            synced = {d.key: crm[d.key] for d in (*rules.crm, *rules.kebiao)}
            saved.append(CrmLink(cid, record.ref.crm_id, record.ref.kind, LinkState.LINKED, synced))
        await self._write(uow, items, ends, overruled, now, report)
        await uow.crm.save_links(name, saved, now)
        await uow.crm.mark_pending(name, sorted(set(pending)), now)

    async def _attributes(
        self, uow: CrmUnitOfWork, incoming: dict[int, Mapping[str, str]], now: datetime, report: SyncReport
    ) -> None:
        """Existing customers take the CRM's basic attributes (only rows that change are written)."""
        if not incoming:
            return
        current = await uow.crm.customer_attributes(sorted(incoming))
        changed = {}
        for cid, values in incoming.items():
            attrs, region = current.get(cid, ({}, ""))
            merged = merged_attributes(attrs, region, values)
            if merged is not None:
                changed[cid] = merged
        await uow.crm.save_attributes(changed, now)
        report.attributes += len(changed)

    async def _write(
        self,
        uow: CrmUnitOfWork,
        items: list[ApplyItem],
        ends: dict[int, NewEvent],
        overruled: list[NewEvent],
        now: datetime,
        report: SyncReport,
    ) -> None:
        """End removed assignments with their events, record overruled changes, then apply the additions."""
        done = await uow.assignments.end_many(dict.fromkeys(ends, now), AssignmentState.REMOVED) if ends else set()
        report.removed += len(done)
        await uow.events.append_many([*overruled, *(e for k, e in ends.items() if k in done)])
        outcomes = await apply_many(uow, items, self.tagging, actor=self.actor, source=Source.SYNC)
        report.added += sum(1 for o in outcomes if not isinstance(o, PolicyRefusal) and o.outcome == "added")
        refused = [o for o in outcomes if isinstance(o, PolicyRefusal)]
        report.refused += len(refused)
        report.notes += [r.reason for r in refused[:5]]

    async def _push(self, rules: SyncRules, now: datetime, report: SyncReport) -> None:
        """Write pending customers' Kebiao-mastered tags; a failure keeps the row for a later retry."""
        name = self.connector.name
        while True:
            claimed = await self.store.claim_writes(name, now, now + self.options.lease, self.options.write_batch)
            if not claimed:
                return
            planned: list[_Planned] = []
            for index, write in enumerate(claimed):
                try:
                    plan = await self._plan(rules, write)
                except CrmRecordGone as gone:
                    await self._gone(write, gone, report)
                    continue
                except CrmError as exc:
                    # the CRM is down or throttling: every claimed write not yet done waits for a later run
                    rest = [p.write for p in planned] + claimed[index:] if exc.retryable else [write]
                    if await self._failed(rest, exc, now, report):
                        return
                    continue
                if plan is not None:
                    planned.append(plan)
            needed = [p for p in planned if p.change is not None]
            outcomes = await self.connector.write_many([p.change for p in needed if p.change is not None])
            errors = dict(zip((id(p) for p in needed), outcomes, strict=True))
            stop = False
            for plan in planned:
                error = errors.get(id(plan))
                if error is None:
                    await self.store.write_done(name, plan.write.customer_id, plan.write.generation, plan.synced)
                    report.written += 1
                elif isinstance(error, CrmRecordGone):
                    await self._gone(plan.write, error, report)
                else:
                    stop |= await self._failed([plan.write], error, now, report)
            if stop:
                return

    async def _gone(self, write: PendingWrite, gone: CrmRecordGone, report: SyncReport) -> None:
        state = LinkState.MERGED if gone.merged_into else LinkState.DELETED
        await self.store.mark_link(self.connector.name, write.customer_id, state, gone.merged_into)
        report.unlinked += 1

    async def _failed(self, writes: Sequence[PendingWrite], exc: CrmError, now: datetime, report: SyncReport) -> bool:
        """Keep failed writes for a retry with back-off; True when the CRM is down or throttling (stop pushing)."""
        for failed in writes:
            retry = now + self.options.retry_after(failed.attempts)
            await self.store.write_failed(self.connector.name, failed.customer_id, now, retry, str(exc))
        report.write_failures += len(writes)
        if exc.retryable:
            report.error = str(exc)
        return exc.retryable

    async def _plan(self, rules: SyncRules, write: PendingWrite) -> _Planned | None:
        """Compare the CRM record's tags with Kebiao's: what to add and remove, and the link once written."""
        name = self.connector.name
        async with self.store.unit_of_work(read_only=True) as uow:
            link = (await uow.crm.links(name, [write.customer_id])).get(write.customer_id)
            held = (await uow.assignments.active_for_many([write.customer_id])).get(write.customer_id, [])
        if link is None or link.state is not LinkState.LINKED:
            await self.store.mark_link(name, write.customer_id, link.state if link else LinkState.DELETED, None)
            return None
        record = await self.connector.get(CrmRef(link.crm_id, link.kind))
        if record is None:
            raise CrmRecordGone(name, "get", link.crm_id)
        want = kebiao_values(rules, held)
        have = crm_values(rules, record)
        add: list[str] = []
        remove: list[str] = []
        for dim in rules.kebiao:
            writable = {t.name for t in dim.iter_tags() if rules.writable(dim, t)}
            add += sorted(set(want[dim.key]) - set(have[dim.key]))
            remove += sorted((set(have[dim.key]) - set(want[dim.key])) & writable)
        change = TagWrite(record, tuple(add), tuple(remove)) if add or remove else None
        synced = CrmLink(link.customer_id, link.crm_id, link.kind, LinkState.LINKED, {**link.synced, **want})
        return _Planned(write, change, synced)


@dataclass(frozen=True, slots=True)
class _Planned:
    """A claimed write, the CRM change it needs (None: already equal), and the link once done."""

    write: PendingWrite
    change: TagWrite | None
    synced: CrmLink
