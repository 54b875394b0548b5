"""A version's changes as the history and preview pages show them: tags as diffed, rules and webhooks in words."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from console.rule_text import T, rule_field_text, rule_summary
from core.taxonomy.diff import RuleDiff, TagDiff, VersionDiff, WebhookDiff
from tagging.rules import Webhook


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One rule or webhook added, removed or changed: `summary` for added/removed, `changes` field by field."""

    kind: str
    name: str
    summary: str = ""
    changes: tuple[tuple[str, str, str], ...] = ()  # (field label, before, after)


@dataclass(frozen=True, slots=True)
class Changes:
    tags: tuple[TagDiff, ...]
    rules: tuple[ChangeRow, ...]
    webhooks: tuple[ChangeRow, ...]

    def __len__(self) -> int:
        return len(self.tags) + len(self.rules) + len(self.webhooks)


def _rule_row(diff: RuleDiff, t: T) -> ChangeRow:
    if diff.before is None or diff.after is None:
        rule = diff.after or diff.before
        assert rule is not None
        return ChangeRow(diff.kind, diff.name, summary=rule_summary(rule, t))
    before, after = diff.before, diff.after
    rows = tuple((t(f), rule_field_text(before, f, t), rule_field_text(after, f, t)) for f in diff.fields)
    return ChangeRow(diff.kind, diff.name, changes=rows)


def _shown_url(url: str | None) -> str:
    """The URL without its query (where tokens tend to live)."""
    if not url:
        return "—"
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="…" if parts.query else "", fragment=""))


def _hook_field(hook: Webhook, name: str) -> str:
    return _shown_url(hook.url) if name == "url" else (getattr(hook, name) or "—")


def _hook_summary(hook: Webhook, t: T) -> str:
    where = _shown_url(hook.url) if hook.url else f"${hook.url_env}" if hook.url_env else "—"
    return where + (f" · {t('secret_env')} {hook.secret_env}" if hook.secret_env else "")


def _webhook_row(diff: WebhookDiff, t: T) -> ChangeRow:
    if diff.before is None or diff.after is None:
        hook = diff.after or diff.before
        assert hook is not None
        return ChangeRow(diff.kind, diff.name, summary=_hook_summary(hook, t))
    before, after = diff.before, diff.after
    rows = tuple((t(f), _hook_field(before, f), _hook_field(after, f)) for f in diff.fields)
    return ChangeRow(diff.kind, diff.name, changes=rows)


def changes_in_words(diff: VersionDiff, t: T) -> Changes:
    """The diff ready for the page in the reader's language."""
    return Changes(
        diff.tags,
        tuple(_rule_row(d, t) for d in diff.rules),
        tuple(_webhook_row(d, t) for d in diff.webhooks),
    )
