"""`kebiao alerts run-once|unknown`: expiry and churn alerts from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, current_or_initial, parse_now, positive_int, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao alerts ACTION` group."""
    group = verbs.add_parser("alerts", help="expiry and churn alerts", description="Expiry and churn alerts.")
    sub = group.add_subparsers(dest="alerts_action", metavar="ACTION", required=True)
    once = sub.add_parser(
        "run-once",
        help="run the alert jobs once (expire tags, expiry digests, churn scoring, daily rules, deliver the outbox)",
        description="Run every alert job once, as the scheduler would, at --now (default: now). Safe to run "
        "beside running servers: alerts are de-duplicated in the outbox. Teams alerts are delivered by the "
        "server; WeCom alerts are delivered here when WECOM_CORP_ID, WECOM_SECRET and WECOM_AGENT_ID are set.",
    )
    once.add_argument(
        "--now",
        type=parse_now,
        metavar="ISO",
        help="the time to run at, e.g. 2025-03-01T09:00:00+08:00 (no offset: KEBIAO_TIMEZONE)",
    )
    once.set_defaults(handler=cmd_run_once)
    unknown = sub.add_parser(
        "unknown",
        help="list alerts whose delivery outcome is unknown; resend one or mark it sent",
        description="List outbox rows left `unknown` (a sender stopped mid-send, outside the platform's "
        "duplicate check). After checking with the recipient: --resend ID sends it again at the next drain, "
        "--mark-sent ID records it as delivered.",
    )
    choice = unknown.add_mutually_exclusive_group()
    choice.add_argument("--resend", type=positive_int, metavar="ID", help="send this unknown alert again")
    choice.add_argument("--mark-sent", type=positive_int, metavar="ID", help="record this unknown alert as sent")
    unknown.set_defaults(handler=cmd_unknown)


def cmd_run_once(args: argparse.Namespace, settings: Settings) -> int:
    """Run every alert job once (expire, expiry digests, churn, outbox) at --now (default: the clock)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    import aiohttp

    from app import alert_deliverers, rule_context, rule_jobs, webhook_deliverers
    from core.alerts.jobs import run_once
    from scheduler import configure_jobs
    from storage.channels import SqlChannelStore
    from storage.outbox import SqlAlertStore

    now: datetime = args.now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=ZoneInfo(settings.timezone))

    async def work(database: Database) -> int:
        taxonomy = (await current_or_initial(database, settings)).taxonomy
        store = SqlAlertStore(database.engine)
        async with aiohttp.ClientSession() as session:
            # Teams needs the running bot's adapter; from the CLI, Teams rows wait for the server's drain.
            deliverers = alert_deliverers(settings, database, session, None)
            deliverers.update(webhook_deliverers(settings, session, lambda: taxonomy))
            rules = rule_jobs(rule_context(settings, database, lambda: taxonomy))
            jobs = configure_jobs(
                settings, store, lambda: taxonomy, deliverers, SqlChannelStore(database.engine), *rules
            )
            report = await run_once(jobs, now)
        async with store.unit_of_work() as uow:
            counts = await uow.outbox.counts()
        local = now.astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="seconds")
        print(f"alerts at {local}: {report}")
        print("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"))
        for channel, waiting in sorted(report.outbox.elsewhere.items()):
            print(
                f"{waiting} {channel} alerts left pending: this command cannot deliver {channel}; "
                "a running `kebiao serve` (scheduler on) delivers them"
            )
        if counts.get("unknown"):
            print(
                f"{counts['unknown']} alerts have an unknown outcome (a sender stopped mid-send); "
                "check the recipients and the logs",
                file=sys.stderr,
            )
        return 0

    return run_db(settings, work)


def cmd_unknown(args: argparse.Namespace, settings: Settings) -> int:
    """List `unknown` outbox rows, or resend / settle one of them."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from core.alerts.outbox import resend_unknown, settle_unknown
    from core.errors import NotFoundError
    from storage.outbox import SqlAlertStore

    async def work(database: Database) -> int:
        store = SqlAlertStore(database.engine)
        now, by = datetime.now(UTC), "kebiao alerts unknown (CLI)"
        target = args.resend or args.mark_sent
        if target is not None:
            act = resend_unknown if args.resend else settle_unknown
            try:
                message = await act(store, target, now, by)
            except (NotFoundError, ValueError) as exc:
                print(f"kebiao: {exc}", file=sys.stderr)
                return 1
            done = "queued for resending" if args.resend else "marked sent"
            print(f"alert {message.id} to {message.recipient} ({message.channel}) {done}")
            return 0
        async with store.unit_of_work() as uow:
            rows = await uow.outbox.unknown(1000)
        zone = ZoneInfo(settings.timezone)  # times people read are in KEBIAO_TIMEZONE
        for m in rows:
            title = m.payload.get("title", "")
            since = m.unsure_since.astimezone(zone).isoformat(timespec="seconds")
            print(f"{m.id}\t{m.channel}\t{m.recipient}\t{since}\t{title}\t{m.last_error or ''}")
        print(f"{len(rows)} alerts with an unknown outcome", file=sys.stderr)
        return 0

    return run_db(settings, work)
