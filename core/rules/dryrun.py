"""`rules test`: a draft taxonomy's rules over stored customers, events and messages, writing nothing."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.rules.engine import Facts, Firing, evaluate
from core.rules.service import RuleContext, daily_pages, gather, recipients
from core.types import User
from tagging.normaliser import name_key
from tagging.rules import AddTag, CallWebhook, Notify, RemoveTag, Rule, SuggestTag
from tagging.taxonomy import Taxonomy

EXAMPLES = 5
MESSAGE_LIMIT = 20_000


@dataclass
class RuleForecast:
    """What one rule would do: customers it fires for, tags gained/lost, notifications, webhook calls."""

    rule: str
    trigger: str
    fired: int = 0
    gains: Counter[str] = field(default_factory=Counter)
    losses: Counter[str] = field(default_factory=Counter)
    suggestions: Counter[str] = field(default_factory=Counter)
    notifications: int = 0
    recipients: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)
    webhooks_unconfigured: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "trigger": self.trigger,
            "customers": self.fired,
            "gain": dict(self.gains),
            "lose": dict(self.losses),
            "suggest": dict(self.suggestions),
            "notifications": self.notifications,
            "recipients": dict(self.recipients),
            "webhooks": dict(self.webhooks),
            "webhooks_not_configured": dict(self.webhooks_unconfigured),
            "examples": self.examples,
        }


@dataclass
class Forecast:
    now: datetime
    since: datetime
    customers: int = 0
    messages: int = 0
    rules: list[RuleForecast] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "since": self.since.isoformat(),
            "customers": self.customers,
            "messages": self.messages,
            "rules": [r.to_json() for r in self.rules],
        }


async def forecast(ctx: RuleContext, draft: Taxonomy, now: datetime, since_days: int) -> Forecast:
    """Evaluate every enabled rule of `draft` in a read-only transaction: daily rules over every customer,
    event rules for customers with events since then, message rules over stored messages, tag rules for
    customers whose watched tags changed."""
    since = now - timedelta(days=since_days)
    result = Forecast(now, since)
    forecasts = {r.name: RuleForecast(r.name, _trigger_text(r)) for r in draft.rules.rules if r.enabled}
    result.rules = list(forecasts.values())
    all_rules = [r for r in draft.rules.rules if r.enabled]
    async with ctx.store.unit_of_work(read_only=True) as uow:
        managers = await uow.scans.managers()
        daily = [r for r in all_rules if r.trigger.kind == "daily"]
        last = 0
        while True:  # only counted: daily rules read just the customers their own selection can fire for
            ids = await uow.rule_facts.page(last, ctx.batch)
            if not ids:
                break
            last = ids[-1]
            result.customers += len(ids)
        # As the daily run does: a rule with an event threshold or a contract window starts from the one
        # statement that selects the customers passing it, so a test over 100,000 customers reads only those.
        async for ids, group, known in daily_pages(ctx, daily, now):
            for facts in await gather(uow, ctx, ids, group, now, known):
                _evaluate(group, facts, now, ctx, draft, forecasts, managers)
        events = [r for r in all_rules if r.trigger.kind == "event"]
        if events:
            kinds = sorted({k for r in events for k in r.trigger.event_kinds})
            wide = any(not r.trigger.event_kinds for r in events)
            who = await uow.rule_facts.event_customers([] if wide else kinds, since)
            for facts in await gather(uow, ctx, sorted(who), events, now):
                rules = [
                    r
                    for r in events
                    if not r.trigger.event_kinds or who[facts.customer_id] & set(r.trigger.event_kinds)
                ]
                _evaluate(rules, facts, now, ctx, draft, forecasts, managers)
        messages = [r for r in all_rules if r.trigger.kind == "message"]
        if messages:
            stored = await uow.rule_facts.messages(since, MESSAGE_LIMIT)
            result.messages = len(stored)
            by_id = {
                f.customer_id: f for f in await gather(uow, ctx, sorted({m.customer_id for m in stored}), messages, now)
            }
            for message in stored:
                found = by_id.get(message.customer_id)
                if found is not None:
                    seen = dataclasses.replace(found, message_tags=message.tags, message_key=message.message_key)
                    _evaluate(messages, seen, now, ctx, draft, forecasts, managers)
        tags = [r for r in all_rules if r.trigger.kind == "tag"]
        if tags:
            keys = sorted({name_key(t) for r in tags for t in r.trigger.tags})
            changed = await uow.rule_facts.tag_changes(keys, since)
            for facts in await gather(uow, ctx, sorted(changed), tags, now):
                rules = [
                    r for r in tags if name_key(changed[facts.customer_id]) in {name_key(t) for t in r.trigger.tags}
                ]
                _evaluate(rules, facts, now, ctx, draft, forecasts, managers)
        uow.discard()
    return result


def _evaluate(
    rules: Sequence[Rule],
    facts: Facts,
    now: datetime,
    ctx: RuleContext,
    draft: Taxonomy,
    forecasts: dict[str, RuleForecast],
    managers: Sequence[User],
) -> None:
    for rule in rules:
        firing = evaluate(rule, facts, now, ctx.tz)
        if firing is not None:
            _count(forecasts[rule.name], firing, ctx, draft, managers)


def _count(out: RuleForecast, firing: Firing, ctx: RuleContext, draft: Taxonomy, managers: Sequence[User]) -> None:
    out.fired += 1
    facts = firing.facts
    changes: list[str] = []
    for action in firing.rule.actions:
        held = isinstance(action, AddTag | RemoveTag | SuggestTag) and name_key(action.tag) in facts.tags
        if isinstance(action, AddTag) and not held:
            out.gains[action.tag] += 1
            changes.append(f"+{action.tag}")
        elif isinstance(action, RemoveTag) and held:
            out.losses[action.tag] += 1
            changes.append(f"-{action.tag}")
        elif isinstance(action, SuggestTag) and not held:
            out.suggestions[action.tag] += 1
            changes.append(f"?{action.tag}")
        elif isinstance(action, Notify):
            who = recipients(action, facts, managers)
            out.notifications += len(who)
            out.recipients.update(who)
            changes.extend(f"notify {w}" for w in who)
        elif isinstance(action, CallWebhook):
            hook = draft.rules.webhook(action.webhook)
            if hook is not None and ctx.webhook_url(hook) is not None:
                out.webhooks[action.webhook] += 1
                changes.append(f"webhook {action.webhook}")
            else:
                out.webhooks_unconfigured[action.webhook] += 1
    if len(out.examples) < EXAMPLES:
        out.examples.append(
            {
                "customer_id": facts.customer_id,
                "customer": facts.name,
                "changes": changes,
                "facts": list(firing.evidence),
            }
        )


def _trigger_text(rule: Rule) -> str:
    t = rule.trigger
    if t.kind == "event" and t.event_kinds:
        return f"event:{','.join(t.event_kinds)}"
    if t.kind == "tag":
        return f"tag:{','.join(t.tags)}"
    return t.kind
