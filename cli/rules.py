"""`kebiao rules run-once|test`: run the daily rules now, or dry-run a draft taxonomy's rules on stored data."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cli.common import Verbs, current_or_initial, parse_now, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def since_days(value: str) -> int:
    """--since: '30d' or '30' days."""
    import re

    match = re.fullmatch(r"\s*(\d{1,4})\s*d?\s*", value)
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days such as 30d")
    return int(match.group(1))


def register(verbs: Verbs) -> None:
    """The `kebiao rules ACTION` group."""
    group = verbs.add_parser("rules", help="automation rules", description="Automation rules (docs/rules.md).")
    sub = group.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    once = sub.add_parser(
        "run-once",
        help="run the daily rules (and pending tag-change rules) once",
        description="Evaluate every daily rule of the taxonomy in force over every customer at --now, apply the "
        "actions (tags with source rule, notifications and webhook calls through the outbox), then the tag-change "
        "rules. Safe beside running servers: notifications are de-duplicated. The outbox is delivered by the "
        "server's drain or `kebiao alerts run-once`.",
    )
    once.add_argument("--now", type=parse_now, metavar="ISO", help="the time to run at (no offset: KEBIAO_TIMEZONE)")
    once.set_defaults(handler=cmd_run_once)
    test = sub.add_parser(
        "test",
        help="dry-run a draft taxonomy's rules against stored customers, events and messages",
        description="Load FILE (a taxonomy with rules), evaluate its rules against the stored customers, events "
        "(--since) and messages (--since) without writing anything, and print per rule how many customers would "
        "gain or lose which tag, which notifications and webhook calls would go out, with examples. --json prints "
        "the same as JSON.",
    )
    test.add_argument("file", metavar="FILE", help="taxonomy file (.yaml, .yml or .json) with a rules: section")
    test.add_argument("--since", type=since_days, default=30, metavar="30d", help="look back this many days")
    test.add_argument("--now", type=parse_now, metavar="ISO", help="evaluate as of this time")
    test.add_argument("--json", action="store_true", help="print JSON")
    test.set_defaults(handler=cmd_test)


def _now(args: argparse.Namespace, settings: Settings) -> object:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    now: datetime = args.now or datetime.now(UTC)
    return now.replace(tzinfo=ZoneInfo(settings.timezone)) if now.tzinfo is None else now


def _local(moment: Any, settings: Settings) -> str:
    """`moment` as a person reads it: KEBIAO_TIMEZONE, to the second, with the offset."""
    from zoneinfo import ZoneInfo

    return str(moment.astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="seconds"))


def cmd_run_once(args: argparse.Namespace, settings: Settings) -> int:
    """Run the daily rules once at --now."""
    from datetime import datetime

    from app import rule_context
    from core.rules.service import run_daily

    now = _now(args, settings)
    assert isinstance(now, datetime)

    async def work(database: Database) -> int:
        current = await current_or_initial(database, settings)
        report = await run_daily(rule_context(settings, database, lambda: current.taxonomy), now)
        print(f"rules at {_local(now, settings)} (taxonomy version {current.version}): {report}")
        return 0

    return run_db(settings, work)


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    """Dry-run FILE's rules; writes nothing."""
    import json
    from datetime import datetime

    from app import rule_context
    from core.rules.dryrun import forecast
    from tagging.loader import TaxonomyError, load_taxonomy_file

    try:
        draft = load_taxonomy_file(args.file)
    except TaxonomyError as exc:
        print(exc, file=sys.stderr)
        return 1
    now = _now(args, settings)
    assert isinstance(now, datetime)

    async def work(database: Database) -> int:
        result = await forecast(rule_context(settings, database, lambda: draft), draft, now, args.since)
        if args.json:
            print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
            return 0
        print(
            f"dry run at {_local(now, settings)} over {result.customers} customers, {result.messages} messages "
            f"since {_local(result.since, settings)[:10]}; nothing was written"
        )
        for rule in result.rules:
            data = rule.to_json()
            print(f"- {rule.rule} [{rule.trigger}]: {rule.fired} customers")
            for key, label in (
                ("gain", "gain"),
                ("lose", "lose"),
                ("suggest", "suggested"),
                ("webhooks", "webhook calls"),
                ("webhooks_not_configured", "webhook not configured"),
            ):
                for name, n in sorted(data[key].items()):
                    print(f"    {label} {name}: {n}")
            if rule.notifications:
                who = ", ".join(f"{r} ×{n}" for r, n in sorted(rule.recipients.items()))
                print(f"    notifications: {rule.notifications} ({who})")
            for example in rule.examples:
                changes = " ".join(example["changes"]) or "no change"
                print(
                    f"    e.g. {example['customer']} (#{example['customer_id']}): {changes} — "
                    + "；".join(example["facts"])
                )
        return 0

    return run_db(settings, work)
