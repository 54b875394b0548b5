"""Pure rule evaluation: a rule's condition over one customer's facts at `now`, with the facts that satisfied it."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from types import MappingProxyType
from typing import Any

from tagging.normaliser import name_key
from tagging.rules import (
    All,
    Any_,
    ChurnScore,
    Compare,
    Condition,
    Events,
    Field,
    HasTag,
    LacksTag,
    MessageTag,
    Not,
    Rule,
    SilentDays,
    walk,
)


@dataclass(frozen=True, slots=True)
class HeldFact:
    """An active tag of the customer and when it was assigned."""

    dimension: str
    tag: str
    assigned_at: datetime


@dataclass(frozen=True, slots=True)
class Facts:
    """What rules may know about one customer at one moment."""

    customer_id: int
    name: str
    owner: str = ""
    region: str = ""
    company: str = ""
    crm_id: str = ""
    contract_end: date | None = None
    created_at: datetime | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tags: Mapping[str, HeldFact] = field(default_factory=lambda: MappingProxyType({}))  # by name_key
    events: Mapping[tuple[str, int], tuple[int, float]] = field(default_factory=lambda: MappingProxyType({}))
    last_message_at: datetime | None = None
    churn_score: float | None = None
    message_tags: frozenset[str] = frozenset()  # name_keys matched in the triggering message
    message_key: str = ""


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule whose condition held for a customer, and the facts that made it hold (for people)."""

    rule: Rule
    facts: Facts
    evidence: tuple[str, ...]

    def to_evidence(self, version: int) -> dict[str, Any]:
        """What the tag-event log stores for a change this firing made."""
        return {
            "rule": self.rule.name,
            "taxonomy_version": version,
            "facts": list(self.evidence),
            "note": f"规则「{self.rule.name}」：" + "；".join(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Clock:
    now: datetime
    tz: tzinfo

    @property
    def today(self) -> date:
        return self.now.astimezone(self.tz).date()


def evaluate(rule: Rule, facts: Facts, now: datetime, tz: tzinfo) -> Firing | None:
    """The firing when the rule's condition holds for these facts, else None."""
    ok, evidence = check(rule.condition, facts, Clock(now, tz))
    return Firing(rule, facts, tuple(evidence)) if ok else None


def evaluate_all(rules: Sequence[Rule], facts: Sequence[Facts], now: datetime, tz: tzinfo) -> list[Firing]:
    """Every (rule, customer) firing; rules in priority order (highest first), customers in the given order."""
    ordered = sorted(rules, key=lambda r: -(r.priority or 0))
    out: list[Firing] = []
    for rule in ordered:
        for f in facts:
            firing = evaluate(rule, f, now, tz)
            if firing is not None:
                out.append(firing)
    return out


def check(node: Condition, facts: Facts, clock: Clock) -> tuple[bool, list[str]]:
    """(holds, the facts that made it hold); leaves dispatch through LEAVES."""
    if isinstance(node, All):
        evidence: list[str] = []
        for item in node.items:
            ok, found = check(item, facts, clock)
            if not ok:
                return False, []
            evidence.extend(found)
        return True, evidence
    if isinstance(node, Any_):
        for item in node.items:
            ok, found = check(item, facts, clock)
            if ok:
                return True, found
        return False, []
    if isinstance(node, Not):
        ok, _ = check(node.item, facts, clock)
        return (False, []) if ok else (True, [f"not ({describe(node.item)})"])
    leaf = LEAVES[type(node)]
    text = leaf(node, facts, clock)
    return (text is not None), ([text] if text is not None else [])


def _has(node: Any, facts: Facts, clock: Clock) -> str | None:
    held = facts.tags.get(name_key(node.tag))
    if held is None:
        return None
    days = (clock.now - held.assigned_at).days
    if node.min_days is not None and days < node.min_days:
        return None
    if node.max_days is not None and days > node.max_days:
        return None
    return f"有标签 {held.tag}（{days} 天前加上）"


def _lacks(node: Any, facts: Facts, clock: Clock) -> str | None:
    return None if name_key(node.tag) in facts.tags else f"没有标签 {node.tag}"


def _message_tag(node: Any, facts: Facts, clock: Clock) -> str | None:
    return f"本条消息匹配 {node.tag}" if name_key(node.tag) in facts.message_tags else None


def _events(node: Events, facts: Facts, clock: Clock) -> str | None:
    count, total = facts.events.get(node.window, (0, 0.0))
    parts: list[str] = []
    if node.count is not None:
        if not node.count.test(count):
            return None
        parts.append(f"{node.days} 天内 {node.kind} {count} 次（{node.count}）")
    if node.sum is not None:
        if not node.sum.test(total):
            return None
        parts.append(f"{node.days} 天内 {node.kind} 金额合计 {_number(total)}（{node.sum}）")
    return "，".join(parts)


FIELD_LABELS = {
    "contract_end": "合同到期",
    "region": "区域",
    "owner": "负责人",
    "company": "公司",
    "name": "名称",
    "crm_id": "CRM编号",
}


def _field(node: Field, facts: Facts, clock: Clock) -> str | None:
    raw = field_value(facts, node.name)
    name = FIELD_LABELS.get(node.name, node.name)
    if raw is None or raw == "":
        return None
    if node.in_:
        return f"{name} = {raw}" if str(raw).strip() in node.in_ else None
    if node.compare is not None:
        number = _to_number(raw)
        if number is None or not node.compare.test(number):
            return None
        return f"{name} = {_number(number)}（{node.compare}）"
    day = _to_date(raw)
    if day is None:
        return None
    if node.within_days is not None:
        left = (day - clock.today).days
        return f"{name} {day.isoformat()}，{left} 天后" if 0 <= left <= node.within_days else None
    month = target_month(node.month, clock.today)
    label = "本月" if node.month == "this" else "下月"
    return f"{name} {raw} 在{label}" if day.month == month else None


def _silent(node: SilentDays, facts: Facts, clock: Clock) -> str | None:
    last = facts.last_message_at or facts.created_at
    if last is None:
        return None
    days = (clock.now - last).days
    return f"{days} 天没有对话（{node.compare}）" if node.compare.test(days) else None


def _churn(node: ChurnScore, facts: Facts, clock: Clock) -> str | None:
    if facts.churn_score is None or not node.compare.test(facts.churn_score):
        return None
    return f"流失风险分 {facts.churn_score:.2f}（{node.compare}）"


LEAVES: dict[type, Callable[[Any, Facts, Clock], str | None]] = {
    HasTag: _has,
    LacksTag: _lacks,
    MessageTag: _message_tag,
    Events: _events,
    Field: _field,
    SilentDays: _silent,
    ChurnScore: _churn,
}


@dataclass(frozen=True, slots=True)
class Prefilter:
    """A necessary condition of a rule that one SQL statement can answer: only customers it selects can fire.

    `events`: an event count/sum test that fails at zero events (so customers without such events never fire);
    `contract_days`: contract_end between today and today + N days;
    `field`: a date test (`month: this|next`, `within_days`) on contract_end or an attribute, or a numeric test
    (`value`) on an attribute; both fail for a missing value. What it selects depends on the day: see `date_span`
    and `number_span`.
    """

    events: Events | None = None
    contract_days: int | None = None
    field: Field | None = None


@dataclass(frozen=True, slots=True)
class DateSpan:
    """The dates a date test accepts on one day: any date in one of `months` (any year), else `first`..`last`."""

    months: tuple[int, ...] = ()
    first: date | None = None
    last: date | None = None


@dataclass(frozen=True, slots=True)
class NumberSpan:
    """Numbers from `low` to `high` (inclusive; None = unbounded): a numeric test widened by a relative margin,
    since a database may round a decimal text to a float differently from Python's float() in the last bit."""

    low: float | None = None
    high: float | None = None


NUMBER_MARGIN = 1e-9  # relative; a float's rounding differs by ~1e-16
CUSTOMER_COLUMNS = ("name", "company", "owner", "region", "crm_id")  # fields that are not attributes


def prefilter(rule: Rule) -> Prefilter | None:
    """The most selective SQL-answerable conjunct of the rule's condition, or None (scan every customer).

    An event threshold first (its statement also reads the counts the rule needs), then a contract window, then
    the field test that accepts the smallest share of a year (a window of N days, or one month in twelve), then
    a numeric attribute test (it only drops customers without the attribute or clearly outside the bound)."""
    node = rule.condition
    items = node.items if isinstance(node, All) else (node,)
    for item in items:
        if isinstance(item, Events) and _fails_at_zero(item):
            return Prefilter(events=item)
    for item in items:
        if isinstance(item, Field) and item.name == "contract_end" and item.within_days is not None:
            return Prefilter(contract_days=item.within_days)
    fields = [item for item in items if isinstance(item, Field) and _answerable(item)]
    if not fields:
        return None
    return Prefilter(field=min(fields, key=_share))  # min keeps the first of equals


def target_month(which: str | None, today: date) -> int:
    """The month number `month: this|next` means on `today` (December's next month is January)."""
    return today.month if which == "this" else today.month % 12 + 1


def date_span(node: Field, today: date) -> DateSpan:
    """The dates `node` (a `month` or `within_days` test) accepts on `today`."""
    if node.within_days is not None:
        return DateSpan(first=today, last=today + timedelta(days=node.within_days))
    return DateSpan(months=(target_month(node.month, today),))


def number_span(compare: Compare) -> NumberSpan:
    """Every number `compare` accepts lies in this span (a superset: `!=` bounds nothing)."""
    margin = max(abs(compare.value), 1.0) * NUMBER_MARGIN
    low = compare.value - margin if compare.op in (">=", ">", "==") else None
    high = compare.value + margin if compare.op in ("<=", "<", "==") else None
    return NumberSpan(low, high)


def is_attribute(name: str) -> bool:
    """True when a field name reads the customer's attributes (as `field_value` does)."""
    return name != "contract_end" and name not in CUSTOMER_COLUMNS


def _answerable(node: Field) -> bool:
    """A date test on contract_end or an attribute, or a numeric test on an attribute."""
    if node.in_:
        return False
    if node.name == "contract_end":
        return node.compare is None
    if not is_attribute(node.name):
        return False
    return node.compare is not None or node.within_days is not None or node.month is not None


def _share(node: Field) -> float:
    """A rough share of customers a field test keeps, to pick the most selective one."""
    if node.within_days is not None:
        return (node.within_days + 1) / 365
    if node.month is not None:
        return 1 / 12
    return 1.0


def may_fire(rule: Rule, facts: Facts, clock: Clock) -> bool:
    """False when a conjunct that needs no event counts already fails (so the counts need not be read)."""
    node = rule.condition
    items = node.items if isinstance(node, All) else (node,)
    for item in items:
        if any(isinstance(n, Events) for n in walk(item)):
            continue
        if not check(item, facts, clock)[0]:
            return False
    return True


def may_fire_for_message(rule: Rule, message_tags: frozenset[str]) -> bool:
    """False when the rule's condition needs a `message_tag` the message did not match (name keys): such a
    rule cannot fire, so no customer facts need to be read for it."""
    return not _needs_other_message_tag(rule.condition, message_tags)


def _needs_other_message_tag(node: Condition, message_tags: frozenset[str]) -> bool:
    if isinstance(node, MessageTag):
        return name_key(node.tag) not in message_tags
    if isinstance(node, All):
        return any(_needs_other_message_tag(item, message_tags) for item in node.items)
    if isinstance(node, Any_):
        return bool(node.items) and all(_needs_other_message_tag(item, message_tags) for item in node.items)
    return False  # Not and every other node can hold whatever the message matched


def _fails_at_zero(node: Events) -> bool:
    tests = [c for c in (node.count, node.sum) if c is not None]
    return bool(tests) and any(not c.test(0) for c in tests)


def field_value(facts: Facts, name: str) -> Any:
    """A customer field (contract_end, region …) or else an attribute column of the customer file."""
    if name == "contract_end":
        return facts.contract_end
    if name in CUSTOMER_COLUMNS:
        return getattr(facts, name)
    return facts.attributes.get(name)


def describe(node: Condition) -> str:
    """A short human description of a condition (for `not …` evidence)."""
    from tagging.rules import condition_data

    return str(condition_data(node))


def window_start(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def _to_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    try:
        return float(str(raw).replace(",", "").strip())
    except ValueError:
        return None


def _to_date(raw: Any) -> date | None:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    text = str(raw).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    parts = text.replace("/", "-").split("-")
    try:
        if len(parts) == 2:  # MM-DD (a birthday without a year)
            return date(2000, int(parts[0]), int(parts[1]))
        if len(parts) == 3:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None
    return None


def _number(value: float) -> str:
    if not math.isfinite(value):  # an attribute "inf" or "nan" parses as a float
        return str(value)
    return str(int(value)) if value == int(value) else f"{value:.2f}"
