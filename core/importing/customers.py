"""Writing checked customer rows (core.importing.files) all-or-nothing and idempotently, with their tags.

An import is planned by reading only (so it never holds SQLite's write lock while it checks thousands of
rows), then written in one short transaction of set-based statements: chat and other writers keep their
turn on the database throughout, and the import stays all-or-nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.errors import DuplicateKeyError, NotFoundError
from core.importing.files import CustomerRow, ImportFileError, RowProblem
from core.ports import NewAssignment, Store, UnitOfWork
from core.progress import PhaseCounter, Progress
from core.records import CustomerDraft, NewEvent
from core.tags.assignments import ApplyItem, TaggingRules, apply_many, clean_evidence
from core.types import Customer, EventKind, Source
from tagging.normaliser import name_key
from tagging.policy import (
    AmbiguousTagError,
    HeldTag,
    Holding,
    PolicyRefusal,
    UnknownTagError,
    decide_apply,
    find_tag,
    refuse_out_of_scope,
)
from tagging.taxonomy import Dimension, TagDef, Taxonomy


@dataclass(frozen=True, slots=True)
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    tags_applied: int = 0
    dry_run: bool = False

    def __str__(self) -> str:
        prefix = "dry run (nothing written): " if self.dry_run else ""
        return (
            f"{prefix}created {self.created}, updated {self.updated}, unchanged {self.unchanged}, "
            f"tags applied {self.tags_applied}"
        )


@dataclass(frozen=True, slots=True)
class _RowPlan:
    """What one row does: create (customer_id None) or update/keep a stored customer, and which tags to add."""

    row: CustomerRow
    draft: CustomerDraft
    customer_id: int | None
    changed: bool
    tags: tuple[tuple[Dimension, TagDef, datetime | None], ...]  # with the expiry the policy gives them


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """A checked import, computed by reading only; `problems` empty means it can be written."""

    rows: tuple[_RowPlan, ...]
    problems: tuple[RowProblem, ...]

    def summary(self, *, dry_run: bool) -> ImportSummary:
        created = sum(1 for p in self.rows if p.customer_id is None)
        updated = sum(1 for p in self.rows if p.customer_id is not None and p.changed)
        unchanged = len(self.rows) - created - updated
        return ImportSummary(created, updated, unchanged, sum(len(p.tags) for p in self.rows), dry_run)


# Rows looked up per round trip while planning; between rounds the event loop serves other requests.
PLAN_CHUNK = 5000
# Rows written by one import past which the planner's statistics are refreshed in the same transaction.
REFRESH_STATISTICS_AFTER = 10_000
YIELD_EVERY = 50  # rows planned between chances for other coroutines to run


async def import_customers(
    store: Store,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    rows: Sequence[CustomerRow],
    *,
    actor: str,
    now: datetime,
    dry_run: bool = False,
    problems: Sequence[RowProblem] = (),
    refused_tags: Sequence[tuple[int, Sequence[str]]] = (),
    progress: Progress | None = None,
    prepare: Callable[[UnitOfWork], Awaitable[None]] | None = None,
) -> ImportSummary:
    """Upsert rows (by crm id, else WeCom id, else normalised name, narrowed by the row's company when it gives
    one) and apply their tags (source import), all or nothing.

    Everything is checked first in a read-only unit of work (no write lock: chat keeps writing meanwhile);
    a dry run stops there. A clean plan is then written in one short transaction of set-based statements.
    `problems` are those the file reader already found (ImportFile.problems, parsed with collect=True), and
    `refused_tags` the tags of the rows it refused (ImportFile.refused_tags), checked here against the taxonomy.
    Raises ImportFileError listing them and every problem found here, by row then column; nothing is written.
    `progress(phase, done, total)` hears of checking and writing; `prepare` runs first in the write
    transaction (e.g. storing the taxonomy the file was checked against), so it too is all or nothing.
    """
    checking = PhaseCounter(progress, "checking", len(rows))
    checking(0)
    known = [*problems, *(p for number, names in refused_tags for p in _tag_problems(number, names, taxonomy))]
    async with store.unit_of_work(read_only=True) as uow:
        plan = await plan_import(uow, taxonomy, rules, rows, now=now, problems=known, progress=checking)
    if plan.problems:
        raise ImportFileError(list(plan.problems))
    if dry_run:
        return plan.summary(dry_run=True)
    async with store.unit_of_work() as uow:
        if prepare is not None:
            await prepare(uow)
        await write_import(
            uow, plan, rules, actor=actor, now=now, progress=PhaseCounter(progress, "writing", len(plan.rows))
        )
    return plan.summary(dry_run=False)


async def plan_import(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    rows: Sequence[CustomerRow],
    *,
    now: datetime,
    problems: Sequence[RowProblem] = (),
    progress: Callable[[int], None] | None = None,
) -> ImportPlan:
    """Check every row against the stored customers and the tag policy, reading only."""
    # Pure CPU over every row: a worker thread, so the event loop keeps serving chat meanwhile.
    resolved, found = await asyncio.to_thread(_check, rows, taxonomy)
    found = [*problems, *found]
    wanted = [(row, tags, _draft(row)) for row, tags in zip(rows, resolved, strict=True) if tags is not None]
    plans: list[_RowPlan] = []
    for start in range(0, len(wanted), PLAN_CHUNK):
        chunk = wanted[start : start + PLAN_CHUNK]
        candidates = await uow.customers.find_for_import_many([draft for _, _, draft in chunk])
        stored = [c[0].id for c in candidates if len(c) == 1]
        held_by_id = await uow.assignments.active_for_many(stored) if stored else {}
        for index, ((row, tags, draft), matches) in enumerate(zip(chunk, candidates, strict=True)):
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let other requests' database round trips move on between rows
            if len(matches) > 1:
                found.append(_ambiguous(row, matches))
                continue
            existing = matches[0] if matches else None
            held = [HeldTag(a.dimension, a.tag) for a in held_by_id.get(existing.id, [])] if existing else []
            region = row.region or (existing.region if existing else "")
            to_add = _plan_tags(row, tags, held, rules, now, found, region)
            if existing is None:
                plans.append(_RowPlan(row, draft, None, True, to_add))
            else:
                merged = _merge(existing, row)
                plans.append(_RowPlan(row, merged, existing.id, merged != _draft_of(existing), to_add))
        if progress is not None:
            progress(len(chunk))
    return ImportPlan(tuple(plans), tuple(sorted(found, key=_position)))


def _plan_tags(
    row: CustomerRow,
    tags: Sequence[tuple[Dimension, TagDef]],
    held: list[HeldTag],
    rules: TaggingRules,
    now: datetime,
    found: list[RowProblem],
    region: str = "",
) -> tuple[tuple[Dimension, TagDef, datetime | None], ...]:
    """The row's tags the customer does not hold yet, decided by the same pure policy as applying them."""
    out: list[tuple[Dimension, TagDef, datetime | None]] = []
    for dimension, tag in tags:
        if any(h.dimension == dimension.key and name_key(h.tag) == name_key(tag.name) for h in held):
            continue  # already held: importing again must change nothing (no renewal either)
        try:
            refuse_out_of_scope(dimension, tag, region)
            decision = decide_apply(dimension, tag, Holding.of(held), now, rules.tz, rules.hard_cap)
        except PolicyRefusal as refusal:
            found.append(RowProblem(row.row, "tags", refusal.reason))
            continue
        gone = {(r.dimension, name_key(r.tag)) for r in decision.replaces}
        held = [h for h in held if (h.dimension, name_key(h.tag)) not in gone]
        held.append(HeldTag(dimension.key, tag.name))
        out.append((dimension, tag, decision.expires_at))
    return tuple(out)


async def write_import(
    uow: UnitOfWork,
    plan: ImportPlan,
    rules: TaggingRules,
    *,
    actor: str,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write a clean plan in a handful of set-based statements; raises ImportFileError (after discarding the
    unit of work) when the stored data changed since planning so that a tag is now refused, or a crm_id or
    WeCom id of the file was stored meanwhile by another writer.

    New customers hold nothing yet, so their tags are inserted as planned (one ADDED event each); tags of
    stored customers go through `apply_many`, which re-reads what they hold inside this transaction.
    """
    report = progress or (lambda _: None)
    new = [p for p in plan.rows if p.customer_id is None]
    changed = [p for p in plan.rows if p.customer_id is not None and p.changed]
    report(0)  # the writing phase has begun
    try:
        added = await uow.customers.add_many([p.draft for p in new], now)
        report(len(new))
        await uow.customers.update_many([(p.customer_id, p.draft) for p in changed if p.customer_id is not None], now)
    except DuplicateKeyError as exc:
        uow.discard()
        raise ImportFileError([_taken(plan, exc)]) from exc
    report(len(changed))
    fresh: list[NewAssignment] = []
    events: list[NewEvent] = []
    for p, customer_id in zip(new, added, strict=True):
        evidence = clean_evidence({"row": p.row.row})
        for dimension, tag, expires_at in p.tags:
            fresh.append(NewAssignment(customer_id, dimension.key, tag.name, Source.IMPORT, actor, now, expires_at))
            events.append(
                NewEvent(customer_id, dimension.key, tag.name, EventKind.ADDED, actor, Source.IMPORT, now, evidence)
            )
    await uow.assignments.insert_fresh(fresh)
    await uow.events.append_many(events)
    items: list[ApplyItem] = []
    origins: list[int] = []
    for p in plan.rows:
        if p.customer_id is None:
            continue
        for dimension, tag, _ in p.tags:
            items.append(ApplyItem(p.customer_id, dimension, tag, now, evidence={"row": p.row.row}))
            origins.append(p.row.row)
    try:
        outcomes = await apply_many(uow, items, rules, actor=actor, source=Source.IMPORT)
    except NotFoundError as exc:
        uow.discard()
        reason = f"{exc}: a customer was deleted while the file was being checked; import the file again"
        raise ImportFileError([RowProblem(None, None, reason)]) from exc
    refused = [
        RowProblem(row, "tags", outcome.reason)
        for row, outcome in zip(origins, outcomes, strict=True)
        if isinstance(outcome, PolicyRefusal)
    ]
    if refused:
        uow.discard()
        raise ImportFileError(refused)
    if len(new) + len(changed) >= REFRESH_STATISTICS_AFTER:
        await uow.customers.refresh_statistics()
    report(len(plan.rows) - len(new) - len(changed))


def _taken(plan: ImportPlan, exc: DuplicateKeyError) -> RowProblem:
    """The row whose crm_id or WeCom id another writer stored while the file was being checked."""
    column = exc.column if exc.column in ("crm_id", "wecom_external_userid") else None
    rows = [
        p.row.row
        for p in plan.rows
        if column is not None and exc.value is not None and getattr(p.draft, column).strip() == exc.value
    ]
    shown = f" {exc.value!r}" if exc.value is not None else ""
    return RowProblem(
        rows[0] if rows else None,
        column,
        f"another customer with {exc.column}{shown} was stored while the file was being checked (a second import "
        "or a sync running at the same time); nothing was imported: import the file again, and it will update "
        "that customer",
    )


def _position(problem: RowProblem) -> tuple[int, str]:
    """Sort key: whole-file problems first, then by row, then by column (a stable sort keeps the rest)."""
    return (problem.row or 0, problem.column or "")


def _check(
    rows: Sequence[CustomerRow], taxonomy: Taxonomy
) -> tuple[list[list[tuple[Dimension, TagDef]] | None], list[RowProblem]]:
    """Resolve every row's tags (unknown or clashing ones left out); None for a row repeating a customer."""
    problems: list[RowProblem] = []
    resolved: list[list[tuple[Dimension, TagDef]] | None] = []
    seen: dict[tuple[str, str], int] = {}
    known: dict[str, tuple[Dimension, TagDef] | str] = {}  # a file repeats a few tag names over many rows
    for row in rows:
        identity = _identity(row)
        if identity in seen:
            problems.append(
                RowProblem(
                    row.row,
                    identity[0],
                    f"same customer as row {seen[identity]} ({identity[1]}); merge the rows",
                )
            )
        else:
            seen[identity] = row.row
        tags: list[tuple[Dimension, TagDef]] = []
        exclusive_seen: dict[str, str] = {}
        for name in row.tags:
            if name not in known:
                known[name] = _resolve(taxonomy, name)
            found = known[name]
            if isinstance(found, str):
                problems.append(RowProblem(row.row, "tags", found))
                continue
            dimension, tag = found
            if dimension.exclusive:
                if dimension.key in exclusive_seen and exclusive_seen[dimension.key] != tag.name:
                    problems.append(
                        RowProblem(
                            row.row,
                            "tags",
                            f"{exclusive_seen[dimension.key]!r} and {tag.name!r} are both in exclusive "
                            "dimension "
                            f"{dimension.name}; keep one",
                        )
                    )
                    continue
                exclusive_seen[dimension.key] = tag.name
            if all(t is not tag for _, t in tags):
                tags.append((dimension, tag))
        resolved.append(tags if seen[identity] == row.row else None)
    return resolved, problems


def _resolve(taxonomy: Taxonomy, name: str) -> tuple[Dimension, TagDef] | str:
    """The (dimension, tag) a tag name means, or why it means none."""
    try:
        return find_tag(taxonomy, name)
    except (UnknownTagError, AmbiguousTagError) as exc:
        return str(exc)


def _tag_problems(row: int, names: Sequence[str], taxonomy: Taxonomy) -> list[RowProblem]:
    """Unknown or ambiguous tag names of a row the file reader refused for another reason."""
    problems: list[RowProblem] = []
    for name in names:
        try:
            find_tag(taxonomy, name)
        except (UnknownTagError, AmbiguousTagError) as exc:
            problems.append(RowProblem(row, "tags", str(exc)))
    return problems


def _ambiguous(row: CustomerRow, candidates: Sequence[Customer]) -> RowProblem:
    """A row without crm id / WeCom id whose name (and company) fits several stored customers."""
    listed = ", ".join(
        f"id {c.id} {c.name}" + (f" / {c.company}" if c.company else "") + (f" (crm_id {c.crm_id})" if c.crm_id else "")
        for c in candidates
    )
    return RowProblem(
        row.row,
        "name",
        f"{row.name!r} matches {len(candidates)} customers ({listed}); add a crm_id (or "
        "wecom_external_userid, or company) column value to say which one",
    )


def _identity(row: CustomerRow) -> tuple[str, str]:
    if row.crm_id:
        return "crm_id", row.crm_id.strip()
    if row.wecom_external_userid:
        return "wecom_external_userid", row.wecom_external_userid.strip()
    return "name", f"{name_key(row.name)} / {name_key(row.company or '')}"


def _draft(row: CustomerRow) -> CustomerDraft:
    return CustomerDraft(
        name=row.name,
        company=row.company or "",
        owner=row.owner or "",
        region=row.region or "",
        crm_id=row.crm_id or "",
        wecom_external_userid=row.wecom_external_userid or "",
        contract_end=row.contract_end,
        attributes=dict(row.attributes),
    )


def _draft_of(c: Customer) -> CustomerDraft:
    return CustomerDraft(
        c.name,
        c.company,
        c.owner,
        c.region,
        c.crm_id,
        c.wecom_external_userid,
        c.contract_end,
        dict(c.attributes),
    )


def _merge(existing: Customer, row: CustomerRow) -> CustomerDraft:
    """The file's values over the stored ones; empty cells keep what is stored."""
    return CustomerDraft(
        name=row.name.strip() or existing.name,
        company=(row.company or "").strip() or existing.company,
        owner=(row.owner or "").strip() or existing.owner,
        region=(row.region or "").strip() or existing.region,
        crm_id=(row.crm_id or "").strip() or existing.crm_id,
        wecom_external_userid=(row.wecom_external_userid or "").strip() or existing.wecom_external_userid,
        contract_end=row.contract_end or existing.contract_end,
        attributes={**existing.attributes, **row.attributes},
    )
