"""The services the alert jobs call, each with an explicit `now`: expire, warn, score churn, drain the outbox.

Every job is safe to run on several replicas at once: expiry ends only rows still active, alerts are
enqueued under a unique de-duplication key, and the outbox hands each row to one sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from core.alert_ports import AlertStore, AlertUnitOfWork, BulkTag, Deliverer, NewOutboxMessage
from core.alerts import (
    CHURN_RULE,
    CHURN_TAG,
    EXPIRY_RULE,
    AlertNotice,
    ChurnAssessment,
    ChurnRules,
    DigestBuilder,
    ExpiryRules,
    churn_cleared_evidence,
    churn_evidence,
    churn_notice,
    churn_period,
    dedupe_key,
    digest_notice,
    is_at_risk,
    recipients_for,
    release_time,
    score_customer,
)
from core.assignments import TaggingRules, apply_definition, clean_evidence
from core.errors import NotFoundError
from core.outbox import DrainReport, OutboxPolicy, drain
from core.records import NewEvent
from core.types import EventKind, Source
from tagging.policy import AmbiguousTagError, PolicyRefusal, UnknownTagError, expiry_for, find_tag
from tagging.taxonomy import Dimension, TagDef, Taxonomy

log = logging.getLogger(__name__)

TEAMS = "msteams"
WECOM = "wecom"
ACTOR = "kebiao"
WRITE_CHUNK = 200


@dataclass(frozen=True)
class AlertJobs:
    """Everything the jobs need, built once by the composition root."""

    store: AlertStore
    taxonomy: Callable[[], Taxonomy]
    deliverers: Mapping[str, Deliverer]
    tagging: TaggingRules = field(default_factory=TaggingRules)
    churn: ChurnRules = field(default_factory=ChurnRules)
    expiry: ExpiryRules = field(default_factory=ExpiryRules)
    outbox: OutboxPolicy = field(default_factory=OutboxPolicy)
    tz: tzinfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    scan_batch: int = 2000


@dataclass
class ChurnReport:
    scored: int = 0
    at_risk: int = 0
    tagged: int = 0
    untagged: int = 0
    enqueued: int = 0


@dataclass
class RunReport:
    expired: int
    warnings: int
    churn: ChurnReport
    outbox: DrainReport

    def __str__(self) -> str:
        c = self.churn
        return (
            f"expired {self.expired} tag assignments; {self.warnings} expiry digests queued; churn: "
            f"{c.scored} customers scored, {c.at_risk} at risk, {c.tagged} newly tagged {CHURN_TAG}, "
            f"{c.untagged} untagged (score back under the threshold), "
            f"{c.enqueued} alerts queued; outbox: {self.outbox}"
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


async def warn_expiring(jobs: AlertJobs, now: datetime) -> int:
    """Queue one digest per recipient per day for tags entering their warning window; returns how many."""
    async with jobs.store.unit_of_work() as uow:
        managers = await uow.scans.managers()
        builder = DigestBuilder(managers, jobs.expiry, now, jobs.tz)
        horizon = now + timedelta(days=jobs.expiry.horizon_days + 1)
        async for item in uow.scans.expiring(now, horizon):
            builder.add(item)
    notices = [(d.recipient, d.day.isoformat(), digest_notice(d, now, jobs.tz)) for d in builder.digests.values()]
    return await _queue(jobs, EXPIRY_RULE, [(recipient, "*", period, n) for recipient, period, n in notices], now)


async def score_churn(jobs: AlertJobs, now: datetime) -> ChurnReport:
    """Score every customer; over the threshold: tag 高危流失 (rule, reasons as evidence) and alert; back
    under it: remove the 高危流失 the rule put there (evidence: the new score)."""
    report = ChurnReport()
    rules = jobs.churn
    since = now - timedelta(days=rules.recent_days)
    period = churn_period(now, jobs.tz, rules.repeat_days)
    target = _churn_tag(jobs)
    async with jobs.store.unit_of_work() as uow:
        managers = await uow.scans.managers()
    last_id = 0
    while True:
        # One short transaction per keyset page: read, score, tag and queue that page only, so memory stays
        # flat whatever the customer count and SQLite's write lock is never held across the whole scan.
        async with jobs.store.unit_of_work() as uow:
            page = await uow.scans.customer_facts(
                last_id, since, rules.watched_tags, rules.negative_dimension, jobs.scan_batch
            )
            if not page:
                return report
            last_id = page[-1].customer_id
            scored = [score_customer(facts, rules, now, jobs.tz) for facts in page]
            at_risk = [a for a in scored if is_at_risk(a, rules)]
            report.scored += len(page)
            report.at_risk += len(at_risk)
            if target is not None:
                fresh = [a for a in at_risk if not a.already_tagged]
                report.tagged += await _tag_at_risk(uow, jobs, target, fresh, now)
                cleared = [a for a in scored if a.already_tagged and not is_at_risk(a, rules)]
                report.untagged += await _untag_cleared(uow, jobs, target, cleared, now)
            queued = [
                (recipient, str(a.customer_id), period, churn_notice(a, now))
                for a in at_risk
                for recipient in recipients_for(a.owner, a.region, managers)
            ]
            report.enqueued += await _queue_in(uow, jobs, CHURN_RULE, queued, now)


async def drain_outbox(jobs: AlertJobs, now: datetime) -> DrainReport:
    """Deliver what is due in the outbox."""
    return await drain(jobs.store, jobs.deliverers, jobs.outbox, now)


async def run_once(jobs: AlertJobs, now: datetime) -> RunReport:
    """Every job once, in order (the CLI's `kebiao alerts run-once`)."""
    expired = await expire_lapsed(jobs, now)
    warnings = await warn_expiring(jobs, now)
    churn = await score_churn(jobs, now)
    outbox = await drain_outbox(jobs, now)
    return RunReport(expired, warnings, churn, outbox)


def pick_channel(channels: set[str], available: Sequence[str]) -> str:
    """Teams when the recipient has a stored Teams conversation, else WeCom (app messages need only the userid)."""
    if TEAMS in channels and TEAMS in available:
        return TEAMS
    if WECOM in available:
        return WECOM
    return TEAMS if TEAMS in available else (available[0] if available else TEAMS)


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
                clean_evidence(churn_evidence(a)),
            )
            for a in assessments
            if a.customer_id in added
        ]
    )
    return len(added)


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
    removed = set(await uow.scans.untag_many(ids, dimension.key, tag.name, Source.RULE.value, now))
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
    if not notices:
        return 0
    available = sorted(jobs.deliverers) or [TEAMS]
    not_before = release_time(now, jobs.outbox.quiet, jobs.tz)
    recipients = sorted({r for r, _, _, _ in notices})
    channels = await uow.scans.reference_channels(recipients)
    keys = {k for _, _, _, n in notices for k in (n.alert_key, n.snooze_key)}
    suppressed = await uow.acknowledgements.suppressed_many(recipients, sorted(keys), now)
    messages = [
        NewOutboxMessage(
            dedupe_key=dedupe_key(rule, customer, recipient, period),
            recipient=recipient,
            channel=pick_channel(channels.get(recipient, set()), available),
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
