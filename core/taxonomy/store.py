"""Taxonomy versions: import as a new version, current, history, rollback (kept assignments reported)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.errors import NotFoundError
from core.ports import UnitOfWork
from core.records import TaxonomyVersion
from core.taxonomy.regional import check_regional_edit
from core.taxonomy.storable import check_storable
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class OrphanedTag:
    """A tag still held by customers but no longer in the taxonomy (kept, shown as retired)."""

    dimension: str
    tag: str
    customers: int


@dataclass(frozen=True, slots=True)
class TaxonomyChange:
    """The version in force after an import; `changed` is False when the import matched it (nothing stored)."""

    version: TaxonomyVersion
    orphaned: tuple[OrphanedTag, ...]
    changed: bool = True


def same_taxonomy(a: Taxonomy, b: Taxonomy) -> bool:
    """Both say the same in file form (what is stored): importing one over the other changes nothing.

    `version` is left out: a stored taxonomy carries its stored version number, a loaded file its format version.
    """
    from tagging.loader import taxonomy_to_data

    def content(taxonomy: Taxonomy) -> dict[str, object]:
        data = taxonomy_to_data(taxonomy)
        data.pop("version", None)
        return data

    return content(a) == content(b)


async def current_taxonomy(uow: UnitOfWork) -> TaxonomyVersion | None:
    return await uow.taxonomies.current()


async def import_taxonomy(
    uow: UnitOfWork, taxonomy: Taxonomy, actor: str, now: datetime, note: str = ""
) -> TaxonomyChange:
    """Store `taxonomy` as the new current version; report held tags it no longer contains.

    A taxonomy identical to the current one stores nothing: the result has `changed=False`.
    """
    check_storable(taxonomy)
    previous = await uow.taxonomies.current()
    if previous is not None and same_taxonomy(previous.taxonomy, taxonomy):
        return TaxonomyChange(previous, (), changed=False)
    # A regional manager changes only their region's part (raises RegionalEditError, a NotAllowedError).
    check_regional_edit(await uow.users.get(actor), previous.taxonomy if previous else None, taxonomy)
    stored = await uow.taxonomies.add_version(taxonomy, actor, now, note)
    orphaned = await _orphaned(uow, previous.taxonomy if previous else None, taxonomy)
    return TaxonomyChange(stored, orphaned)


async def rollback_taxonomy(uow: UnitOfWork, version: int, actor: str, now: datetime) -> TaxonomyChange:
    """Make an earlier version current again, as a new version (history stays append-only)."""
    old = await uow.taxonomies.get(version)
    if old is None:
        known = [v.version for v in await uow.taxonomies.history()]
        raise NotFoundError(f"taxonomy version {version} does not exist (known versions: {known or 'none'})")
    return await import_taxonomy(uow, old.taxonomy, actor, now, note=f"rollback to version {version}")


async def taxonomy_history(uow: UnitOfWork) -> list[TaxonomyVersion]:
    return await uow.taxonomies.history()


async def ensure_taxonomy(uow: UnitOfWork, initial: Taxonomy, actor: str, now: datetime) -> TaxonomyVersion:
    """The current taxonomy, storing `initial` as version 1 on first start."""
    current = await uow.taxonomies.current()
    if current is not None:
        return current
    return (await import_taxonomy(uow, initial, actor, now, note="first start")).version


async def _orphaned(uow: UnitOfWork, before: Taxonomy | None, after: Taxonomy) -> tuple[OrphanedTag, ...]:
    if before is None:
        return ()
    kept = {(t.dimension, name_key(t.name)) for t in after.iter_tags()}
    out = []
    for tag in before.iter_tags():
        if (tag.dimension, name_key(tag.name)) in kept:
            continue
        held = await uow.assignments.count_by_tag(tag.dimension, name_key(tag.name))
        if held:
            out.append(OrphanedTag(tag.dimension, tag.name, held))
    return tuple(out)
