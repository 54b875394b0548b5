"""`kebiao events import FILE.csv|.jsonl`: customer events (purchases, clicks, tickets …) for the rules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.common import Verbs, current_or_initial, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
MAX_BYTES = 200 * 1024 * 1024


def register(verbs: Verbs) -> None:
    """The `kebiao events ACTION` group."""
    group = verbs.add_parser("events", help="customer events for the rules", description="Customer events.")
    sub = group.add_subparsers(dest="events_action", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import",
        help="import customer events from CSV or JSONL (idempotent by event id)",
        description="Import customer events. CSV: a header event_id,customer,kind,at,amount (more columns become "
        'properties). JSONL: one {"id", "customer", "kind", "at", "amount", "properties"} per line. '
        "`customer` is a crm_id, WeCom external user id or exact customer name; `at` is ISO 8601 (no offset: "
        "KEBIAO_TIMEZONE). Re-sending an event changes nothing; bad lines are listed with their line number and "
        "reason and nothing of them is stored; good lines are kept (exit status 1 when any line was refused). "
        "Event rules run for the new events. See docs/events.md.",
    )
    imp.add_argument("file", metavar="FILE", help="FILE.csv, FILE.jsonl or FILE.json (an array)")
    imp.set_defaults(handler=cmd_import)


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import an event file: good lines stored, bad lines listed, event rules run."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from app import rule_context
    from core.rules.events import parse_events
    from core.rules.ingest import ingest_events

    path = Path(args.file)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        print(f"kebiao: {path}: unknown extension; use .csv, .jsonl or .json", file=sys.stderr)
        return 2
    try:
        if path.stat().st_size > MAX_BYTES:
            print(f"kebiao: {path}: larger than {MAX_BYTES // 1024 // 1024} MB; split it", file=sys.stderr)
            return 2
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        print(f"kebiao: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"kebiao: {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8", file=sys.stderr)
        return 2
    from cli.progress import ProgressBar

    bar = ProgressBar(unit="events")
    bar("reading", 0, 1)
    parsed = parse_events(text, fmt, ZoneInfo(settings.timezone))
    bar("reading", 1, 1)

    async def work(database: Database) -> int:
        current = await current_or_initial(database, settings)
        ctx = rule_context(settings, database, lambda: current.taxonomy)
        report = await ingest_events(ctx, parsed, datetime.now(UTC), progress=bar)
        bar.finish()
        for error in report.errors:
            print(f"{path}:{error.line}: {error.reason}", file=sys.stderr)
        print(report)
        return 1 if report.errors else 0

    return run_db(settings, work)
