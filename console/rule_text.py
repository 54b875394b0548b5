"""Rules in words: a trigger, a condition tree and actions as a manager reads them, Chinese or English."""

from __future__ import annotations

from collections.abc import Callable

from tagging.rules import (
    Action,
    AddTag,
    All,
    Any_,
    CallWebhook,
    ChurnScore,
    Condition,
    Events,
    Field,
    HasTag,
    LacksTag,
    MessageTag,
    Not,
    Notify,
    RemoveTag,
    Rule,
    SilentDays,
    SuggestTag,
)

T = Callable[..., str]


def trigger_text(rule: Rule, t: T) -> str:
    trigger = rule.trigger
    if trigger.kind == "event":
        return t("rt_event", kinds="、".join(trigger.event_kinds)) if trigger.event_kinds else t("rt_any_event")
    if trigger.kind == "tag":
        return t("rt_tag", tags="、".join(trigger.tags))
    return t(f"rt_{trigger.kind}")


def _group(items: tuple[Condition, ...], joiner: str, t: T) -> str:
    parts = [condition_text(i, t, nested=True) for i in items]
    return t(joiner).join(parts)


def _all(node: All, t: T) -> str:
    return _group(node.items, "rc_and", t) if node.items else t("rc_always")


def _any(node: Any_, t: T) -> str:
    return _group(node.items, "rc_or", t)


def _not(node: Not, t: T) -> str:
    return t("rc_not", c=condition_text(node.item, t, nested=True))


def _has(node: HasTag, t: T) -> str:
    text = t("rc_has", tag=node.tag)
    if node.min_days is not None:
        text += t("rc_min_days", n=node.min_days)
    if node.max_days is not None:
        text += t("rc_max_days", n=node.max_days)
    return text


def _lacks(node: LacksTag, t: T) -> str:
    return t("rc_lacks", tag=node.tag)


def _message_tag(node: MessageTag, t: T) -> str:
    return t("rc_message_tag", tag=node.tag)


def _events(node: Events, t: T) -> str:
    parts = []
    if node.count is not None:
        parts.append(t("rc_events_count", kind=node.kind, days=node.days, cmp=node.count))
    if node.sum is not None:
        parts.append(t("rc_events_sum", kind=node.kind, days=node.days, cmp=node.sum))
    return t("rc_and").join(parts)


def _field(node: Field, t: T) -> str:
    if node.in_:
        return t("rc_field_in", name=node.name, values="、".join(node.in_))
    if node.compare is not None:
        return t("rc_field_value", name=node.name, cmp=node.compare)
    if node.within_days is not None:
        return t("rc_field_within", name=node.name, n=node.within_days)
    return t(f"rc_field_month_{node.month}", name=node.name)


def _silent(node: SilentDays, t: T) -> str:
    return t("rc_silent", cmp=node.compare)


def _churn(node: ChurnScore, t: T) -> str:
    return t("rc_churn", cmp=node.compare)


_CONDITIONS: dict[type, Callable[..., str]] = {
    All: _all,
    Any_: _any,
    Not: _not,
    HasTag: _has,
    LacksTag: _lacks,
    MessageTag: _message_tag,
    Events: _events,
    Field: _field,
    SilentDays: _silent,
    ChurnScore: _churn,
}


def condition_text(node: Condition, t: T, nested: bool = False) -> str:
    """The condition in words; groups inside groups are bracketed."""
    text = _CONDITIONS[type(node)](node, t)
    grouped = isinstance(node, All | Any_) and len(node.items) > 1
    return f"({text})" if nested and grouped else text


def _add(action: AddTag, t: T) -> str:
    text = t("ra_add", tag=action.tag)
    if action.ttl_days is not None:
        text += t("ra_ttl", n=action.ttl_days)
    return text + (t("ra_contacts") if action.to_contacts else "")


def _remove(action: RemoveTag, t: T) -> str:
    return t("ra_remove", tag=action.tag) + (t("ra_contacts") if action.to_contacts else "")


def _suggest(action: SuggestTag, t: T) -> str:
    return t("ra_suggest", tag=action.tag)


def _notify(action: Notify, t: T) -> str:
    who = [*([t("owner")] if action.owner else []), *([t("ra_managers")] if action.managers else [])]
    who.extend(action.users)
    text = t("ra_notify", who="、".join(who))
    return text + (f"：{action.title}" if action.title else "")


def _webhook(action: CallWebhook, t: T) -> str:
    return t("ra_webhook", name=action.webhook)


_ACTIONS: dict[type, Callable[..., str]] = {
    AddTag: _add,
    RemoveTag: _remove,
    SuggestTag: _suggest,
    Notify: _notify,
    CallWebhook: _webhook,
}


def action_text(action: Action, t: T) -> str:
    return _ACTIONS[type(action)](action, t)


def actions_text(rule: Rule, t: T) -> str:
    return "；".join(action_text(a, t) for a in rule.actions)


def _condition_of(rule: Rule, t: T) -> str:
    return condition_text(rule.condition, t)


def _description(rule: Rule, t: T) -> str:
    return rule.description or "—"


def _enabled(rule: Rule, t: T) -> str:
    return t("enabled") if rule.enabled else t("disabled")


def _priority(rule: Rule, t: T) -> str:
    return "—" if rule.priority is None else str(rule.priority)


_RULE_FIELDS: dict[str, Callable[[Rule, T], str]] = {
    "description": _description,
    "trigger": trigger_text,
    "condition": _condition_of,
    "actions": actions_text,
    "enabled": _enabled,
    "priority": _priority,
}


def rule_field_text(rule: Rule, name: str, t: T) -> str:
    """One field of a rule in words (a name of core.taxonomy.diff.RULE_FIELDS)."""
    return _RULE_FIELDS[name](rule, t)


def rule_summary(rule: Rule, t: T) -> str:
    """The whole rule on one line: trigger, condition, actions and whether it is on."""
    text = f"{trigger_text(rule, t)} · {_condition_of(rule, t)} → {actions_text(rule, t)}"
    return text if rule.enabled else f"{text}（{t('disabled')}）"
