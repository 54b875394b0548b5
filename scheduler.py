"""APScheduler wiring: the alert jobs on an AsyncIOScheduler started and stopped with the app.

Each process keeps its jobs in a MemoryJobStore under fixed ids (`replace_existing`), so a restart never
doubles a job; several replicas each run the jobs, and the outbox's unique keys and row claims make sure
every alert still goes out once. Jobs call core services with an explicit `now`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from config import AlertSettings, LearningSettings, Settings
from core.alerts.jobs import (
    TEAMS,
    WECOM,
    AlertJobs,
    InboundClaims,
    drain_outbox,
    expire_all,
    purge_inbound_claims,
    run_once,
    run_rule_tags,
    run_rules,
    score_churn,
    warn_expiring,
)
from core.alerts.outbox import OutboxPolicy
from core.alerts.ports import AlertStore, Deliverer
from core.alerts.selection import ChurnRules, ChurnWeights, ExpiryRules, QuietHours, parse_clock
from core.learning.ports import LearningStore
from core.learning.retention import purge_expired
from core.learning.trainer import train_if_due
from core.tags.assignments import TaggingRules
from learning.training import TrainingConfig
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

JOB_EXPIRE = "kebiao.alerts.expire"
JOB_EXPIRY_WARNINGS = "kebiao.alerts.expiry_warnings"
JOB_CHURN = "kebiao.alerts.churn"
JOB_OUTBOX = "kebiao.alerts.outbox"
JOB_STARTUP = "kebiao.alerts.startup"
JOB_MAINTENANCE = "kebiao.maintenance.inbound"
JOB_RULES = "kebiao.rules.daily"
JOB_RULE_TAGS = "kebiao.rules.tags"
FREQUENT_JOBS = frozenset({JOB_EXPIRE, JOB_OUTBOX, JOB_RULE_TAGS})
JOB_LEARN_TRAIN = "kebiao.learning.train"
JOB_LEARN_PURGE = "kebiao.learning.purge"
MAINTENANCE_AT = "04:00"  # local: a quiet hour for the daily purge of old inbound claims

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def delivery_channels(settings: Settings) -> tuple[str, ...]:
    """The channels the deployment delivers on: Teams (the server always runs the bot endpoint) and WeCom
    when its app credentials are set; the same whichever process (server or CLI) queues the alert."""
    wecom = settings.wecom
    return (TEAMS, WECOM) if wecom.corp_id and wecom.secret and wecom.agent_id else (TEAMS,)


def configure_jobs(
    settings: Settings,
    store: AlertStore,
    taxonomy: Callable[[], Taxonomy],
    deliverers: Mapping[str, Deliverer],
    inbound: InboundClaims | None = None,
    rules: Callable[[datetime], Awaitable[object]] | None = None,
    rule_tags: Callable[[datetime], Awaitable[object]] | None = None,
) -> AlertJobs:
    """The core AlertJobs from settings: rules, weights, quiet hours, channels and this process's deliverers."""
    alerts = settings.alerts
    tz = ZoneInfo(settings.timezone)
    churn = ChurnRules(
        weights=ChurnWeights.of(alerts.churn_weights),
        threshold=alerts.churn_threshold,
        contract_days=alerts.churn_contract_days,
        silence_days=alerts.churn_silence_days,
        repeat_days=alerts.churn_repeat_days,
    )
    expiry = ExpiryRules(
        default_days=alerts.expiry_warn_days,
        per_tag={name_key(tag): days for tag, days in alerts.expiry_warn_tags},
    )
    outbox = OutboxPolicy(quiet=QuietHours.parse(alerts.quiet_hours), tz=tz)
    return AlertJobs(
        store=store,
        taxonomy=taxonomy,
        deliverers=deliverers,
        channels=delivery_channels(settings),
        inbound=inbound,
        suggestion_max_age=timedelta(days=alerts.suggestion_expiry_days),
        tagging=TaggingRules.of(settings.timezone, settings.tag_hard_cap),
        churn=churn,
        expiry=expiry,
        outbox=outbox,
        tz=tz,
        rules=rules,
        rule_tags=rule_tags,
    )


def _job(
    name: str, work: Callable[[AlertJobs, datetime], Awaitable[Any]], jobs: AlertJobs, clock: Clock
) -> Callable[[], Awaitable[None]]:
    """A scheduler job: `work(jobs, now)`, its outcome logged; an error is logged and the next run tries again."""

    # The outbox and expiry passes run every few seconds or minutes: their routine lines are debug output.
    level = logging.DEBUG if name in FREQUENT_JOBS else logging.INFO

    async def run() -> None:
        now = clock()
        local = now.astimezone(jobs.tz).isoformat(timespec="seconds")  # operators read KEBIAO_TIMEZONE
        try:
            result = await work(jobs, now)
        except Exception:
            log.exception("alert job %s failed at %s", name, local)
            return
        log.log(level, "alert job %s at %s: %s", name, local, result)

    run.__name__ = name
    return run


def build_scheduler(jobs: AlertJobs, settings: AlertSettings, clock: Clock = utc_now) -> AsyncIOScheduler:
    """A scheduler with every alert job under a fixed id; not started."""
    scheduler = AsyncIOScheduler(
        jobstores={"default": MemoryJobStore()},
        timezone=jobs.tz,
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    add_jobs(scheduler, jobs, settings, clock)
    return scheduler


def add_jobs(scheduler: AsyncIOScheduler, jobs: AlertJobs, settings: AlertSettings, clock: Clock = utc_now) -> None:
    """Add (or replace, by fixed id) every alert and maintenance job: adding twice never doubles a job."""
    tz = jobs.tz
    alert_at = parse_clock(settings.alert_time)
    churn_at = parse_clock(settings.churn_time)
    maint_at = parse_clock(MAINTENANCE_AT)
    plan: list[tuple[str, Callable[[AlertJobs, datetime], Awaitable[Any]], Any, int]] = [
        # (id, work, trigger, misfire grace in seconds): a daily job may still run an hour late;
        # interval jobs just wait for their next turn.
        (JOB_EXPIRE, expire_all, IntervalTrigger(minutes=settings.expire_every_minutes, timezone=tz), 300),
        (
            JOB_EXPIRY_WARNINGS,
            warn_expiring,
            CronTrigger(hour=alert_at.hour, minute=alert_at.minute, timezone=tz),
            3600,
        ),
        (JOB_CHURN, score_churn, CronTrigger(hour=churn_at.hour, minute=churn_at.minute, timezone=tz), 3600),
        (JOB_OUTBOX, drain_outbox, IntervalTrigger(seconds=settings.outbox_every_seconds, timezone=tz), 60),
        (
            JOB_MAINTENANCE,
            purge_inbound_claims,
            CronTrigger(hour=maint_at.hour, minute=maint_at.minute, timezone=tz),
            3600,
        ),
    ]
    if jobs.rules is not None:
        rules_at = parse_clock(settings.rules_time)
        plan.append((JOB_RULES, run_rules, CronTrigger(hour=rules_at.hour, minute=rules_at.minute, timezone=tz), 3600))
    if jobs.rule_tags is not None:
        every = IntervalTrigger(seconds=settings.rule_tags_every_seconds, timezone=tz)
        plan.append((JOB_RULE_TAGS, run_rule_tags, every, 60))
    if settings.run_at_start:
        start = clock() + timedelta(seconds=1)
        plan.append((JOB_STARTUP, run_once, DateTrigger(run_date=start, timezone=tz), 300))
    for job_id, work, trigger, grace in plan:
        scheduler.add_job(
            _job(job_id, work, jobs, clock),
            trigger,
            id=job_id,
            name=job_id,
            replace_existing=True,
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )


@asynccontextmanager
async def running_scheduler(
    jobs: AlertJobs, settings: Settings, clock: Clock = utc_now
) -> AsyncIterator[AsyncIOScheduler | None]:
    """Start the scheduler for the block (None when KEBIAO_SCHEDULER=off) and shut it down after."""
    if not settings.scheduler_enabled:
        log.info("scheduler off (KEBIAO_SCHEDULER=off): this replica runs no alert jobs")
        yield None
        return
    scheduler = build_scheduler(jobs, settings.alerts, clock)
    scheduler.start()
    log.info("scheduler started: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        log.info("scheduler stopped")


def training_config(settings: LearningSettings) -> TrainingConfig:
    """The trainer's thresholds from the KEBIAO_LEARN_* settings."""
    return TrainingConfig(
        min_examples=settings.min_examples,
        min_positives=settings.min_positives,
        min_precision=settings.min_precision,
        threshold=settings.threshold,
    )


def add_learning_jobs(
    scheduler: AsyncIOScheduler,
    store: LearningStore,
    taxonomy: Callable[[], Taxonomy],
    settings: LearningSettings,
    tz: tzinfo,
    clock: Clock = utc_now,
) -> None:
    """Retrain when enough new decisions arrived (checked every few minutes) and purge old examples daily."""
    config = training_config(settings)
    maint_at = parse_clock(MAINTENANCE_AT)

    async def retrain() -> None:
        now = clock()
        try:
            report = await train_if_due(store, taxonomy(), config, settings.train_after, now)
        except Exception:
            log.exception("learning job %s failed at %s", JOB_LEARN_TRAIN, now.isoformat())
            return
        if report is not None:
            lacking = ", ".join(m.tag for m in report.lacking) or "none"
            log.info(
                "learning job: model %s from %d texts; keyword-only tags: %s", report.version, report.texts, lacking
            )

    async def purge() -> None:
        now = clock()
        try:
            examples, messages = await purge_expired(store, now, settings.retention_days)
        except Exception:
            log.exception("learning job %s failed at %s", JOB_LEARN_PURGE, now.isoformat())
            return
        log.info("learning retention: %d examples and %d message texts deleted", examples, messages)

    plan = [
        (JOB_LEARN_TRAIN, retrain, IntervalTrigger(minutes=settings.train_every_minutes, timezone=tz), 300),
        (JOB_LEARN_PURGE, purge, CronTrigger(hour=maint_at.hour, minute=maint_at.minute, timezone=tz), 3600),
    ]
    for job_id, work, trigger, grace in plan:
        scheduler.add_job(
            work,
            trigger,
            id=job_id,
            name=job_id,
            replace_existing=True,
            misfire_grace_time=grace,
            coalesce=True,
            max_instances=1,
        )


JOB_CRM_SYNC = "kebiao.crm.sync"


def add_crm_job(
    scheduler: AsyncIOScheduler, run: Callable[[datetime], Awaitable[Any]], every_minutes: int, clock: Clock = utc_now
) -> None:
    """Add (or replace) the incremental CRM sync: every `every_minutes`, first run a few seconds after start."""

    async def sync() -> None:
        now = clock()
        try:
            report = await run(now)
        except Exception:
            log.exception("crm sync job failed at %s", now.isoformat())
            return
        if getattr(report, "error", None):
            log.warning("crm sync job at %s stopped: %s", now.isoformat(), report.error)
        else:
            log.info("crm sync job at %s: %s", now.isoformat(), report)

    sync.__name__ = JOB_CRM_SYNC
    scheduler.add_job(
        sync,
        IntervalTrigger(minutes=every_minutes, start_date=clock() + timedelta(seconds=5)),
        id=JOB_CRM_SYNC,
        name=JOB_CRM_SYNC,
        replace_existing=True,
        misfire_grace_time=60,
        coalesce=True,
        max_instances=1,
    )
