"""Differences between two taxonomy versions: tags added, removed, moved or changed (field by field), and the
rules and webhooks of the same document added, removed or changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tagging.normaliser import name_key
from tagging.rules import Rule, RuleSet, Webhook
from tagging.taxonomy import TagDef, Taxonomy

FIELDS = ("color", "description", "keywords", "exclude", "ttl_days", "auto_apply")
RULE_FIELDS = ("description", "trigger", "condition", "actions", "enabled", "priority")
WEBHOOK_FIELDS = ("url", "url_env", "secret_env")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)
D = TypeVar("D")


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


@dataclass(frozen=True, slots=True)
class RuleDiff:
    """One rule's change: kind is added, removed or changed; `fields` names what changed (RULE_FIELDS order)."""

    name: str
    kind: str
    before: Rule | None
    after: Rule | None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookDiff:
    """One webhook's change: kind is added, removed or changed; `fields` names what changed."""

    name: str
    kind: str
    before: Webhook | None
    after: Webhook | None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """Everything that changed between two versions: tags, rules and webhooks."""

    tags: tuple[TagDiff, ...] = ()
    rules: tuple[RuleDiff, ...] = ()
    webhooks: tuple[WebhookDiff, ...] = ()

    def __len__(self) -> int:
        return len(self.tags) + len(self.rules) + len(self.webhooks)


def _by_name(
    before: Sequence[N],
    after: Sequence[N],
    fields: Sequence[str],
    make: Callable[[str, str, N | None, N | None, tuple[str, ...]], D],
) -> tuple[D, ...]:
    """Items added, changed (matched by name, compared on `fields`) and removed, in `after`'s order, removed last."""
    old = {x.name: x for x in before}
    new = {x.name: x for x in after}
    out: list[D] = []
    for name, item in new.items():
        previous = old.get(name)
        if previous is None:
            out.append(make(name, "added", None, item, ()))
            continue
        changed = tuple(f for f in fields if getattr(previous, f) != getattr(item, f))
        if changed:
            out.append(make(name, "changed", previous, item, changed))
    out.extend(make(name, "removed", x, None, ()) for name, x in old.items() if name not in new)
    return tuple(out)


def diff_rules(before: RuleSet, after: RuleSet) -> tuple[RuleDiff, ...]:
    """Rules added, changed (by name) and removed, in `after`'s order, removed rules last."""
    return _by_name(before.rules, after.rules, RULE_FIELDS, RuleDiff)


def diff_webhooks(before: RuleSet, after: RuleSet) -> tuple[WebhookDiff, ...]:
    """Webhooks added, changed (by name) and removed, in `after`'s order, removed webhooks last."""
    return _by_name(before.webhooks, after.webhooks, WEBHOOK_FIELDS, WebhookDiff)


def diff_versions(before: Taxonomy, after: Taxonomy) -> VersionDiff:
    """Tags, rules and webhooks changed from `before` to `after`."""
    return VersionDiff(
        diff_taxonomies(before, after),
        diff_rules(before.rules, after.rules),
        diff_webhooks(before.rules, after.rules),
    )
