"""Pure alert selection: churn signals and score, expiry digests, recipients, quiet hours, alert payloads.

Everything here takes `now` (an aware datetime) and plain data, and touches no database or network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from core.types import User
from tagging.normaliser import name_key

CHURN_RULE = "churn"
EXPIRY_RULE = "expiry"
CHURN_TAG = "高危流失"


@lru_cache(maxsize=1024)
def tag_key(name: str) -> str:
    """name_key, remembered: scoring normalises the same few watched tag names for every customer."""
    return name_key(name)


# ---------------------------------------------------------------- quiet hours


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A local-time window (may wrap midnight, e.g. 22:00-08:00) in which nothing is sent."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """'22:00-08:00' → QuietHours; 'off' or '' → None; anything else raises ValueError."""
        value = text.strip().lower()
        if value in {"", "off", "none"}:
            return None
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"quiet hours {text!r}: use HH:MM-HH:MM, e.g. 22:00-08:00, or off")
        return cls(parse_clock(start), parse_clock(end))

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def parse_clock(text: str) -> time:
    """'08:00' → time(8, 0); raises ValueError naming the bad value."""
    hour, sep, minute = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError
        return time(int(hour), int(minute))
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a time of day; use HH:MM, e.g. 09:00") from None


def release_time(at: datetime, quiet: QuietHours | None, tz: tzinfo) -> datetime:
    """`at` itself, or — inside quiet hours — the local morning when quiet hours end."""
    if quiet is None:
        return at
    local = at.astimezone(tz)
    if not quiet.contains(local.timetz().replace(tzinfo=None)):
        return at
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)  # evening part of a window that wraps midnight: release tomorrow
    return datetime.combine(day, quiet.end, tz).astimezone(at.tzinfo)


# ---------------------------------------------------------------- recipients


def recipients_for(owner: str, region: str, managers: Sequence[User]) -> tuple[str, ...]:
    """The owner, then every manager with no regions (all) or whose regions include the customer's."""
    out: list[str] = [owner] if owner else []
    for manager in managers:
        if (not manager.regions or region in manager.regions) and manager.id not in out:
            out.append(manager.id)
    return tuple(out)


def dedupe_key(rule: str, customer: str, recipient: str, period: str) -> str:
    """The outbox de-duplication key: (rule, customer, recipient, period), kept within 500 characters."""
    key = f"{rule}|{customer}|{recipient}|{period}"
    if len(key) <= 500:
        return key
    return f"{rule}|{customer}|sha256:{hashlib.sha256(recipient.encode()).hexdigest()}|{period}"


# ---------------------------------------------------------------- alert payload


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an alert fired: the signal, its weight and a sentence for people."""

    signal: str
    weight: float
    text: str
    customer_id: int | None = None  # digests: the customer this row is about (its card gets a Show button)


@dataclass(frozen=True, slots=True)
class SuggestedTag:
    """A pending suggestion a notice carries: the card shows it with Accept / Reject."""

    id: int
    tag: str
    dimension: str  # the dimension's display name


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """What an alert says; stored as the outbox payload and rendered per channel at delivery."""

    rule: str
    title: str
    customer_id: int
    customer_name: str
    reasons: tuple[Reason, ...]
    raised_at: datetime
    alert_key: str  # acknowledging this stops repeats of the same alert
    snooze_key: str  # snoozing this silences the rule for the customer (or the digest) for a while
    score: float | None = None
    assignment_ids: tuple[int, ...] = ()  # expiry digests: every tag the digest covers (listed or counted)
    owner: str = ""  # who looks after the customer (churn alerts): the user id
    owner_name: str = ""  # the owner's display name when the alert was raised ("" when unknown)
    unlisted: int = 0  # expiry digests: tags counted but not listed
    suggestions: tuple[SuggestedTag, ...] = ()  # a rule's suggestions: delivered as the suggestion card

    def to_payload(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"assignment_ids": list(self.assignment_ids)} if self.assignment_ids else {}
        named = (("owner", self.owner), ("owner_name", self.owner_name), ("unlisted", self.unlisted))
        extra |= {key: value for key, value in named if value}
        if self.suggestions:
            extra["suggestions"] = [{"id": s.id, "tag": s.tag, "dimension": s.dimension} for s in self.suggestions]
        return extra | {
            "rule": self.rule,
            "title": self.title,
            "customer_id": self.customer_id,
            "customer_name": self.customer_name,
            "reasons": [_reason_payload(r) for r in self.reasons],
            "raised_at": self.raised_at.isoformat(),
            "alert_key": self.alert_key,
            "snooze_key": self.snooze_key,
            "score": self.score,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> AlertNotice:
        return cls(
            rule=str(data["rule"]),
            title=str(data["title"]),
            customer_id=int(data["customer_id"]),
            customer_name=str(data["customer_name"]),
            reasons=tuple(
                Reason(
                    str(r["signal"]),
                    float(r["weight"]),
                    str(r["text"]),
                    None if r.get("customer_id") is None else int(r["customer_id"]),
                )
                for r in data.get("reasons", ())
            ),
            raised_at=datetime.fromisoformat(str(data["raised_at"])),
            alert_key=str(data["alert_key"]),
            snooze_key=str(data["snooze_key"]),
            score=None if data.get("score") is None else float(data["score"]),
            assignment_ids=tuple(int(i) for i in data.get("assignment_ids", ())),
            owner=str(data.get("owner") or ""),
            owner_name=str(data.get("owner_name") or ""),
            unlisted=int(data.get("unlisted") or 0),
            suggestions=tuple(
                SuggestedTag(int(s["id"]), str(s["tag"]), str(s["dimension"])) for s in data.get("suggestions", ())
            ),
        )


def _reason_payload(reason: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {"signal": reason.signal, "weight": reason.weight, "text": reason.text}
    if reason.customer_id is not None:
        out["customer_id"] = reason.customer_id
    return out


# ---------------------------------------------------------------- churn risk


@dataclass(frozen=True, slots=True)
class ChurnWeights:
    """How much each signal adds to the score (0..1 each); a signal that does not fire adds nothing."""

    contract_end: float = 0.4
    silence: float = 0.2
    risk_tags: float = 0.25
    negative: float = 0.15
    agent_deleted: float = 0.5

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, float]]) -> ChurnWeights:
        """Weights from (signal, weight) pairs; unknown signals or weights outside 0..1 raise ValueError."""
        values: dict[str, float] = {}
        for signal, weight in pairs:
            if signal not in cls.__dataclass_fields__:
                known = ", ".join(cls.__dataclass_fields__)
                raise ValueError(f"unknown churn signal {signal!r}; known signals: {known}")
            if not 0 <= weight <= 1:
                raise ValueError(f"churn weight {signal}={weight} must be between 0 and 1")
            values[signal] = weight
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ChurnRules:
    """Signals, their windows and the threshold over which a customer is 高危流失."""

    weights: ChurnWeights = ChurnWeights()
    threshold: float = 0.6
    contract_days: int = 30
    silence_days: int = 30
    recent_days: int = 30
    risk_tags: tuple[str, ...] = ("售后工单", "紧急工单", "竞品对比")  # refund, complaint/urgent, competitor
    renewal_tags: tuple[str, ...] = ("续费意向",)
    negative_dimension: str = "risk"
    negative_min: int = 1
    repeat_days: int = 7  # an unacknowledged alert is repeated once per this many days

    @property
    def watched_tags(self) -> tuple[str, ...]:
        return (*self.risk_tags, *self.renewal_tags, CHURN_TAG)


@dataclass(frozen=True, slots=True)
class HeldTag:
    tag: str
    assigned_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What churn scoring knows about one customer."""

    customer_id: int
    name: str
    owner: str
    region: str
    contract_end: date | None
    created_at: datetime
    last_contact_at: datetime | None = None
    watched_tags: tuple[HeldTag, ...] = ()  # active risk / renewal / 高危流失 tags only
    negative_suggestions: int = 0  # risk-dimension suggestions not rejected, within the recent window
    agent_removed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChurnAssessment:
    customer_id: int
    customer_name: str
    owner: str
    region: str
    score: float
    reasons: tuple[Reason, ...]
    already_tagged: bool

    @property
    def fingerprint(self) -> str:
        """Which signals fired: acknowledging holds until the set of reasons changes."""
        return "+".join(sorted(r.signal for r in self.reasons))


def churn_reasons(facts: CustomerFacts, rules: ChurnRules, now: datetime, tz: tzinfo) -> tuple[Reason, ...]:
    """Every signal that fires for the customer, heaviest first, each with its weight and a sentence."""
    w = rules.weights
    today = now.astimezone(tz).date()
    held = {tag_key(t.tag): t for t in facts.watched_tags}
    reasons: list[Reason] = []
    if facts.contract_end is not None and w.contract_end > 0:
        days = (facts.contract_end - today).days
        renewed = any(tag_key(t) in held for t in rules.renewal_tags)
        if days <= rules.contract_days and not renewed:
            when = f"{days}天后到期" if days >= 0 else f"已过期{-days}天"
            reasons.append(
                Reason("contract_end", w.contract_end, f"合同{when}（{facts.contract_end.isoformat()}），未续费")
            )
    last = max(facts.last_contact_at or facts.created_at, facts.created_at)
    silent = (now - last).days
    if silent >= rules.silence_days and w.silence > 0:
        heard = "最近联系" if facts.last_contact_at else "建档"
        reasons.append(Reason("silence", w.silence, f"已{silent}天没有对话（{heard}于{_day(last, tz)}）"))
    recent = now - timedelta(days=rules.recent_days)
    risky = [t for t in facts.watched_tags if t.tag in rules.risk_tags and t.assigned_at >= recent]
    if risky and w.risk_tags > 0:
        names = "、".join(sorted({t.tag for t in risky}))
        reasons.append(Reason("risk_tags", w.risk_tags, f"近{rules.recent_days}天出现风险标签：{names}"))
    if facts.negative_suggestions >= rules.negative_min and w.negative > 0:
        reasons.append(
            Reason("negative", w.negative, f"近{rules.recent_days}天有{facts.negative_suggestions}条负面对话")
        )
    if facts.agent_removed_at is not None and facts.agent_removed_at >= recent and w.agent_deleted > 0:
        reasons.append(
            Reason("agent_deleted", w.agent_deleted, f"客户于{_day(facts.agent_removed_at, tz)}在企业微信删除了跟进人")
        )
    return tuple(sorted(reasons, key=lambda r: r.weight, reverse=True))


def score_customer(facts: CustomerFacts, rules: ChurnRules, now: datetime, tz: tzinfo) -> ChurnAssessment:
    """The customer's score and reasons, whatever the score (0 with no reasons)."""
    reasons = churn_reasons(facts, rules, now, tz)
    score = round(min(1.0, sum(r.weight for r in reasons)), 4)
    churn_key = tag_key(CHURN_TAG)
    tagged = any(tag_key(t.tag) == churn_key for t in facts.watched_tags)
    return ChurnAssessment(facts.customer_id, facts.name, facts.owner, facts.region, score, reasons, tagged)


def is_at_risk(assessment: ChurnAssessment, rules: ChurnRules) -> bool:
    """At or over the threshold, with at least one signal."""
    return bool(assessment.reasons) and assessment.score >= rules.threshold


def assess_churn(facts: CustomerFacts, rules: ChurnRules, now: datetime, tz: tzinfo) -> ChurnAssessment | None:
    """The customer's score and reasons when it reaches the threshold; None below it."""
    assessment = score_customer(facts, rules, now, tz)
    return assessment if is_at_risk(assessment, rules) else None


@dataclass(frozen=True, slots=True)
class ChurnSeeds:
    """Which customers churn scoring must look at, as bounds storage selects by index instead of scoring all.

    Silence is the one signal met by most customers; it is left out unless it reaches the threshold alone
    (then, or when every customer fires some signal, `everyone` is set). Any other at-risk customer fires a
    signal listed here. Holders of 高危流失 are always scored: one whose score fell back may need untagging.
    """

    everyone: bool
    contract_until: date | None  # a contract ending on or before this local day
    since: datetime  # the recent window's start (risk tags, negative suggestions, an agent removed)
    risk_tags: tuple[str, ...]
    negative_dimension: str | None
    agent_removed: bool
    held_tag: str = CHURN_TAG

    def admits(self, facts: CustomerFacts) -> bool:
        """Whether the customer meets the bounds (what storage's candidate query selects)."""
        if self.everyone:
            return True
        risky = {name_key(t) for t in self.risk_tags}
        return (
            (
                self.contract_until is not None
                and facts.contract_end is not None
                and facts.contract_end <= self.contract_until
            )
            or any(name_key(t.tag) in risky and t.assigned_at >= self.since for t in facts.watched_tags)
            or any(name_key(t.tag) == name_key(self.held_tag) for t in facts.watched_tags)
            or (self.negative_dimension is not None and facts.negative_suggestions > 0)
            or (self.agent_removed and facts.agent_removed_at is not None and facts.agent_removed_at >= self.since)
        )


def churn_seeds(rules: ChurnRules, now: datetime, tz: tzinfo) -> ChurnSeeds:
    """The bounds any customer `score_customer` may put at risk meets (see ChurnSeeds)."""
    w = rules.weights
    silence_alone = w.silence > 0 and w.silence >= rules.threshold
    negative_for_all = w.negative > 0 and rules.negative_min <= 0
    today = now.astimezone(tz).date()
    return ChurnSeeds(
        everyone=silence_alone or negative_for_all,
        contract_until=today + timedelta(days=rules.contract_days) if w.contract_end > 0 else None,
        since=now - timedelta(days=rules.recent_days),
        risk_tags=rules.risk_tags if w.risk_tags > 0 else (),
        negative_dimension=rules.negative_dimension if w.negative > 0 else None,
        agent_removed=w.agent_deleted > 0,
    )


def churn_period(now: datetime, tz: tzinfo, repeat_days: int) -> str:
    """The repeat window `now` falls in (local days since the epoch // repeat_days)."""
    days = (now.astimezone(tz).date() - date(1970, 1, 1)).days
    return f"p{repeat_days}-{days // max(1, repeat_days)}"


def churn_notice(assessment: ChurnAssessment, now: datetime, owner_name: str = "") -> AlertNotice:
    """The alert for one at-risk customer (with its owner's display name); its key changes when the set of
    reasons changes."""
    cid = assessment.customer_id
    return AlertNotice(
        rule=CHURN_RULE,
        title=f"高危流失预警 · 风险分 {assessment.score:.2f}",
        customer_id=cid,
        customer_name=assessment.customer_name,
        reasons=assessment.reasons,
        raised_at=now,
        alert_key=f"{CHURN_RULE}:{cid}:{assessment.fingerprint}",
        snooze_key=f"{CHURN_RULE}:{cid}",
        score=assessment.score,
        owner=assessment.owner,
        owner_name=owner_name,
    )


def churn_evidence(assessment: ChurnAssessment) -> dict[str, Any]:
    """What the 高危流失 tag event stores: the score, threshold-crossing reasons and weights."""
    return {
        "rule": CHURN_RULE,
        "score": assessment.score,
        "reasons": [{"signal": r.signal, "weight": r.weight, "text": r.text} for r in assessment.reasons],
        "note": "；".join(r.text for r in assessment.reasons),
    }


def churn_cleared_evidence(assessment: ChurnAssessment, rules: ChurnRules) -> dict[str, Any]:
    """What the removal of 高危流失 stores: the new score, below the threshold, and what still fires."""
    remaining = "；".join(r.text for r in assessment.reasons) or "无流失信号"
    return {
        "rule": CHURN_RULE,
        "score": assessment.score,
        "threshold": rules.threshold,
        "reasons": [{"signal": r.signal, "weight": r.weight, "text": r.text} for r in assessment.reasons],
        "note": f"风险分 {assessment.score:.2f} 低于阈值 {rules.threshold:.2f}（{remaining}）",
    }


# ---------------------------------------------------------------- tag expiry


@dataclass(frozen=True, slots=True)
class ExpiringTag:
    """An active assignment with an expiry, and who looks after its customer."""

    assignment_id: int
    customer_id: int
    customer_name: str
    owner: str
    region: str
    dimension: str
    tag: str
    assigned_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ExpiryRules:
    """Warn N days before a tag expires (per tag, default 7), once, in the first digest after that."""

    default_days: int = 7
    per_tag: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_items: int = 10  # listed per digest; the count covers the rest

    def days_for(self, tag: str) -> int:
        return self.per_tag.get(name_key(tag), self.default_days)

    @property
    def horizon_days(self) -> int:
        return max([self.default_days, *self.per_tag.values()])


def warning_day(item: ExpiringTag, rules: ExpiryRules, tz: tzinfo) -> date:
    """The local day the tag enters its warning window (or the day it was assigned, if later)."""
    due = max(item.expires_at - timedelta(days=rules.days_for(item.tag)), item.assigned_at)
    return due.astimezone(tz).date()


def in_warning(item: ExpiringTag, rules: ExpiryRules, now: datetime, tz: tzinfo) -> bool:
    """Not expired yet, and its warning window has opened (today or earlier, local time)."""
    return item.expires_at > now and warning_day(item, rules, tz) <= now.astimezone(tz).date()


def digest_keys(recipient: str, now: datetime, tz: tzinfo, rules: ExpiryRules) -> list[str]:
    """Outbox keys of every digest that can have listed a tag still in its window (today's included).

    A tag in its window expires after `now`, so its window opened at most `horizon_days` ago: digests older
    than that cannot have listed it, which keeps the look-back bounded.
    """
    today = now.astimezone(tz).date()
    days = (today - timedelta(days=k) for k in range(rules.horizon_days + 2))
    return [dedupe_key(EXPIRY_RULE, "*", recipient, day.isoformat()) for day in days]


@dataclass
class Digest:
    """One recipient's newly warned tags on one local send day: the most urgent listed, all counted."""

    recipient: str
    day: date
    count: int = 0
    items: list[ExpiringTag] = field(default_factory=list)
    assignment_ids: list[int] = field(default_factory=list)

    def add(self, item: ExpiringTag, limit: int) -> None:
        self.count += 1
        self.assignment_ids.append(item.assignment_id)
        self.items.append(item)
        if len(self.items) > limit:  # keep the listed part bounded: drop the least urgent
            self.items.sort(key=lambda i: (i.expires_at, i.assignment_id))
            del self.items[limit:]


class DigestBuilder:
    """One digest per recipient per send day, holding every tag in its warning window that no earlier
    digest to that recipient covered: each tag is warned once, in the first digest after its window opens."""

    def __init__(
        self,
        managers: Sequence[User],
        rules: ExpiryRules,
        now: datetime,
        tz: tzinfo,
        already: Mapping[str, AbstractSet[int]] | None = None,
        managers_only: AbstractSet[str] = frozenset(),
    ) -> None:
        self._managers = managers
        self._manager_ids = {m.id for m in managers}
        self._managers_only = managers_only  # dimension keys whose tags only managers may see
        self._rules = rules
        self._now = now
        self._tz = tz
        self._today = now.astimezone(tz).date()
        self._already = already or {}
        self.digests: dict[str, Digest] = {}

    def add(self, item: ExpiringTag) -> bool:
        """File the tag under each recipient not warned about it yet; True when filed anywhere."""
        if not in_warning(item, self._rules, self._now, self._tz):
            return False
        filed = False
        hidden = item.dimension in self._managers_only
        for recipient in recipients_for(item.owner, item.region, self._managers):
            if item.assignment_id in self._already.get(recipient, ()):
                continue
            if hidden and recipient not in self._manager_ids:
                continue  # a managers-only tag never reaches an agent, not even as a count
            digest = self.digests.get(recipient)
            if digest is None:
                digest = self.digests[recipient] = Digest(recipient, self._today)
            digest.add(item, self._rules.max_items)
            filed = True
        return filed


def digest_notice(digest: Digest, now: datetime, tz: tzinfo) -> AlertNotice:
    """The digest as an alert: one reason per listed tag, more urgent ones weighted higher."""
    items = sorted(digest.items, key=lambda i: (i.expires_at, i.assignment_id))
    reasons = [expiry_reason(i.customer_id, i.customer_name, i.tag, i.expires_at, now, tz) for i in items]
    more = digest.count - len(items)
    first = items[0]
    names = {i.customer_id for i in items}
    subject = first.customer_name if len(names) == 1 and more == 0 else f"{first.customer_name} 等"
    day = digest.day.isoformat()
    return AlertNotice(
        rule=EXPIRY_RULE,
        title=f"{digest.count} 个标签即将到期",
        customer_id=first.customer_id,
        customer_name=subject,
        reasons=tuple(reasons),
        raised_at=now,
        alert_key=f"{EXPIRY_RULE}:{digest.recipient}:{day}",
        snooze_key=EXPIRY_RULE,
        assignment_ids=tuple(sorted(digest.assignment_ids)),
        unlisted=max(0, more),
    )


def expiry_reason(
    customer_id: int, customer_name: str, tag: str, expires_at: datetime, now: datetime, tz: tzinfo, ended: str = ""
) -> Reason:
    """One digest row: '客户 · 标签 3天后到期（date）', weighted higher the sooner; `ended` ('已过期', '已移除')
    for a tag no longer held."""
    left = max(0, (expires_at.astimezone(tz).date() - now.astimezone(tz).date()).days)
    weight = round(max(0.1, 1 - left / 10), 2)
    when = "今天" if left == 0 else f"{left}天后"
    status = ended or f"{when}到期（{_day(expires_at, tz)}）"
    return Reason("tag_expiry", 0.1 if ended else weight, f"{customer_name} · {tag} {status}", customer_id)


def _day(at: datetime, tz: tzinfo) -> str:
    return at.astimezone(tz).date().isoformat()
