"""Running rules: gather facts (set-based, one keyset page at a time), evaluate, apply the actions.

Tag changes go through the tagging policy (`apply_many`: exclusivity, caps, expiry) with source `rule`, actor
`rule:<name>` and the rule name, taxonomy version and satisfying facts as evidence. Notifications and webhook
calls go into the outbox under unique de-duplication keys, so a second replica or a re-run sends nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from core.alerts.jobs import enqueue_notices
from core.alerts.ports import NewOutboxMessage
from core.alerts.selection import (
    AlertNotice,
    ChurnRules,
    QuietHours,
    Reason,
    SuggestedTag,
    churn_period,
    dedupe_key,
    score_customer,
)
from core.records import NewEvent, NewSuggestion
from core.rules.engine import Clock, Facts, Firing, Prefilter, evaluate, may_fire, may_fire_for_message, prefilter
from core.rules.ports import Counts, RulesStore, RulesUnitOfWork
from core.tags.assignments import ApplyItem, TaggingRules, apply_many, clean_evidence
from core.types import EventKind, Source, SuggestionStatus, User
from tagging.normaliser import name_key
from tagging.policy import PolicyRefusal, find_tag
from tagging.rules import (
    AddTag,
    CallWebhook,
    Events,
    Notify,
    RemoveTag,
    Rule,
    SuggestTag,
    Webhook,
    event_windows,
    uses_churn,
)
from tagging.taxonomy import Dimension, TagDef, Taxonomy

log = logging.getLogger(__name__)

WEBHOOK_CHANNEL = "webhook"
TAG_CURSOR = "rules_tags"
REPEAT_DAYS = 7  # a daily rule's notification repeats at most once per this many days while it holds


def actor_of(rule: Rule) -> str:
    return f"rule:{rule.name}"


@dataclass(frozen=True)
class RuleContext:
    """What rule runs need, built once by the composition root."""

    store: RulesStore
    taxonomy: Callable[[], Taxonomy]
    tagging: TaggingRules = field(default_factory=TaggingRules)
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    channels: tuple[str, ...] = ("msteams",)
    quiet: QuietHours | None = None
    churn: ChurnRules = field(default_factory=ChurnRules)
    webhook_url: Callable[[Webhook], str | None] = lambda hook: hook.url
    batch: int = 2000


@dataclass
class RuleOutcome:
    """What one rule did (or, in a dry run, would do)."""

    fired: int = 0
    added: int = 0
    removed: int = 0
    refused: int = 0
    suggested: int = 0
    notified: int = 0
    webhooks: int = 0
    webhooks_unconfigured: int = 0

    def __str__(self) -> str:
        text = f"fired for {self.fired}, +{self.added} tags, -{self.removed} tags"
        for label, n in (
            ("refused by policy", self.refused),
            ("suggested", self.suggested),
            ("notifications", self.notified),
            ("webhook calls", self.webhooks),
            ("webhook not configured", self.webhooks_unconfigured),
        ):
            if n:
                text += f", {n} {label}"
        return text


@dataclass
class RulesReport:
    customers: int = 0
    rules: dict[str, RuleOutcome] = field(default_factory=dict)

    def outcome(self, rule: Rule) -> RuleOutcome:
        return self.rules.setdefault(rule.name, RuleOutcome())

    def __str__(self) -> str:
        if not self.rules:
            return f"{self.customers} customers evaluated, no rule fired"
        parts = "; ".join(f"{name}: {o}" for name, o in sorted(self.rules.items()))
        return f"{self.customers} customers evaluated; {parts}"


# ---------------------------------------------------------------- triggers


async def run_daily(ctx: RuleContext, now: datetime) -> RulesReport:
    """Every daily rule over every customer, one keyset page per short transaction (memory stays flat);
    then tag-change rules for the changes this made."""
    taxonomy = ctx.taxonomy()
    report = RulesReport()
    period = churn_period(now, ctx.tz, REPEAT_DAYS)
    seen: set[int] = set()
    async for ids, group, known in daily_pages(ctx, taxonomy.rules.by_trigger("daily"), now):
        seen.update(ids)
        await _evaluate_page(ctx, taxonomy, group, ids, known, now, period, report)
    report.customers = len(seen)
    await run_tag_rules(ctx, now, report)
    return report


async def daily_pages(
    ctx: RuleContext, rules: Sequence[Rule], now: datetime
) -> AsyncIterator[tuple[list[int], list[Rule], Counts | None]]:
    """(customer ids, rules to evaluate on them, event counts already read) pages. A rule with a SQL-answerable
    necessary condition (an event threshold, a contract window, a date or numeric field test such as a birthday
    next month: `prefilter`) gets only the customers one statement selects for today, with an event threshold's
    counts in its window; the others scan every customer, one keyset page at a time, so memory stays flat."""
    filtered: dict[Prefilter, list[Rule]] = defaultdict(list)
    scanned: list[Rule] = []
    for rule in rules:
        found = prefilter(rule)
        if found is None:
            scanned.append(rule)
        else:
            filtered[found].append(rule)
    for found, group in filtered.items():
        async with ctx.store.unit_of_work() as uow:
            chosen = await uow.rule_facts.candidates(found, now, now.astimezone(ctx.tz).date())
        covered = chosen.window is not None and _covered(group, [chosen.window])
        for start in range(0, len(chosen.ids), ctx.batch):
            stop = start + ctx.batch
            yield list(chosen.ids[start:stop]), group, chosen.known(start, stop) if covered else None
    last = 0
    while scanned:
        async with ctx.store.unit_of_work() as uow:
            page = await uow.rule_facts.page(last, ctx.batch)
        if not page:
            break
        last = page[-1]
        yield page, scanned, None


async def _evaluate_page(
    ctx: RuleContext,
    taxonomy: Taxonomy,
    rules: Sequence[Rule],
    ids: Sequence[int],
    known: Counts | None,
    now: datetime,
    period: str,
    report: RulesReport,
) -> None:
    """Gather, evaluate and apply for one page of customers in one short transaction."""
    async with ctx.store.unit_of_work() as uow:
        facts = await gather(uow, ctx, ids, rules, now, known)
        firings = [f for r in rules for x in facts if (f := evaluate(r, x, now, ctx.tz)) is not None]
        await apply_firings(uow, ctx, taxonomy, firings, now, lambda _f: period, report)


async def run_for_events(
    ctx: RuleContext, kinds_by_customer: Mapping[int, set[str]], last_event: Mapping[int, str], now: datetime
) -> RulesReport:
    """Event rules for customers that just received events of some kinds (real time, after an import)."""
    taxonomy = ctx.taxonomy()
    rules = taxonomy.rules.by_trigger("event")
    report = RulesReport()
    ids = sorted(cid for cid, kinds in kinds_by_customer.items() if any(_triggered(r, kinds) for r in rules))
    if not ids:
        return report
    report.customers = len(ids)
    thresholds = [p.events for r in rules if (p := prefilter(r)) is not None and p.events is not None]
    windows = event_windows(rules)
    # Every event rule needs an event threshold: one GROUP BY reads the counts, only customers over a
    # threshold are gathered, and their facts take those counts as they are.
    selective = bool(windows) and len(thresholds) == len(rules)
    if selective:  # after an import most customers are under every threshold: drop them set-based first
        ids = await _over_thresholds(ctx, ids, thresholds, now)

    async def candidates(uow: RulesUnitOfWork, part: Sequence[int]) -> list[Facts]:
        known = None
        if selective:
            known = await uow.rule_facts.event_counts(part, windows, now)
            part = [c for c in part if c in known and any(_over(ev, known[c]) for ev in thresholds)]
        return list(await gather(uow, ctx, part, rules, now, known)) if part else []

    def fire(facts: list[Facts]) -> list[Firing]:
        return [
            f
            for r in rules
            for x in facts
            if _triggered(r, kinds_by_customer[x.customer_id]) and (f := evaluate(r, x, now, ctx.tz)) is not None
        ]

    for start in range(0, len(ids), ctx.batch):
        batch = ids[start : start + ctx.batch]
        # Most events fire nothing: look first without taking the write lock (SQLite has one writer).
        async with ctx.store.unit_of_work(read_only=True) as uow:
            facts = await candidates(uow, batch)
        if not fire(facts):
            continue
        async with ctx.store.unit_of_work() as uow:  # something fires: decide again on what the writer sees
            firings = fire(await candidates(uow, batch))
            await apply_firings(
                uow, ctx, taxonomy, firings, now, lambda f: f"e:{last_event[f.facts.customer_id]}", report
            )
    return report


async def run_for_message(
    ctx: RuleContext, customer_id: int, message_key: str, matched: Iterable[str], now: datetime
) -> RulesReport:
    """Message rules for one customer message and the tags it matched."""
    taxonomy = ctx.taxonomy()
    tags = frozenset(name_key(t) for t in matched)
    # A rule that needs a message_tag this message did not match cannot fire: read nothing for it.
    rules = tuple(r for r in taxonomy.rules.by_trigger("message") if may_fire_for_message(r, tags))
    report = RulesReport()
    if not rules:
        return report

    async def firings(uow: RulesUnitOfWork) -> list[Firing]:
        facts = [
            dataclasses.replace(f, message_tags=tags, message_key=message_key)
            for f in await gather(uow, ctx, [customer_id], rules, now)
        ]
        report.customers = len(facts)
        return [f for r in rules for x in facts if (f := evaluate(r, x, now, ctx.tz)) is not None]

    # Most messages fire nothing: look first without taking the write lock (SQLite has one writer).
    async with ctx.store.unit_of_work(read_only=True) as uow:
        if not await firings(uow):
            return report
    async with ctx.store.unit_of_work() as uow:  # something fires: decide again on what the writer sees
        await apply_firings(uow, ctx, taxonomy, await firings(uow), now, lambda _f: f"m:{message_key}", report)
    return report


async def run_tag_rules(
    ctx: RuleContext, now: datetime, report: RulesReport | None = None, limit: int = 5000
) -> RulesReport:
    """Tag-change rules over the tag-event log since the last run (a cursor; compare-and-set, so two replicas
    never both act on the same changes). The first run starts at the end of the log; with no tag rule the cursor
    follows the log's end without reading it."""
    report = report if report is not None else RulesReport()
    taxonomy = ctx.taxonomy()
    rules = taxonomy.rules.by_trigger("tag")
    async with ctx.store.unit_of_work() as uow:
        cursor = await uow.rule_facts.cursor(TAG_CURSOR)
        if cursor is None or not rules:
            # No tag rule: nothing to read, the cursor just follows the log (a rule added later starts there).
            # Reading up to `limit` events each minute on every replica only to move it was work for nothing.
            tail = await _log_end(uow)
            if tail != cursor:
                await uow.rule_facts.move_cursor(TAG_CURSOR, cursor, tail, now)
            return report
        events = await uow.rule_facts.tag_events_after(cursor, limit)
        if not events:
            return report
        triggers = [(rule, {name_key(t) for t in rule.trigger.tags}) for rule in rules]
        watched: dict[int, dict[Rule, Any]] = defaultdict(dict)
        for event in events:
            key = name_key(event.tag)
            for rule, keys in triggers:
                if key in keys:
                    watched[event.customer_id][rule] = event
        facts = {f.customer_id: f for f in await gather(uow, ctx, sorted(watched), rules, now)}
        firings: list[Firing] = []
        for cid, by_rule in watched.items():
            if cid not in facts:
                continue
            for rule, event in by_rule.items():
                firing = evaluate(rule, facts[cid], now, ctx.tz)
                if firing is not None:
                    change = f"标签 {event.tag} {event.kind.value}（{event.actor}）"
                    firings.append(Firing(rule, firing.facts, (change, *firing.evidence)))
        report.customers += len(facts)
        newest = {cid: max(e.id for e in by.values()) for cid, by in watched.items()}
        await apply_firings(uow, ctx, taxonomy, firings, now, lambda f: f"t:{newest[f.facts.customer_id]}", report)
        if not await uow.rule_facts.move_cursor(TAG_CURSOR, cursor, events[-1].id, now):
            uow.discard()  # another process handled these changes first
    return report


async def _log_end(uow: RulesUnitOfWork) -> int:
    return await uow.rule_facts.last_tag_event_id()


async def _over_thresholds(
    ctx: RuleContext, ids: Sequence[int], thresholds: Sequence[Events], now: datetime
) -> list[int]:
    """The customers among `ids` over at least one threshold: one GROUP BY … HAVING per distinct threshold, read
    only (a customer under every threshold cannot fire, since each rule's threshold fails at zero events)."""
    today = now.astimezone(ctx.tz).date()
    over: set[int] = set()
    async with ctx.store.unit_of_work(read_only=True) as uow:
        for threshold in dict.fromkeys(thresholds):
            over.update((await uow.rule_facts.candidates(Prefilter(events=threshold), now, today, ids)).ids)
    return sorted(over)


def _over(threshold: Events, counts: Mapping[tuple[str, int], tuple[int, float]]) -> bool:
    """The event threshold holds on these counts (the Events leaf's own test)."""
    count, total = counts.get(threshold.window, (0, 0.0))
    return (threshold.count is None or threshold.count.test(count)) and (
        threshold.sum is None or threshold.sum.test(total)
    )


def _covered(rules: Sequence[Rule], windows: Sequence[tuple[str, int]]) -> bool:
    """True when each rule counts events only in a window its own event prefilter reads (among `windows`), so
    the prefilter statements' counts are all the rules need."""
    for rule in rules:
        found = prefilter(rule)
        if found is None or found.events is None or found.events.window not in windows:
            return False
        if set(event_windows([rule])) != {found.events.window}:
            return False
    return True


def _triggered(rule: Rule, kinds: set[str]) -> bool:
    return not rule.trigger.event_kinds or bool(kinds & set(rule.trigger.event_kinds))


# ---------------------------------------------------------------- facts


async def gather(
    uow: RulesUnitOfWork,
    ctx: RuleContext,
    ids: Sequence[int],
    rules: Sequence[Rule],
    now: datetime,
    known: Counts | None = None,
) -> list[Facts]:
    """Facts for those customers with only the event windows (and churn score) the rules use.

    Event counts are read only for customers that pass every other conjunct of some rule that counts events
    (a birthday-next-month rule reads the events of one customer in twelve, not of everyone). `known`: counts
    the statement that selected these customers read for every window the rules use (a window missing for a
    customer means it has no such events, which that statement proved), used as they are.
    """
    facts = await uow.rule_facts.facts(ids, (), now)
    windows = event_windows(rules)
    if windows and facts and known is not None:
        facts = [dataclasses.replace(f, events=MappingProxyType(dict(known.get(f.customer_id, {})))) for f in facts]
    elif windows and facts:
        clock = Clock(now, ctx.tz)
        counting = [r for r in rules if event_windows([r])]
        wanted = [f.customer_id for f in facts if any(may_fire(r, f, clock) for r in counting)]
        counts = await uow.rule_facts.event_counts(wanted, windows, now) if wanted else {}
        facts = [dataclasses.replace(f, events=MappingProxyType(counts.get(f.customer_id, {}))) for f in facts]
    if not uses_churn(rules) or not facts:
        return facts
    scores = await churn_scores(uow, ctx, [f.customer_id for f in facts], now)
    return [dataclasses.replace(f, churn_score=scores.get(f.customer_id)) for f in facts]


async def churn_scores(uow: RulesUnitOfWork, ctx: RuleContext, ids: Sequence[int], now: datetime) -> dict[int, float]:
    """The weighted churn score of each customer (the alert job's score, as one condition)."""
    rules = ctx.churn
    since = now - timedelta(days=rules.recent_days)
    out: dict[int, float] = {}
    wanted = sorted(ids)
    i = 0
    while i < len(wanted):
        # customer_facts pages by id: one call covers a run of consecutive ids.
        page = await uow.scans.customer_facts(
            wanted[i] - 1, since, rules.watched_tags, rules.negative_dimension, min(ctx.batch, len(wanted) - i)
        )
        if not page:
            break
        for facts in page:
            out[facts.customer_id] = score_customer(facts, rules, now, ctx.tz).score
        i += 1
        while i < len(wanted) and wanted[i] <= page[-1].customer_id:
            i += 1
    return out


# ---------------------------------------------------------------- actions


async def apply_firings(
    uow: RulesUnitOfWork,
    ctx: RuleContext,
    taxonomy: Taxonomy,
    firings: Sequence[Firing],
    now: datetime,
    period: Callable[[Firing], str],
    report: RulesReport,
) -> None:
    """Carry out every action of every firing inside `uow` (one transaction)."""
    if not firings:
        return
    for firing in firings:
        report.outcome(firing.rule).fired += 1
    contacts = await _contacts(uow, firings)
    # Lower priority first: in an exclusive dimension the last applied tag wins, so the highest priority wins.
    ordered = sorted(firings, key=lambda f: f.rule.priority or 0)
    await _adds(uow, ctx, taxonomy, ordered, contacts, now, report)
    await _removes(uow, taxonomy, ordered, contacts, now, report)
    suggested = await _suggests(uow, taxonomy, ordered, now, period, report)
    await _notify(uow, ctx, firings, now, period, report, suggested)
    await _webhooks(uow, ctx, taxonomy, firings, now, period, report)


class _TagLookup:
    """`find_tag` over one taxonomy, each rule tag name resolved once per batch of firings."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self._taxonomy = taxonomy
        self._found: dict[str, tuple[Dimension, TagDef]] = {}

    def __call__(self, name: str) -> tuple[Dimension, TagDef]:
        if name not in self._found:
            self._found[name] = find_tag(self._taxonomy, name, None, True)
        return self._found[name]


async def _contacts(uow: RulesUnitOfWork, firings: Sequence[Firing]) -> dict[int, list[int]]:
    wanted = {
        f.facts.customer_id
        for f in firings
        if any(isinstance(a, AddTag | RemoveTag) and a.to_contacts for a in f.rule.actions)
    }
    return await uow.rule_facts.contacts(sorted(wanted)) if wanted else {}


def _targets(firing: Firing, to_contacts: bool, contacts: Mapping[int, list[int]]) -> list[int]:
    cid = firing.facts.customer_id
    return list(contacts.get(cid, [])) if to_contacts else [cid]


async def _adds(
    uow: RulesUnitOfWork,
    ctx: RuleContext,
    taxonomy: Taxonomy,
    firings: Sequence[Firing],
    contacts: Mapping[int, list[int]],
    now: datetime,
    report: RulesReport,
) -> None:
    by_rule: dict[Rule, list[ApplyItem]] = defaultdict(list)
    tags = _TagLookup(taxonomy)
    for firing in firings:
        for action in firing.rule.actions:
            if not isinstance(action, AddTag):
                continue
            dimension, tag = tags(action.tag)
            if action.ttl_days is not None:
                tag = dataclasses.replace(tag, ttl_days=action.ttl_days)
            evidence = firing.to_evidence(taxonomy.version)
            for target in _targets(firing, action.to_contacts, contacts):
                if target != firing.facts.customer_id:
                    evidence = {**evidence, "via_company": firing.facts.customer_id}
                by_rule[firing.rule].append(ApplyItem(target, dimension, tag, now, evidence))
    for rule, items in by_rule.items():
        results = await apply_many(uow, items, ctx.tagging, actor=actor_of(rule), source=Source.RULE)
        outcome = report.outcome(rule)
        for result in results:
            if isinstance(result, PolicyRefusal):
                outcome.refused += 1
                log.info("rule %s: %s", rule.name, result.reason)
            elif result.outcome == "added":
                outcome.added += 1


async def _removes(
    uow: RulesUnitOfWork,
    taxonomy: Taxonomy,
    firings: Sequence[Firing],
    contacts: Mapping[int, list[int]],
    now: datetime,
    report: RulesReport,
) -> None:
    for firing in firings:
        for action in firing.rule.actions:
            if not isinstance(action, RemoveTag):
                continue
            removed = await uow.rule_facts.remove_many(_targets(firing, action.to_contacts, contacts), action.tag, now)
            evidence = clean_evidence(firing.to_evidence(taxonomy.version))
            await uow.events.append_many(
                [
                    NewEvent(cid, dim, tag, EventKind.REMOVED, actor_of(firing.rule), Source.RULE, now, evidence)
                    for cid, dim, tag in removed
                ]
            )
            report.outcome(firing.rule).removed += len(removed)


async def _suggests(
    uow: RulesUnitOfWork,
    taxonomy: Taxonomy,
    firings: Sequence[Firing],
    now: datetime,
    period: Callable[[Firing], str],
    report: RulesReport,
) -> dict[tuple[str, int], tuple[SuggestedTag, ...]]:
    """Store the suggestions (once per rule, customer and period); the new ones per (rule name, customer)."""
    rows: list[tuple[Rule, NewSuggestion]] = []
    tags = _TagLookup(taxonomy)
    for firing in firings:
        for action in firing.rule.actions:
            if isinstance(action, SuggestTag) and name_key(action.tag) not in firing.facts.tags:
                dimension, tag = tags(action.tag)
                evidence = clean_evidence(firing.to_evidence(taxonomy.version))
                key = f"rule:{firing.rule.name}:{firing.facts.customer_id}:{period(firing)}"
                rows.append(
                    (
                        firing.rule,
                        NewSuggestion(
                            firing.facts.customer_id,
                            key[:300],
                            dimension.key,
                            tag.name,
                            1.0,
                            evidence,
                            now,
                            SuggestionStatus.PENDING,
                            False,
                            None,
                        ),
                    )
                )
    if not rows:
        return {}
    stored = await uow.suggestions.add_many_if_absent([r for _, r in rows])
    landed = {(s.message_key, s.tag): s for s in stored}
    out: dict[tuple[str, int], tuple[SuggestedTag, ...]] = defaultdict(tuple)
    for rule, row in rows:
        record = landed.get((row.message_key, row.tag))
        if record is not None:
            report.outcome(rule).suggested += 1
            held_in = taxonomy.dimension(record.dimension)
            shown = held_in.name if held_in else record.dimension
            out[(rule.name, row.customer_id)] += (SuggestedTag(record.id, record.tag, shown),)
    return dict(out)


def recipients(action: Notify, facts: Facts, managers: Sequence[User]) -> list[str]:
    """Who a notify action reaches for this customer: owner, managers of its region, named users."""
    out: list[str] = []
    if action.owner and facts.owner:
        out.append(facts.owner)
    if action.managers:
        out.extend(m.id for m in managers if not m.regions or facts.region in m.regions)
    out.extend(action.users)
    return list(dict.fromkeys(out))


def notice_for(firing: Firing, action: Notify, now: datetime, period: str) -> AlertNotice:
    """The alert card of a firing: the rule's title, the satisfying facts as reasons."""
    rule, cid = firing.rule, firing.facts.customer_id
    key = f"rule:{rule.name}:{cid}"
    extra = [Reason("rule", 1.0, f"规则「{rule.name}」" + (f"：{rule.description}" if rule.description else ""))]
    return AlertNotice(
        rule=f"rule:{rule.name}",
        title=action.title or rule.name,
        customer_id=cid,
        customer_name=firing.facts.name,
        reasons=(*(Reason("fact", 1.0, text) for text in firing.evidence), *extra),
        raised_at=now,
        alert_key=f"{key}:{period}",
        snooze_key=key,
    )


async def _notify(
    uow: RulesUnitOfWork,
    ctx: RuleContext,
    firings: Sequence[Firing],
    now: datetime,
    period: Callable[[Firing], str],
    report: RulesReport,
    suggested: Mapping[tuple[str, int], tuple[SuggestedTag, ...]],
) -> None:
    wanted: list[tuple[Firing, Notify, tuple[SuggestedTag, ...]]]
    wanted = [(f, a, ()) for f in firings for a in f.rule.actions if isinstance(a, Notify)]
    # A new suggestion reaches the owner as the suggestion card (Accept / Reject), once.
    for f in firings:
        new = suggested.get((f.rule.name, f.facts.customer_id), ())
        if new:
            title = "建议为客户添加标签「" + "、".join(s.tag for s in new) + "」"
            wanted.append((f, Notify(owner=True, title=title), new))
    if not wanted:
        return
    managers = await uow.scans.managers()
    by_rule: dict[Rule, list[tuple[str, str, str, AlertNotice]]] = defaultdict(list)
    for firing, action, suggestions in wanted:
        p = period(firing)
        notice = dataclasses.replace(notice_for(firing, action, now, p), suggestions=suggestions)
        for recipient in recipients(action, firing.facts, managers):
            by_rule[firing.rule].append((recipient, str(firing.facts.customer_id), p, notice))
    for rule, notices in by_rule.items():
        added = await enqueue_notices(uow, ctx.channels, ctx.quiet, ctx.tz, f"rule:{rule.name}", notices, now)
        report.outcome(rule).notified += added


def webhook_body(firing: Firing, taxonomy: Taxonomy, hook: str, key: str, now: datetime) -> dict[str, Any]:
    """The JSON a webhook receives for one firing (documented in docs/rules.md)."""
    f = firing.facts
    return {
        "id": key,
        "webhook": hook,
        "rule": firing.rule.name,
        "taxonomy_version": taxonomy.version,
        "at": now.isoformat(),
        "customer": {"id": f.customer_id, "name": f.name, "crm_id": f.crm_id, "owner": f.owner, "region": f.region},
        "tags_added": list(firing.rule.added_tags()),
        "tags_removed": [a.tag for a in firing.rule.actions if isinstance(a, RemoveTag)],
        "facts": list(firing.evidence),
        "message_key": f.message_key or None,
    }


async def _webhooks(
    uow: RulesUnitOfWork,
    ctx: RuleContext,
    taxonomy: Taxonomy,
    firings: Sequence[Firing],
    now: datetime,
    period: Callable[[Firing], str],
    report: RulesReport,
) -> None:
    messages: list[tuple[Rule, NewOutboxMessage]] = []
    for firing in firings:
        for action in firing.rule.actions:
            if not isinstance(action, CallWebhook):
                continue
            hook = taxonomy.rules.webhook(action.webhook)
            if hook is None or ctx.webhook_url(hook) is None:
                report.outcome(firing.rule).webhooks_unconfigured += 1
                continue
            key = dedupe_key(f"webhook:{hook.name}", str(firing.facts.customer_id), firing.rule.name, period(firing))
            body = webhook_body(firing, taxonomy, hook.name, key, now)
            messages.append((firing.rule, NewOutboxMessage(key, hook.name, WEBHOOK_CHANNEL, {"body": body})))
    if not messages:
        return
    before = {m.dedupe_key for m in await uow.outbox.by_keys([m.dedupe_key for _, m in messages])}
    await uow.outbox.enqueue_many([m for _, m in messages], now)
    for rule, message in messages:
        if message.dedupe_key not in before:
            report.outcome(rule).webhooks += 1
