"""Differences between two taxonomy versions: tags added, removed, moved or changed (field by field), and the
rules and webhooks of the same document added, removed or changed."""

from __future__ import annotations

from dataclasses import dataclass

from tagging.normaliser import name_key
from tagging.rules import Rule, RuleSet, Webhook
from tagging.taxonomy import TagDef, Taxonomy

FIELDS = ("color", "description", "keywords", "exclude", "ttl_days", "auto_apply")
RULE_FIELDS = ("description", "trigger", "condition", "actions", "enabled", "priority")
WEBHOOK_FIELDS = ("url", "url_env", "secret_env")


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


def diff_rules(before: RuleSet, after: RuleSet) -> tuple[RuleDiff, ...]:
    """Rules added, changed (by name) and removed, in `after`'s order, removed rules last."""
    old = {r.name: r for r in before.rules}
    new = {r.name: r for r in after.rules}
    out: list[RuleDiff] = []
    for name, rule in new.items():
        previous = old.get(name)
        if previous is None:
            out.append(RuleDiff(name, "added", None, rule))
            continue
        fields = tuple(f for f in RULE_FIELDS if getattr(previous, f) != getattr(rule, f))
        if fields:
            out.append(RuleDiff(name, "changed", previous, rule, fields))
    out.extend(RuleDiff(name, "removed", rule, None) for name, rule in old.items() if name not in new)
    return tuple(out)


def diff_webhooks(before: RuleSet, after: RuleSet) -> tuple[WebhookDiff, ...]:
    """Webhooks added, changed (by name) and removed, in `after`'s order, removed webhooks last."""
    old = {w.name: w for w in before.webhooks}
    new = {w.name: w for w in after.webhooks}
    out: list[WebhookDiff] = []
    for name, hook in new.items():
        previous = old.get(name)
        if previous is None:
            out.append(WebhookDiff(name, "added", None, hook))
            continue
        fields = tuple(f for f in WEBHOOK_FIELDS if getattr(previous, f) != getattr(hook, f))
        if fields:
            out.append(WebhookDiff(name, "changed", previous, hook, fields))
    out.extend(WebhookDiff(name, "removed", hook, None) for name, hook in old.items() if name not in new)
    return tuple(out)


def diff_versions(before: Taxonomy, after: Taxonomy) -> VersionDiff:
    """Tags, rules and webhooks changed from `before` to `after`."""
    return VersionDiff(
        diff_taxonomies(before, after),
        diff_rules(before.rules, after.rules),
        diff_webhooks(before.rules, after.rules),
    )
