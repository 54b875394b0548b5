"""`kebiao reports tags [--json]`: the tag-health report; `kebiao reports recount [--check]`: its kept counts."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao reports ACTION` group."""
    group = verbs.add_parser("reports", help="tag-health reports", description="Tag-health reports.")
    sub = group.add_subparsers(dest="reports_action", metavar="ACTION", required=True)
    tags = sub.add_parser(
        "tags",
        help="tag usage, retire and merge candidates, customers near the tag cap",
        description="Per tag: active holders, added in the last 30 days, suggestions accepted/rejected/pending "
        "and the accept rate, last use. Retire candidates: no holders and unused for 90 days or never used "
        "(tags with sub-tags, such as 地区, never are). Merge candidates: same-dimension tags whose holders "
        "overlap >= 80% (Jaccard, >= 5 holders each) or whose names are near-duplicates (one character apart, "
        "but not one Chinese character swapped for another as in 大型企业/中型企业, nor an added negator such "
        "as 无). Customers at the soft tag cap. Dates are in KEBIAO_TIMEZONE. See docs/reports.md.",
    )
    output = tags.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument(
        "--csv",
        action="store_true",
        help="print the per-tag table as CSV for spreadsheets (names that would run as formulas get a leading ')",
    )
    tags.set_defaults(handler=cmd_tags)
    recount = sub.add_parser(
        "recount",
        help="rebuild the tag counts the report reads from the assignments (or --check them)",
        description="The tag report reads holders per tag, shared holders per tag pair and active tags per "
        "customer from counts that database triggers keep on every assignment change. This rebuilds them from "
        "the assignments (writers wait meanwhile on PostgreSQL); --check only compares and lists differences "
        "(exit status 1 when there are any). See docs/reports.md.",
    )
    recount.add_argument("--check", action="store_true", help="compare with a full recount; change nothing")
    recount.set_defaults(handler=cmd_recount)


def cmd_tags(args: argparse.Namespace, settings: Settings) -> int:
    """Print the tag-health report (usage, retire/merge candidates, customers near the cap)."""
    import json
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from core.reports.tag_health import render_report_csv, render_report_text, report_to_data, tag_health_report
    from storage.reports import SqlReportSource

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        if current is None:
            print("kebiao reports tags: no taxonomy stored yet; start the server once or import one", file=sys.stderr)
            return 1
        report = await tag_health_report(
            SqlReportSource(database.engine), current.taxonomy, datetime.now(UTC), settings.tag_hard_cap
        )
        if args.json:
            print(json.dumps(report_to_data(report), ensure_ascii=False, indent=2))
        elif args.csv:
            sys.stdout.write(render_report_csv(report))
        else:
            sys.stdout.write(render_report_text(report, ZoneInfo(settings.timezone)))
        return 0

    return run_db(settings, work)


def cmd_recount(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the kept tag counts from the assignments, or (--check) list where they disagree."""
    from storage.tag_counts import differences, recount

    async def work(database: Database) -> int:
        if args.check:
            found = await differences(database.engine)
            for line in found[:50]:
                print(line)
            more = f" ({len(found) - 50} more not shown)" if len(found) > 50 else ""
            print(f"{len(found)} differences{more}" if found else "tag counts agree with a full recount")
            return 1 if found else 0
        async with database.engine.begin() as conn:
            await recount(conn)
        print("tag counts rebuilt from the assignments")
        return 0

    return run_db(settings, work)
