"""What a taxonomy must satisfy before it is stored: its texts fit their columns and hold no NUL or lone surrogate,
its numbers fit theirs. Checked where every import (admin API, CLI, rollback) stores a version, and reported
like the loader's own problems, so an oversized key or a lone-surrogate tag name is a refusal, never a
database error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from core.inbound import LIMITS, MAX_INT32, text_problem
from tagging.loader import Problem, TaxonomyError
from tagging.normaliser import name_key
from tagging.taxonomy import TagDef, Taxonomy

SOURCE = "taxonomy"


def check_storable(taxonomy: Taxonomy) -> None:
    """Raise TaxonomyError listing every field that cannot be stored as it is."""
    problems = list(storable_problems(taxonomy))
    if problems:
        raise TaxonomyError(problems)


def storable_problems(taxonomy: Taxonomy) -> Iterator[Problem]:
    """Every text or number of `taxonomy` that its column cannot hold."""
    for d, dimension in enumerate(taxonomy.dimensions):
        where = f"dimensions[{d}]"
        yield from _text(f"{where}.key", dimension.key, LIMITS["dimension_key"])
        yield from _text(f"{where}.name", dimension.name, LIMITS["tag"])
        for path, tag in _tags(dimension.tags, f"{where}.tags"):
            yield from _tag(path, tag)
    for key, value in taxonomy.channels.items():
        yield from _text(f"channels.{key[:40]}", key, None)
        yield from _text(f"channels.{key[:40]}", value, LIMITS["tag"])


def _tags(tags: Iterable[TagDef], where: str) -> Iterator[tuple[str, TagDef]]:
    for i, tag in enumerate(tags):
        yield f"{where}[{i}]", tag
        yield from _tags(tag.children, f"{where}[{i}].children")


def _tag(path: str, tag: TagDef) -> Iterator[Problem]:
    yield from _text(f"{path}.name", tag.name, LIMITS["tag"])
    if text_problem(tag.name) is None and len(name_key(tag.name)) > LIMITS["tag"]:
        yield Problem(SOURCE, f"{path}.name", f"normalised, the name is longer than {LIMITS['tag']} characters")
    if tag.color is not None:
        yield from _text(f"{path}.color", tag.color, LIMITS["color"])
    if tag.description is not None:
        yield from _text(f"{path}.description", tag.description, None)
    for field, words in (("keywords", tag.keywords), ("exclude", tag.exclude)):
        for i, word in enumerate(words):
            yield from _text(f"{path}.{field}[{i}]", word, None)
    if tag.ttl_days is not None and not 0 <= tag.ttl_days <= MAX_INT32:
        yield Problem(SOURCE, f"{path}.ttl_days", f"ttl_days must be between 0 and {MAX_INT32}")


def _text(path: str, value: str, limit: int | None) -> Iterator[Problem]:
    problem = text_problem(value, limit)
    if problem is not None:
        yield Problem(SOURCE, path, f"{path.rsplit('.', 1)[-1]} {problem}")
