"""Retiring and merging tags: each makes a new taxonomy version and leaves an archive entry.

Retire: the tag leaves the taxonomy (it stops matching); customers keep the assignments, shown as retired,
and every event stays. Merge: the source tag's keywords and excludes join the target, customers holding the
source hold the target instead (one `replaced` event each, naming the source), suggestions move with them,
and the source leaves the taxonomy. Both are refused as a whole when the result would not load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.ports import UnitOfWork
from core.records import NewEvent, TaxonomyVersion
from core.taxonomy.store import import_taxonomy
from core.types import EventKind, Source
from tagging.loader import TaxonomyError, load_taxonomy_text, taxonomy_to_data
from tagging.normaliser import name_key
from tagging.taxonomy import TagDef, Taxonomy

RETIRED = "retired"
MERGED = "merged"


class LifecycleError(ValueError):
    """A retire or merge that cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ArchivedTag:
    """A tag that left the taxonomy by retire or merge, with its definition as it was."""

    dimension: str
    tag: str
    kind: str
    version: int
    actor: str
    at: datetime
    holders: int
    definition: dict[str, Any]
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class MovedHolder:
    """One customer whose assignment moved to the target (`ended` when they already held it)."""

    customer_id: int
    ended: bool


class TagArchive(Protocol):
    async def add(self, entry: ArchivedTag) -> None: ...

    async def entries(self, limit: int) -> list[ArchivedTag]:
        """Newest first."""
        ...

    async def move_holders(
        self, dimension: str, source_key: str, target: str, target_key: str, now: datetime
    ) -> list[MovedHolder]:
        """Active source assignments become the target's; holders of both have the source ended (removed)."""
        ...

    async def move_suggestions(self, dimension: str, source_key: str, target: str, target_key: str) -> int:
        """Suggestions of the source tag count for the target (those that would clash stay); how many moved."""
        ...


class LifecycleUnitOfWork(UnitOfWork, Protocol):
    """A unit of work that also reaches the tag archive (same transaction)."""

    @property
    def tag_archive(self) -> TagArchive: ...

    async def __aenter__(self) -> LifecycleUnitOfWork: ...


@dataclass(frozen=True, slots=True)
class LifecycleResult:
    version: TaxonomyVersion
    moved: int = 0
    ended: int = 0


def _find(taxonomy: Taxonomy, dimension: str, name: str) -> TagDef:
    for tag in taxonomy.iter_tags():
        if tag.dimension == dimension and name_key(tag.name) == name_key(name):
            return tag
    raise LifecycleError(f"tag '{name}' is not in dimension '{dimension}' of the taxonomy in force")


def _remove(tags: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    for i, tag in enumerate(tags):
        if name_key(tag["name"]) == key:
            return tags.pop(i)
        found = _remove(tag.get("children", []), key)
        if found is not None:
            if not tag.get("children"):
                tag.pop("children", None)
            return found
    return None


def _walk(tags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tag in tags:
        out.append(tag)
        out.extend(_walk(tag.get("children", [])))
    return out


def _load(document: dict[str, Any]) -> Taxonomy:
    import json

    try:
        return load_taxonomy_text(json.dumps(document, ensure_ascii=False), source="console", fmt="json")
    except TaxonomyError as exc:
        raise LifecycleError("; ".join(str(p) for p in exc.problems)) from exc


def _without(taxonomy: Taxonomy, tag: TagDef) -> tuple[dict[str, Any], dict[str, Any]]:
    if tag.children:
        names = "、".join(c.name for c in tag.children)
        raise LifecycleError(f"tag '{tag.name}' has sub-tags ({names}); retire, merge or move them first")
    document = taxonomy_to_data(taxonomy)
    dim = next(d for d in document["dimensions"] if d["key"] == tag.dimension)
    removed = _remove(dim["tags"], name_key(tag.name))
    assert removed is not None
    return document, removed


async def _current(uow: UnitOfWork) -> TaxonomyVersion:
    current = await uow.taxonomies.current()
    if current is None:
        raise LifecycleError("no taxonomy is stored yet")
    return current


async def retire_tag(uow: LifecycleUnitOfWork, dimension: str, name: str, actor: str, now: datetime) -> LifecycleResult:
    """Take a tag out of the taxonomy (new version); holders keep it as retired; archived with its definition."""
    current = await _current(uow)
    tag = _find(current.taxonomy, dimension, name)
    document, removed = _without(current.taxonomy, tag)
    channels = {s for s, t in current.taxonomy.channels.items() if name_key(t) == name_key(tag.name)}
    if channels:
        raise LifecycleError(f"channel states {sorted(channels)} still tag customers with '{tag.name}'; remap them")
    taxonomy = _load(document)
    holders = await uow.assignments.count_by_tag(dimension, name_key(tag.name))
    change = await import_taxonomy(uow, taxonomy, actor, now, note=f"retire {dimension}/{tag.name}")
    await uow.tag_archive.add(
        ArchivedTag(dimension, tag.name, RETIRED, change.version.version, actor, now, holders, removed)
    )
    return LifecycleResult(change.version)


def _union(first: Sequence[str], second: Sequence[str]) -> list[str]:
    seen = {name_key(w) for w in first}
    return [*first, *(w for w in second if name_key(w) not in seen)]


async def merge_tags(
    uow: LifecycleUnitOfWork, dimension: str, source: str, target: str, actor: str, now: datetime
) -> LifecycleResult:
    """Merge `source` into `target` (same dimension): keywords, holders, suggestions; source archived."""
    current = await _current(uow)
    src = _find(current.taxonomy, dimension, source)
    dst = _find(current.taxonomy, dimension, target)
    if name_key(src.name) == name_key(dst.name):
        raise LifecycleError("choose two different tags to merge")
    document, removed = _without(current.taxonomy, src)
    dim = next(d for d in document["dimensions"] if d["key"] == dimension)
    into = next(t for t in _walk(dim["tags"]) if name_key(t["name"]) == name_key(dst.name))
    for key in ("keywords", "exclude"):
        words = _union(into.get(key, []), removed.get(key, []))
        if words:
            into[key] = words
    if "channels" in document:
        document["channels"] = {
            s: (dst.name if name_key(t) == name_key(src.name) else t) for s, t in document["channels"].items()
        }
    taxonomy = _load(document)
    change = await import_taxonomy(uow, taxonomy, actor, now, note=f"merge {dimension}/{src.name} into {dst.name}")
    src_key, dst_key = name_key(src.name), name_key(dst.name)
    moved = await uow.tag_archive.move_holders(dimension, src_key, dst.name, dst_key, now)
    evidence = {"via": "console", "merged_from": src.name, "merged_into": dst.name}
    await uow.events.append_many(
        [
            NewEvent(m.customer_id, dimension, src.name, EventKind.REMOVED, actor, Source.MANUAL, now, evidence)
            if m.ended
            else NewEvent(
                m.customer_id, dimension, dst.name, EventKind.REPLACED, actor, Source.MANUAL, now, evidence, src.name
            )
            for m in moved
        ]
    )
    await uow.tag_archive.move_suggestions(dimension, src_key, dst.name, dst_key)
    ended = sum(1 for m in moved if m.ended)
    await uow.tag_archive.add(
        ArchivedTag(dimension, src.name, MERGED, change.version.version, actor, now, len(moved), removed, dst.name)
    )
    return LifecycleResult(change.version, moved=len(moved) - ended, ended=ended)
