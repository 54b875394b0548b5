"""WeCom corp customer tags as a taxonomy dimension, and the hook other flows call after tag changes.

Imported corp tags live in the dimension `wecom` (企业微信标签), one flat tag per distinct name (the group
name becomes the description). Importing again replaces that dimension only; tags that disappeared from
WeCom stay on the customers who hold them (reported as orphaned by the taxonomy store).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from core.ports import UnitOfWork
from core.tags.assignments import TagChange
from core.taxonomy.store import TaxonomyChange, import_taxonomy
from tagging.normaliser import name_key
from tagging.pii import contains_pii
from tagging.taxonomy import Dimension, TagDef, Taxonomy, Visibility

log = logging.getLogger(__name__)

DIMENSION_KEY = "wecom"
DIMENSION_NAME = "企业微信标签"


@dataclass(frozen=True, slots=True)
class CorpTag:
    """One WeCom corp customer tag."""

    id: str
    name: str
    group_id: str
    group_name: str


@dataclass(frozen=True, slots=True)
class CorpTagImport:
    """Outcome of an import: the new taxonomy version (None when nothing changed) and skipped names."""

    change: TaxonomyChange | None
    tags: tuple[CorpTag, ...]
    skipped: tuple[str, ...]


class TagChangeListener(Protocol):
    """Called after a unit of work that changed tags has committed (e.g. to mirror them to WeCom)."""

    async def tags_changed(self, customer_id: int, changes: Sequence[TagChange]) -> None: ...


def corp_tags_from_groups(groups: Iterable[Mapping[str, Any]]) -> list[CorpTag]:
    """Flatten externalcontact/get_corp_tag_list's `tag_group` list; deleted tags are left out."""
    out: list[CorpTag] = []
    for group in groups:
        group_id, group_name = str(group.get("group_id", "")), str(group.get("group_name", ""))
        if group.get("deleted"):
            continue
        for tag in group.get("tag", []) or []:
            if tag.get("deleted") or not tag.get("id") or not str(tag.get("name", "")).strip():
                continue
            out.append(CorpTag(str(tag["id"]), str(tag["name"]).strip(), group_id, group_name))
    return out


def with_corp_tags(taxonomy: Taxonomy, tags: Sequence[CorpTag]) -> tuple[Taxonomy, tuple[str, ...]]:
    """The taxonomy with its `wecom` dimension rebuilt from `tags`; returns the names skipped and why."""
    seen: set[str] = set()
    defs: list[TagDef] = []
    skipped: list[str] = []
    for tag in tags:
        key = name_key(tag.name)
        if key in seen:
            continue  # the same name in two groups is one Kebiao tag
        if contains_pii(tag.name):
            skipped.append(f"{tag.id}: name looks like personal data")
            continue
        seen.add(key)
        defs.append(
            TagDef(name=tag.name, dimension=DIMENSION_KEY, path=(tag.name,), description=tag.group_name or None)
        )
    existing = taxonomy.dimension(DIMENSION_KEY)
    dimension = Dimension(
        key=DIMENSION_KEY,
        name=existing.name if existing else DIMENSION_NAME,
        exclusive=False,
        visibility=existing.visibility if existing else Visibility.ALL,
        tags=tuple(defs),
    )
    if existing is None:
        dimensions = (*taxonomy.dimensions, dimension)
    else:
        dimensions = tuple(dimension if d.key == DIMENSION_KEY else d for d in taxonomy.dimensions)
    return replace(taxonomy, dimensions=dimensions), tuple(skipped)


def _same_tags(a: Dimension | None, b: Dimension | None) -> bool:
    def names(d: Dimension | None) -> list[tuple[str, str | None]]:
        return [(t.name, t.description) for t in d.tags] if d else []

    return names(a) == names(b)


async def import_corp_tags(
    uow: UnitOfWork, taxonomy: Taxonomy, tags: Sequence[CorpTag], actor: str, now: datetime
) -> CorpTagImport:
    """Store a new taxonomy version whose `wecom` dimension holds `tags`; no version when unchanged."""
    updated, skipped = with_corp_tags(taxonomy, tags)
    for problem in skipped:
        log.warning("wecom corp tag skipped: %s", problem)
    if _same_tags(taxonomy.dimension(DIMENSION_KEY), updated.dimension(DIMENSION_KEY)):
        return CorpTagImport(None, tuple(tags), skipped)
    change = await import_taxonomy(uow, updated, actor, now, note=f"WeCom corp tags ({len(tags)})")
    return CorpTagImport(change, tuple(tags), skipped)
