"""Editing one tag of a taxonomy as a draft: form values in, a checked taxonomy or field problems out.

Pure: the draft is the taxonomy's file form (design 3.4) with one tag replaced, added or moved, checked by
the same loader that checks files, so the console shows exactly the problems an import would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tagging.loader import Problem, TaxonomyError, load_taxonomy_text, taxonomy_to_data
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

SOURCE = "console"
_SPLIT = re.compile(r"[,，、;；\n\r]+")
GENERAL = "_"  # problems that belong to no single field


@dataclass(frozen=True, slots=True)
class TagForm:
    """A tag as typed into the console's form (every value a string, as the browser sends it)."""

    dimension: str
    parent: str = ""
    name: str = ""
    color: str = ""
    description: str = ""
    keywords: str = ""
    exclude: str = ""
    ttl_days: str = ""
    auto_apply: bool = False
    icon: str = ""
    regions: str = ""  # region names separated by 、 , ; or new lines (empty: the parent's scope)

    @classmethod
    def from_mapping(cls, data: Mapping[str, str]) -> TagForm:
        """Read the form fields; absent fields are empty, the checkbox is on when present."""
        return cls(
            dimension=data.get("dimension", "").strip(),
            parent=data.get("parent", "").strip(),
            name=data.get("name", "").strip(),
            color=data.get("color", "").strip(),
            description=data.get("description", "").strip(),
            keywords=data.get("keywords", ""),
            exclude=data.get("exclude", ""),
            ttl_days=data.get("ttl_days", "").strip(),
            auto_apply=data.get("auto_apply", "") not in ("", "0", "off", "false"),
            icon=data.get("icon", "").strip(),
            regions=data.get("regions", ""),
        )


@dataclass(frozen=True, slots=True)
class DraftResult:
    """A checked draft: `taxonomy` when valid, otherwise problems by form field (GENERAL for the rest)."""

    document: dict[str, Any]
    taxonomy: Taxonomy | None
    problems: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def form_for(taxonomy: Taxonomy, dimension: str, name: str) -> TagForm | None:
    """The form filled with an existing tag; None when it is not in the taxonomy."""
    key = name_key(name)
    for tag in taxonomy.iter_tags():
        if tag.dimension == dimension and name_key(tag.name) == key:
            return TagForm(
                dimension=dimension,
                parent=tag.parent or "",
                name=tag.name,
                color=tag.color or "",
                description=tag.description or "",
                keywords="、".join(tag.keywords),
                exclude="、".join(tag.exclude),
                ttl_days="" if tag.ttl_days is None else str(tag.ttl_days),
                auto_apply=tag.auto_apply,
                icon=tag.icon or "",
                regions="、".join(tag.regions),
            )
    return None


def _words(text: str) -> list[str]:
    return [w.strip() for w in _SPLIT.split(text) if w.strip()]


def _tag_data(form: TagForm, children: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": form.name}
    if form.icon:
        out["icon"] = form.icon
    if form.color:
        out["color"] = form.color
    if form.description:
        out["description"] = form.description
    if keywords := _words(form.keywords):
        out["keywords"] = keywords
    if exclude := _words(form.exclude):
        out["exclude"] = exclude
    if form.ttl_days:
        out["ttl_days"] = int(form.ttl_days) if form.ttl_days.isdigit() else form.ttl_days
    if form.auto_apply:
        out["auto_apply"] = True
    if regions := _words(form.regions):
        out["regions"] = regions
    if children:
        out["children"] = children
    return out


def _take(tags: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """Remove and return the tag named `key` (name key) anywhere in `tags`."""
    for i, tag in enumerate(tags):
        if name_key(tag["name"]) == key:
            return tags.pop(i)
        found = _take(tag.get("children", []), key)
        if found is not None:
            if not tag.get("children"):
                tag.pop("children", None)
            return found
    return None


def _find(tags: list[dict[str, Any]], key: str, path: str) -> tuple[dict[str, Any], str] | None:
    for i, tag in enumerate(tags):
        here = f"{path}[{i}]"
        if name_key(tag["name"]) == key:
            return tag, here
        found = _find(tag.get("children", []), key, f"{here}.children")
        if found is not None:
            return found
    return None


def edit_tag(taxonomy: Taxonomy, original: tuple[str, str] | None, form: TagForm) -> DraftResult:
    """Replace `original` (dimension, name) — or add a new tag when None — with the form's tag, then check."""
    document = taxonomy_to_data(taxonomy)
    dims: list[dict[str, Any]] = document["dimensions"]
    problems: dict[str, list[str]] = {}
    children: list[Any] = []
    if original is not None:
        source = next((d for d in dims if d["key"] == original[0]), None)
        taken = _take(source["tags"], name_key(original[1])) if source else None
        if taken is None:
            return DraftResult(document, None, {GENERAL: (f"tag '{original[1]}' is no longer in the taxonomy",)})
        children = taken.get("children", [])
    target = next((d for d in dims if d["key"] == form.dimension), None)
    if target is None:
        return DraftResult(document, None, {"dimension": (f"dimension '{form.dimension}' does not exist",)})
    siblings: list[Any] = target["tags"]
    prefix = f"dimensions[{dims.index(target)}].tags"
    if form.parent:
        found = _find(target["tags"], name_key(form.parent), prefix)
        if found is None or name_key(form.parent) == name_key(form.name):
            problems.setdefault("parent", []).append(f"parent tag '{form.parent}' is not in dimension {target['name']}")
        else:
            parent, prefix = found[0], f"{found[1]}.children"
            siblings = parent.setdefault("children", [])
    if not form.name:
        problems.setdefault("name", []).append("a tag needs a name")
    if problems:
        return DraftResult(document, None, {k: tuple(v) for k, v in problems.items()})
    siblings.append(_tag_data(form, children))
    return check_document(document, f"{prefix}[{len(siblings) - 1}]")


def check_document(document: dict[str, Any], focus: str | None = None) -> DraftResult:
    """Check a whole draft; problems under `focus` (the edited tag's path) go to their form field."""
    try:
        taxonomy = load_taxonomy_text(json.dumps(document, ensure_ascii=False), source=SOURCE, fmt="json")
    except TaxonomyError as exc:
        return DraftResult(document, None, field_problems(exc.problems, focus))
    return DraftResult(document, taxonomy)


def field_problems(problems: tuple[Problem, ...], focus: str | None) -> dict[str, tuple[str, ...]]:
    """Loader problems by form field: `…tags[2].keywords[1]` → keywords; elsewhere → GENERAL with the path."""
    out: dict[str, list[str]] = {}
    for p in problems:
        name = GENERAL
        if focus and p.path.startswith(focus + ".") and "children[" not in p.path[len(focus) :]:
            name = re.split(r"[.\[]", p.path[len(focus) + 1 :])[0]
        elif focus and p.path == focus:
            name = "name"
        elif focus and p.path == focus.rsplit("[", 1)[0]:  # the list the tag sits in: too deep under its parent
            name = "parent"
        if name == "children":
            name = "parent"
        reason = p.reason if name != GENERAL else (f"{p.path}: {p.reason}" if p.path else p.reason)
        out.setdefault(name, []).append(reason)
    return {k: tuple(v) for k, v in out.items()}


def parse_document(text: str) -> DraftResult:
    """A draft posted back from the preview page (JSON of the file form), checked again."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return DraftResult({}, None, {GENERAL: (f"the draft is not valid JSON: {exc.msg}",)})
    if not isinstance(document, dict):
        return DraftResult({}, None, {GENERAL: ("the draft must be a taxonomy document",)})
    return check_document(document)


@dataclass(frozen=True, slots=True)
class DimensionForm:
    """A dimension's own settings as typed into the console: name, exclusive, managers-only."""

    key: str
    name: str = ""
    exclusive: bool = False
    managers_only: bool = False


def dimension_form(taxonomy: Taxonomy, key: str) -> DimensionForm | None:
    dimension = taxonomy.dimension(key)
    if dimension is None:
        return None
    return DimensionForm(key, dimension.name, dimension.exclusive, dimension.visibility.value == "managers")


def edit_dimension(taxonomy: Taxonomy, form: DimensionForm) -> DraftResult:
    """Change a dimension's name, exclusivity or visibility, then check the whole draft."""
    document = taxonomy_to_data(taxonomy)
    dims: list[dict[str, Any]] = document["dimensions"]
    index = next((i for i, d in enumerate(dims) if d["key"] == form.key), None)
    if index is None:
        return DraftResult(document, None, {GENERAL: (f"dimension '{form.key}' does not exist",)})
    dims[index].update(name=form.name, exclusive=form.exclusive, visibility="managers" if form.managers_only else "all")
    return check_document(document, f"dimensions[{index}]")
