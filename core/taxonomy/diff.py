"""Differences between two taxonomy versions: tags added, removed, moved or changed (field by field)."""

from __future__ import annotations

from dataclasses import dataclass

from tagging.normaliser import name_key
from tagging.taxonomy import TagDef, Taxonomy

FIELDS = ("color", "description", "keywords", "exclude", "ttl_days", "auto_apply")


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class TagDiff:
    """One tag's change: kind is added, removed, moved or changed."""

    dimension: str
    tag: str
    kind: str
    changes: tuple[FieldChange, ...] = ()


def _show(value: object) -> str:
    if value is None or value == ():
        return "—"
    if isinstance(value, tuple):
        return "、".join(str(v) for v in value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def _index(taxonomy: Taxonomy) -> dict[tuple[str, str], TagDef]:
    return {(t.dimension, name_key(t.name)): t for t in taxonomy.iter_tags()}


def diff_taxonomies(before: Taxonomy, after: Taxonomy) -> tuple[TagDiff, ...]:
    """What changed from `before` to `after`, in `after`'s order, removed tags last."""
    old, new = _index(before), _index(after)
    out: list[TagDiff] = []
    for key, tag in new.items():
        previous = old.get(key)
        if previous is None:
            out.append(TagDiff(tag.dimension, tag.name, "added"))
            continue
        changes = [
            FieldChange(f, _show(getattr(previous, f)), _show(getattr(tag, f)))
            for f in FIELDS
            if getattr(previous, f) != getattr(tag, f)
        ]
        if previous.name != tag.name:
            changes.insert(0, FieldChange("name", previous.name, tag.name))
        if previous.path[:-1] != tag.path[:-1]:
            before_parent = "/".join(previous.path[:-1]) or "—"
            changes.insert(0, FieldChange("parent", before_parent, "/".join(tag.path[:-1]) or "—"))
        if changes:
            kind = "moved" if changes[0].field == "parent" else "changed"
            out.append(TagDiff(tag.dimension, tag.name, kind, tuple(changes)))
    out.extend(TagDiff(t.dimension, t.name, "removed") for k, t in old.items() if k not in new)
    return tuple(out)
