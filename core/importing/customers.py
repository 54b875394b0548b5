"""Writing checked customer rows (core.importing.files) all-or-nothing and idempotently, with their tags."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.importing.files import CustomerRow, ImportFileError, RowProblem
from core.ports import UnitOfWork
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_definition
from core.types import Customer, Source
from tagging.normaliser import name_key
from tagging.policy import AmbiguousTagError, PolicyRefusal, UnknownTagError, find_tag
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


async def import_customers(
    uow: UnitOfWork,
    taxonomy: Taxonomy,
    rules: TaggingRules,
    rows: Sequence[CustomerRow],
    *,
    actor: str,
    now: datetime,
    dry_run: bool = False,
    problems: Sequence[RowProblem] = (),
    refused_tags: Sequence[tuple[int, Sequence[str]]] = (),
) -> ImportSummary:
    """Upsert rows (by crm id, else WeCom id, else normalised name, narrowed by the row's company when it gives
    one) and apply their tags (source import).

    `problems` are those the file reader already found (ImportFile.problems, parsed with collect=True), and
    `refused_tags` the tags of the rows it refused (ImportFile.refused_tags), checked here against the taxonomy.
    Raises ImportFileError listing them and every problem found here, by row then column, after marking the
    unit of work to roll back, so nothing is written.
    """
    resolved, found = _check(rows, taxonomy)
    # Rows are written even when problems are already known: only writing them finds the rest (a name that
    # matches several customers, a tag the rules refuse), and the error rolls the unit of work back.
    found = [*problems, *found]
    found += [p for number, names in refused_tags for p in _tag_problems(number, names, taxonomy)]
    created = updated = unchanged = applied = 0
    for row, tags in zip(rows, resolved, strict=True):
        if tags is None:
            continue  # a second row for one customer: already reported, and writing it twice proves nothing
        draft = _draft(row)
        candidates = await uow.customers.find_for_import(draft)
        if len(candidates) > 1:
            found.append(_ambiguous(row, candidates))
            continue
        existing = candidates[0] if candidates else None
        if existing is None:
            customer = await uow.customers.add(draft, now)
            created += 1
        else:
            merged = _merge(existing, row)
            if merged == _draft_of(existing):
                customer = existing
                unchanged += 1
            else:
                customer = await uow.customers.update(existing.id, merged, now)
                updated += 1
        held = {(a.dimension, name_key(a.tag)) for a in await uow.assignments.active_for(customer.id)}
        for dimension, tag in tags:
            if (dimension.key, name_key(tag.name)) in held:
                continue  # already held: importing again must change nothing (no renewal either)
            try:
                await apply_definition(
                    uow,
                    dimension,
                    tag,
                    rules,
                    customer.id,
                    actor=actor,
                    source=Source.IMPORT,
                    now=now,
                    evidence={"row": row.row},
                )
            except PolicyRefusal as refusal:
                found.append(RowProblem(row.row, "tags", refusal.reason))
                continue
            held.add((dimension.key, name_key(tag.name)))
            applied += 1
    if found:
        uow.discard()  # nothing written, even when the caller catches the error inside its unit of work
        raise ImportFileError(sorted(found, key=_position))
    if dry_run:
        uow.discard()
    return ImportSummary(created, updated, unchanged, applied, dry_run)


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
            try:
                dimension, tag = find_tag(taxonomy, name)
            except (UnknownTagError, AmbiguousTagError) as exc:
                problems.append(RowProblem(row.row, "tags", str(exc)))
                continue
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
