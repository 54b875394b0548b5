"""Taxonomy <-> JSON document in the taxonomy-file shape (design.md 3.4), as stored per version."""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any

from tagging.loader import parse_rules_section
from tagging.rules import RuleSet, ruleset_to_data
from tagging.taxonomy import Dimension, SyncMode, TagDef, Taxonomy, Visibility

log = logging.getLogger(__name__)


def to_document(taxonomy: Taxonomy) -> dict[str, Any]:
    """The whole taxonomy as plain JSON data."""
    return {
        "version": taxonomy.version,
        "dimensions": [
            {
                "key": d.key,
                "name": d.name,
                "exclusive": d.exclusive,
                "visibility": d.visibility.value,
                "tags": [_tag_document(t) for t in d.tags],
                "sync": d.sync.value,
                "crm_fields": {f: dict(v) for f, v in d.crm_fields.items()},
            }
            for d in taxonomy.dimensions
        ],
        "channels": dict(taxonomy.channels),
        **ruleset_to_data(taxonomy.rules),
    }


def from_document(document: dict[str, Any], version: int) -> Taxonomy:
    """Rebuild a stored taxonomy; `version` is the stored version number."""
    dimensions = tuple(
        Dimension(
            key=d["key"],
            name=d["name"],
            exclusive=bool(d.get("exclusive", False)),
            visibility=Visibility(d.get("visibility", "all")),
            tags=tuple(_tag_from(t, d["key"], ()) for t in d.get("tags", [])),
            sync=SyncMode(d.get("sync", "none")),
            crm_fields=MappingProxyType(
                {f: MappingProxyType(dict(v)) for f, v in (d.get("crm_fields") or {}).items()}
            ),
        )
        for d in document.get("dimensions", [])
    )
    return Taxonomy(
        version=version,
        dimensions=dimensions,
        channels=MappingProxyType(dict(document.get("channels") or {})),
        rules=stored_ruleset(document, dimensions),
    )


def _tag_document(tag: TagDef) -> dict[str, Any]:
    return {
        "name": tag.name,
        "color": tag.color,
        "description": tag.description,
        "keywords": list(tag.keywords),
        "exclude": list(tag.exclude),
        "ttl_days": tag.ttl_days,
        "auto_apply": tag.auto_apply,
        "children": [_tag_document(c) for c in tag.children],
    }


def _tag_from(doc: dict[str, Any], dimension: str, parents: tuple[str, ...]) -> TagDef:
    path = (*parents, doc["name"])
    return TagDef(
        name=doc["name"],
        dimension=dimension,
        path=path,
        color=doc.get("color"),
        description=doc.get("description"),
        keywords=tuple(doc.get("keywords") or ()),
        exclude=tuple(doc.get("exclude") or ()),
        ttl_days=doc.get("ttl_days"),
        auto_apply=bool(doc.get("auto_apply", False)),
        children=tuple(_tag_from(c, dimension, path) for c in doc.get("children") or ()),
    )


def stored_ruleset(document: dict[str, Any], dimensions: tuple[Dimension, ...]) -> RuleSet:
    """The rules of a stored version (validated when stored; a problem now is logged and the rules skipped)."""
    problems: list[str] = []
    ruleset = parse_rules_section(document, dimensions, lambda path, reason: problems.append(f"{path}: {reason}"))
    if problems:
        log.error("stored taxonomy rules are invalid and were skipped: %s", "; ".join(problems))
        return RuleSet()
    return ruleset
