"""Adding keywords to one tag as a new taxonomy version (`kebiao taxonomy add-keywords TAG WORD...`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.ports import UnitOfWork
from core.taxonomy.store import TaxonomyChange, import_taxonomy
from tagging.loader import load_taxonomy_text, taxonomy_to_data
from tagging.normaliser import name_key
from tagging.policy import find_tag
from tagging.taxonomy import Taxonomy


@dataclass(frozen=True, slots=True)
class KeywordAddition:
    """The taxonomy with the words added, which were new and which the tag already had."""

    taxonomy: Taxonomy
    dimension: str
    tag: str
    added: tuple[str, ...]
    already: tuple[str, ...]


def _find(tags: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for tag in tags:
        if tag.get("name") == name:
            return tag
        found = _find(tag.get("children", []), name)
        if found is not None:
            return found
    return None


def with_keywords(
    taxonomy: Taxonomy, tag_name: str, words: Sequence[str], dimension_key: str | None = None
) -> KeywordAddition:
    """`taxonomy` with `words` added to the tag's keywords (in `dimension_key` when given), checked like a file.

    Raises UnknownTagError/AmbiguousTagError for the tag and TaxonomyError (every problem listed) when a
    word breaks a taxonomy rule (e.g. personal data in a keyword).
    """
    dimension, tag = find_tag(taxonomy, tag_name, dimension_key)
    data = taxonomy_to_data(taxonomy)
    dim_data = next(d for d in data["dimensions"] if d["key"] == dimension.key)
    tag_data = _find(dim_data["tags"], tag.name)
    if tag_data is None:  # pragma: no cover - find_tag found it in the same taxonomy
        raise LookupError(tag.name)
    keywords: list[str] = list(tag_data.get("keywords", []))
    known = {name_key(k) for k in keywords}
    added: list[str] = []
    already: list[str] = []
    for word in words:
        word = word.strip()
        if not word:
            continue
        if name_key(word) in known:
            already.append(word)
            continue
        known.add(name_key(word))
        keywords.append(word)
        added.append(word)
    tag_data["keywords"] = keywords
    checked = load_taxonomy_text(json.dumps(data, ensure_ascii=False), source="add-keywords", fmt="json")
    return KeywordAddition(checked, dimension.key, tag.name, tuple(added), tuple(already))


async def add_keywords(
    uow: UnitOfWork,
    tag_name: str,
    words: Sequence[str],
    actor: str,
    now: datetime,
    dimension_key: str | None = None,
) -> tuple[KeywordAddition, TaxonomyChange | None]:
    """Store the taxonomy in force plus the new keywords as a new version (none when nothing was new)."""
    current = await uow.taxonomies.current()
    if current is None:
        raise LookupError("no taxonomy is stored yet; import one with `kebiao taxonomy import`")
    addition = with_keywords(current.taxonomy, tag_name, words, dimension_key)
    if not addition.added:
        return addition, None
    note = f"keywords added to {addition.dimension}/{addition.tag}: {', '.join(addition.added)}"
    change = await import_taxonomy(uow, addition.taxonomy, actor, now, note=note)
    return addition, change
