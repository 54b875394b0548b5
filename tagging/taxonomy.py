"""Taxonomy types: dimensions, tag definitions and the whole taxonomy (immutable)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from tagging.field_rules import FieldRule
from tagging.normaliser import name_key
from tagging.rules import RuleSet

MAX_DEPTH = 3


class SyncMode(StrEnum):
    """Which side owns a dimension's tags when a CRM is connected."""

    NONE = "none"
    CRM = "crm"  # the CRM is master: its values overwrite Kebiao's; chat edits are refused
    KEBIAO = "kebiao"  # Kebiao is master: its tags are written to the CRM


class Visibility(StrEnum):
    """Who may see a dimension's tags."""

    ALL = "all"
    MANAGERS = "managers"


@dataclass(frozen=True, slots=True)
class TagDef:
    """One tag of the taxonomy; `path` holds the names from the top-level tag down to this one."""

    name: str
    dimension: str
    path: tuple[str, ...]
    color: str | None = None
    description: str | None = None
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    ttl_days: int | None = None
    auto_apply: bool = False
    children: tuple[TagDef, ...] = ()
    regions: tuple[str, ...] = ()  # own scope; empty: the parent's (or the dimension's) scope applies
    icon: str | None = None  # one emoji shown before the name on cards

    @property
    def level(self) -> int:
        return len(self.path)

    @property
    def parent(self) -> str | None:
        return self.path[-2] if len(self.path) > 1 else None


@dataclass(frozen=True, slots=True)
class Dimension:
    """A group of tags (基础属性, 价值等级 …); `exclusive` allows one active tag per customer."""

    key: str
    name: str
    exclusive: bool = False
    visibility: Visibility = Visibility.ALL
    tags: tuple[TagDef, ...] = ()
    sync: SyncMode = SyncMode.NONE
    # CRM field name -> {CRM value -> tag name of this dimension} (only with sync: crm)
    crm_fields: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    # CRM field name -> rules (value lists, numeric ranges), for fields written as a list (only with sync: crm)
    crm_rules: Mapping[str, tuple[FieldRule, ...]] = field(default_factory=lambda: MappingProxyType({}))
    regions: tuple[str, ...] = ()  # empty: every region
    # Built at the first look-up: each message resolves its tags by name, and a product dimension holds thousands.
    _index: _TagIndex | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def iter_tags(self) -> Iterator[TagDef]:
        """Every tag of the dimension, depth first."""
        stack = list(reversed(self.tags))
        while stack:
            tag = stack.pop()
            yield tag
            stack.extend(reversed(tag.children))

    def tags_keyed(self, key: str) -> tuple[TagDef, ...]:
        """The tags whose name has the name key `key` (tagging.normaliser.name_key), depth first."""
        return self._tag_index().by_key.get(key, ())

    def tag_like(self, name: str) -> TagDef | None:
        """The first tag (depth first) whose name has the same name key as `name` (None: no such tag)."""
        tags = self.tags_keyed(name_key(name))
        return tags[0] if tags else None

    def tag_named(self, name: str) -> TagDef | None:
        """The first tag (depth first) named exactly `name`."""
        return self._tag_index().by_name.get(name)

    def _tag_index(self) -> _TagIndex:
        index = self._index
        if index is None:
            index = _TagIndex.of(self.iter_tags())
            object.__setattr__(self, "_index", index)  # a cache of the frozen tags, not a change to them
        return index


@dataclass(frozen=True, slots=True)
class _TagIndex:
    """A dimension's tags by name key and by exact name."""

    by_key: Mapping[str, tuple[TagDef, ...]]
    by_name: Mapping[str, TagDef]

    @classmethod
    def of(cls, tags: Iterator[TagDef]) -> _TagIndex:
        by_key: dict[str, tuple[TagDef, ...]] = {}
        by_name: dict[str, TagDef] = {}
        for tag in tags:
            key = name_key(tag.name)
            by_key[key] = (*by_key.get(key, ()), tag)
            by_name.setdefault(tag.name, tag)
        return cls(by_key, by_name)


@dataclass(frozen=True, slots=True)
class Taxonomy:
    """The company's tag taxonomy; `channels` maps a WeCom 渠道活码 state to a tag name; `rules` holds the
    automation rules and webhooks of the same file."""

    version: int
    dimensions: tuple[Dimension, ...]
    channels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    rules: RuleSet = field(default_factory=RuleSet)
    regions: tuple[str, ...] = ()  # the known region names (empty: any name may be used in `regions:`)

    def iter_tags(self) -> Iterator[TagDef]:
        for dimension in self.dimensions:
            yield from dimension.iter_tags()

    def dimension(self, key: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.key == key), None)

    @property
    def keyword_count(self) -> int:
        return sum(len(t.keywords) for t in self.iter_tags())
