"""The services the alert jobs call, each with an explicit `now`: expire, warn, score churn, drain the outbox.

Every job is safe to run on several replicas at once: expiry ends only rows still active, alerts are
enqueued under a unique de-duplication key, and the outbox hands each row to one sender.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from core.alerts.outbox import DrainReport, OutboxPolicy, drain
from core.alerts.ports import AlertStore, AlertUnitOfWork, BulkTag, Deliverer, NewOutboxMessage
from core.alerts.selection import (
    CHURN_RULE,
    CHURN_TAG,
    EXPIRY_RULE,
    AlertNotice,
    ChurnAssessment,
    ChurnRules,
    CustomerFacts,
    DigestBuilder,
    ExpiringTag,
    ExpiryRules,
    QuietHours,
    churn_cleared_evidence,
    churn_evidence,
    churn_notice,
    churn_period,
    churn_seeds,
    dedupe_key,
    digest_keys,
    digest_notice,
    in_warning,
    is_at_risk,
    recipients_for,
    release_time,
    score_customer,
)
from core.errors import NotFoundError
from core.records import NewEvent
from core.tags.assignments import TaggingRules, apply_definition, clean_evidence
from core.tags.users import display_names
from core.types import EventKind, Source, User
from tagging.pii import mask
from tagging.policy import AmbiguousTagError, PolicyRefusal, UnknownTagError, expiry_for, find_tag
from tagging.taxonomy import Dimension, TagDef, Taxonomy, Visibility

log = logging.getLogger(__name__)

TEAMS = "msteams"
WECOM = "wecom"
ACTOR = "kebiao"
WRITE_CHUNK = 200


class InboundClaims(Protocol):
    """The inbound de-duplication claims, as the maintenance job needs them."""

    async def purge_inbound(self, older_than: datetime) -> int: ...


@dataclass(frozen=True)
class AlertJobs:
    """Everything the jobs need, built once by the composition root.

    `channels` are the delivery channels of the deployment (not only those this process can deliver):
    each alert's channel is chosen from them and from what the recipient has, so a CLI run without Teams
    still queues Teams users' alerts for Teams (the server delivers them). Empty: the deliverers' channels.
    """

    store: AlertStore
    taxonomy: Callable[[], Taxonomy]
    deliverers: Mapping[str, Deliverer]
    channels: tuple[str, ...] = ()
    inbound: InboundClaims | None = None
    inbound_max_age: timedelta = timedelta(days=3)  # both platforms retry within minutes
    suggestion_max_age: timedelta = timedelta(days=14)
    tagging: TaggingRules = field(default_factory=TaggingRules)
    churn: ChurnRules = field(default_factory=ChurnRules)
    expiry: ExpiryRules = field(default_factory=ExpiryRules)
    outbox: OutboxPolicy = field(default_factory=OutboxPolicy)
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    scan_batch: int = 2000
    # The daily automation rules (set by the composition root): run by run_once after churn scoring and by
    # their own daily job, so `kebiao alerts run-once` also raises rule alerts such as a contract about to end.
    rules: Callable[[datetime], Awaitable[object]] | None = None
    rule_tags: Callable[[datetime], Awaitable[object]] | None = None  # tag-change rules over the tag-event log


@dataclass
class ChurnReport:
    scored: int = 0
    at_risk: int = 0
    tagged: int = 0
    untagged: int = 0
    enqueued: int = 0


@dataclass
class ExpireReport:
    assignments: int = 0
    suggestions: int = 0
    folded: int = 0  # tag-count changes folded into their totals (kept out of the summary line)

    def __str__(self) -> str:
        return f"expired {self.assignments} tag assignments and {self.suggestions} pending suggestions"


@dataclass
class RunReport:
    expired: ExpireReport
    warnings: int
    churn: ChurnReport
    outbox: DrainReport
    purged: int = 0
    rules: object = None

    def __str__(self) -> str:
        c = self.churn
        return (
            f"{self.expired}; {self.warnings} expiry digests queued; churn: "
            f"{c.scored} customers scored, {c.at_risk} at risk, {c.tagged} newly tagged {CHURN_TAG}, "
            f"{c.untagged} untagged (score back under the threshold), "
            f"{c.enqueued} alerts queued; {self.purged} old inbound claims purged; "
            + (f"rules: {self.rules}; " if self.rules is not None else "")
            + f"outbox: {self.outbox}"
        )


async def expire_lapsed(jobs: AlertJobs, now: datetime, batch: int = 1000) -> int:
    """Move every assignment past its expiry to `expired`, one `expired` event each; returns how many."""
    total = 0
    while True:
        async with jobs.store.unit_of_work() as uow:
            ids = await uow.scans.lapsed_ids(now, batch)
            if not ids:
                return total
            ended = await uow.scans.expire(ids, now)
            await uow.scans.append_events(
                [
                    NewEvent(
                        a.customer_id,
                        a.dimension,
                        a.tag,
                        EventKind.EXPIRED,
                        ACTOR,
                        Source.RULE,
                        now,
                        {"expires_at": a.expires_at.isoformat() if a.expires_at else None},
                    )
                    for a in ended
                ]
            )
        total += len(ended)


async def expire_suggestions(jobs: AlertJobs, now: datetime) -> int:
    """Pending suggestions older than `suggestion_max_age` become `expired` (one UPDATE); returns how many."""
    async with jobs.store.unit_of_work() as uow:
        count = await uow.suggestions.expire_pending(now - jobs.suggestion_max_age, ACTOR, now)
    if count:
        log.info("expired %d pending suggestions older than %s", count, jobs.suggestion_max_age)
    return count


async def expire_all(jobs: AlertJobs, now: datetime) -> ExpireReport:
    """The expire job: lapsed tag assignments, stale pending suggestions, then the tag counts' change log."""
    report = ExpireReport(await expire_lapsed(jobs, now), await expire_suggestions(jobs, now))
    async with jobs.store.unit_of_work() as uow:
        report.folded = await uow.scans.fold_tag_counts()
    return report


async def purge_inbound_claims(jobs: AlertJobs, now: datetime) -> int:
    """Daily maintenance: drop inbound de-duplication claims older than any platform retry; returns how many."""
    if jobs.inbound is None:
        return 0
    return await jobs.inbound.purge_inbound(now - jobs.inbound_max_age)


async def warn_expiring(jobs: AlertJobs, now: datetime) -> int:
    """Queue today's digest per recipient: the tags in their warning window that no earlier digest to that
    recipient covered (each tag is warned once, never dropped); returns how many digests were queued."""
    in_window: list[ExpiringTag] = []
    async with jobs.store.unit_of_work() as uow:
        managers = await uow.scans.managers()
        horizon = now + timedelta(days=jobs.expiry.horizon_days + 1)
        async for item in uow.scans.expiring(now, horizon):
            if in_warning(item, jobs.expiry, now, jobs.tz):
                in_window.append(item)
        recipients = sorted({r for item in in_window for r in recipients_for(item.owner, item.region, managers)})
        already = await _already_warned(uow, jobs, recipients, now)
    managers_only = {d.key for d in jobs.taxonomy().dimensions if d.visibility is Visibility.MANAGERS}
    builder = DigestBuilder(managers, jobs.expiry, now, jobs.tz, already, managers_only)
    for item in in_window:
        builder.add(item)
    notices = [(d.recipient, d.day.isoformat(), digest_notice(d, now, jobs.tz)) for d in builder.digests.values()]
    return await _queue(jobs, EXPIRY_RULE, [(recipient, "*", period, n) for recipient, period, n in notices], now)


async def _already_warned(
    uow: AlertUnitOfWork, jobs: AlertJobs, recipients: Sequence[str], now: datetime
) -> dict[str, set[int]]:
    """Assignment ids each recipient's recent digests covered (only digests that can matter: bounded)."""
    keys = [key for r in recipients for key in digest_keys(r, now, jobs.tz, jobs.expiry)]
    out: dict[str, set[int]] = defaultdict(set)
    for message in await uow.outbox.by_keys(keys):
        out[message.recipient].update(int(i) for i in message.payload.get("assignment_ids", ()))
    return dict(out)


async def score_churn(jobs: AlertJobs, now: datetime) -> ChurnReport:
    """Score the customers who can be at risk; over the threshold: tag 高危流失 (rule, reasons as evidence) and
    alert; back under it: remove the 高危流失 the rule put there (evidence: the new score).

    Candidates come from indexed queries (churn_seeds: a contract ending, a recent risk tag or negative
    suggestion, an agent removed, 高危流失 held), not from a walk over every customer; only when silence alone
    reaches the threshold is every customer a candidate, and then they are read by keyset pages.
    """
    report = ChurnReport()
    rules = jobs.churn
    since = now - timedelta(days=rules.recent_days)
    seeds = churn_seeds(rules, now, jobs.tz)
    async with jobs.store.unit_of_work() as uow:
        managers = await uow.scans.managers()
        candidates = None if seeds.everyone else await uow.scans.churn_candidates(seeds)
    last_id, start = 0, 0
    while True:
        # One short transaction per page: read, score, tag and queue that page only, so memory stays flat
        # (the candidates' ids aside) and SQLite's write lock is never held across the whole scan.
        async with jobs.store.unit_of_work() as uow:
            if candidates is None:
                page = await uow.scans.customer_facts(
                    last_id, since, rules.watched_tags, rules.negative_dimension, jobs.scan_batch
                )
            else:
                ids = candidates[start : start + jobs.scan_batch]
                start += len(ids)
                page = (
                    await uow.scans.facts_for(ids, since, rules.watched_tags, rules.negative_dimension) if ids else []
                )
                if ids and not page:
                    continue  # every customer of this slice was deleted meanwhile
            if not page:
                return report
            last_id = page[-1].customer_id
            await _score_page(uow, jobs, page, managers, report, now)


async def _score_page(
    uow: AlertUnitOfWork,
    jobs: AlertJobs,
    page: Sequence[CustomerFacts],
    managers: Sequence[User],
    report: ChurnReport,
    now: datetime,
) -> None:
    """Score one page; tag, untag and queue alerts for it within `uow`."""
    rules = jobs.churn
    period = churn_period(now, jobs.tz, rules.repeat_days)
    target = _churn_tag(jobs)
    scored = [score_customer(facts, rules, now, jobs.tz) for facts in page]
    at_risk = [a for a in scored if is_at_risk(a, rules)]
    report.scored += len(page)
    report.at_risk += len(at_risk)
    if target is not None:
        fresh = [a for a in at_risk if not a.already_tagged]
        report.tagged += await _tag_at_risk(uow, jobs, target, fresh, now)
        cleared = [a for a in scored if a.already_tagged and not is_at_risk(a, rules)]
        report.untagged += await _untag_cleared(uow, jobs, target, cleared, now)
    names = await display_names(uow, (a.owner for a in at_risk))  # a card names whose customer it is
    queued = [
        (recipient, str(a.customer_id), period, churn_notice(a, now, names.get(a.owner, "")))
        for a in at_risk
        for recipient in recipients_for(a.owner, a.region, managers)
    ]
    report.enqueued += await _queue_in(uow, jobs, CHURN_RULE, queued, now)


async def drain_outbox(jobs: AlertJobs, now: datetime) -> DrainReport:
    """Deliver what is due in the outbox."""
    return await drain(jobs.store, jobs.deliverers, jobs.outbox, now)


async def run_once(jobs: AlertJobs, now: datetime) -> RunReport:
    """Every job once, in order (the CLI's `kebiao alerts run-once`)."""
    expired = await expire_all(jobs, now)
    warnings = await warn_expiring(jobs, now)
    churn = await score_churn(jobs, now)
    rules = await run_rules(jobs, now)
    purged = await purge_inbound_claims(jobs, now)
    outbox = await drain_outbox(jobs, now)
    return RunReport(expired, warnings, churn, outbox, purged, rules)


async def run_rules(jobs: AlertJobs, now: datetime) -> object:
    """The daily automation rules, when configured (their report), else None."""
    return None if jobs.rules is None else await jobs.rules(now)


async def run_rule_tags(jobs: AlertJobs, now: datetime) -> object:
    """The tag-change rules over tag events since the last pass, when configured."""
    return None if jobs.rule_tags is None else await jobs.rule_tags(now)


def pick_channel(references: set[str], configured: Sequence[str]) -> str:
    """Teams when the recipient has a stored Teams conversation, else WeCom (app messages need only the
    userid), among the deployment's configured channels, whatever this process can deliver itself."""
    if TEAMS in references and TEAMS in configured:
        return TEAMS
    if WECOM in configured:
        return WECOM
    return TEAMS if TEAMS in configured or not configured else configured[0]


def _churn_tag(jobs: AlertJobs) -> tuple[Dimension, TagDef] | None:
    """高危流失 in the current taxonomy; None (alerts only, logged) when the taxonomy lacks it."""
    try:
        return find_tag(jobs.taxonomy(), CHURN_TAG, None, True)
    except (UnknownTagError, AmbiguousTagError) as exc:
        log.warning("churn: cannot apply %s (%s); alerts are still sent", CHURN_TAG, exc)
        return None


async def _tag_at_risk(
    uow: AlertUnitOfWork,
    jobs: AlertJobs,
    target: tuple[Dimension, TagDef],
    assessments: Sequence[ChurnAssessment],
    now: datetime,
) -> int:
    """Apply 高危流失 (source rule, reasons as evidence) as apply_definition would, in two statements.

    One INSERT … SELECT adds the assignments (skipping customers at the hard cap or already holding it) and
    one multi-row INSERT appends their `added` events. An exclusive dimension needs the sibling
    replacement apply_definition does, so there each customer goes through apply_definition itself.
    """
    if not assessments:
        return 0
    dimension, tag = target
    if dimension.exclusive:
        return await _tag_one_by_one(uow, jobs, target, assessments, now)
    bulk = BulkTag(dimension.key, tag.name, Source.RULE, ACTOR, now, expiry_for(tag, now, jobs.tagging.tz))
    added = set(await uow.scans.tag_many([a.customer_id for a in assessments], bulk, jobs.tagging.hard_cap))
    if len(added) < len(assessments):
        log.warning(
            "churn: %d customers not tagged %s: at the hard cap of %d active tags, or tagged meanwhile",
            len(assessments) - len(added),
            CHURN_TAG,
            jobs.tagging.hard_cap,
        )
    await uow.scans.append_events(
        [
            NewEvent(
                a.customer_id,
                dimension.key,
                tag.name,
                EventKind.ADDED,
                ACTOR,
                Source.RULE,
                now,
                churn_tag_evidence(a),
            )
            for a in assessments
            if a.customer_id in added
        ]
    )
    return len(added)


def churn_tag_evidence(assessment: ChurnAssessment) -> dict[str, Any]:
    """`clean_evidence(churn_evidence(assessment))`, masking each reason's sentence once per distinct text.

    The note joins the reasons' sentences with '；', which no personal number can span (a number is one run
    of digits, spaces and dashes), so masking each sentence masks the note: a first run at 1M customers
    masks ~1,000 distinct sentences instead of 60,000 notes.
    """
    evidence = churn_evidence(assessment)
    note = "；".join(_masked_sentence(r.text) for r in assessment.reasons)
    return clean_evidence({**evidence, "note": ""}) | {"note": note}


@lru_cache(maxsize=4096)
def _masked_sentence(text: str) -> str:
    return mask(text)


async def _tag_one_by_one(
    uow: AlertUnitOfWork,
    jobs: AlertJobs,
    target: tuple[Dimension, TagDef],
    assessments: Sequence[ChurnAssessment],
    now: datetime,
) -> int:
    dimension, tag = target
    tagged = 0
    for assessment in assessments:
        try:
            change = await apply_definition(
                uow,
                dimension,
                tag,
                jobs.tagging,
                assessment.customer_id,
                actor=ACTOR,
                source=Source.RULE,
                now=now,
                evidence=churn_evidence(assessment),
            )
        except (PolicyRefusal, NotFoundError) as exc:
            log.warning("churn: customer %d not tagged: %s", assessment.customer_id, exc)
            continue
        tagged += change.outcome == "added"
    return tagged


async def _untag_cleared(
    uow: AlertUnitOfWork,
    jobs: AlertJobs,
    target: tuple[Dimension, TagDef],
    assessments: Sequence[ChurnAssessment],
    now: datetime,
) -> int:
    """Remove 高危流失 where the rule applied it and the score is back under the threshold; one event each.

    A 高危流失 a person applied stays: that was their judgement, not the rule's.
    """
    if not assessments:
        return 0
    dimension, tag = target
    ids = [a.customer_id for a in assessments]
    # Only the churn score's own 高危流失 (actor kebiao): an automation rule's stays until that rule removes it.
    removed = set(await uow.scans.untag_many(ids, dimension.key, tag.name, Source.RULE.value, now, actor=ACTOR))
    await uow.scans.append_events(
        [
            NewEvent(
                a.customer_id,
                dimension.key,
                tag.name,
                EventKind.REMOVED,
                ACTOR,
                Source.RULE,
                now,
                clean_evidence(churn_cleared_evidence(a, jobs.churn)),
            )
            for a in assessments
            if a.customer_id in removed
        ]
    )
    return len(removed)


async def _queue(
    jobs: AlertJobs, rule: str, notices: Sequence[tuple[str, str, str, AlertNotice]], now: datetime
) -> int:
    """Enqueue (recipient, customer, period, notice) unless acknowledged or snoozed; returns how many were new."""
    added = 0
    for start in range(0, len(notices), WRITE_CHUNK):
        async with jobs.store.unit_of_work() as uow:
            added += await _queue_in(uow, jobs, rule, notices[start : start + WRITE_CHUNK], now)
    return added


async def _queue_in(
    uow: AlertUnitOfWork,
    jobs: AlertJobs,
    rule: str,
    notices: Sequence[tuple[str, str, str, AlertNotice]],
    now: datetime,
) -> int:
    """Within `uow`: one query for channels, one for acknowledgements, one INSERT for the new rows."""
    configured = tuple(sorted(jobs.channels or jobs.deliverers))
    return await enqueue_notices(uow, configured, jobs.outbox.quiet, jobs.tz, rule, notices, now)


async def enqueue_notices(
    uow: AlertUnitOfWork,
    configured: Sequence[str],
    quiet: QuietHours | None,
    tz: tzinfo,
    rule: str,
    notices: Sequence[tuple[str, str, str, AlertNotice]],
    now: datetime,
) -> int:
    """Queue (recipient, customer, period, notice) rows unless acknowledged or snoozed: one query for channels,
    one for acknowledgements, one INSERT; quiet hours hold them. Returns how many rows were new."""
    if not notices:
        return 0
    not_before = release_time(now, quiet, tz)
    recipients = sorted({r for r, _, _, _ in notices})
    channels = await uow.scans.reference_channels(recipients)
    keys = {k for _, _, _, n in notices for k in (n.alert_key, n.snooze_key)}
    suppressed = await uow.acknowledgements.suppressed_many(recipients, sorted(keys), now)
    messages = [
        NewOutboxMessage(
            dedupe_key=dedupe_key(rule, customer, recipient, period),
            recipient=recipient,
            channel=pick_channel(channels.get(recipient, set()), list(configured)),
            payload=notice.to_payload(),
            not_before=None if not_before == now else not_before,
        )
        for recipient, customer, period, notice in notices
        if (recipient, notice.alert_key) not in suppressed and (recipient, notice.snooze_key) not in suppressed
    ]
    added = await uow.outbox.enqueue_many(messages, now)
    if added:
        log.info("%s: %d alerts queued", rule, added)
    return added
