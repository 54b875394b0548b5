"""`kebiao crm sync [--full] [--dry-run]` and `kebiao crm status`: the CRM as master, chat as mirror."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from cli.common import Verbs, current_or_initial, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao crm ACTION` group."""
    group = verbs.add_parser(
        "crm",
        help="two-way tag sync with Dynamics 365 or Zoho CRM",
        description="Sync tags with the CRM named by KEBIAO_CRM (dynamics or zoho); see docs/crm.md.",
    )
    sub = group.add_subparsers(dest="crm_action", metavar="ACTION", required=True)
    sync = sub.add_parser(
        "sync",
        help="pull changed CRM records, then write Kebiao-mastered tags to the CRM",
        description="Read the records changed since the stored cursor (each page committed with the cursor), "
        "match or create customers by crm_id, apply the CRM's values to `sync: crm` dimensions, then write "
        "`sync: kebiao` tags (pending writes first). Exit 1 when the CRM refused or failed.",
    )
    sync.add_argument("--full", action="store_true", help="read every record again, from the beginning")
    sync.add_argument("--dry-run", action="store_true", help="read and compute, write nothing (no cursor move)")
    sync.set_defaults(handler=cmd_sync)
    status = sub.add_parser(
        "status", help="last sync, cursor, pending writes and failures", description="Show the CRM sync state."
    )
    status.set_defaults(handler=cmd_status)


def _configured(settings: Settings) -> bool:
    if settings.crm.enabled:
        return True
    print("kebiao crm: set KEBIAO_CRM=dynamics or KEBIAO_CRM=zoho and its settings (docs/crm.md)", file=sys.stderr)
    return False


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    """Run one sync now and print what it did."""
    from datetime import UTC, datetime

    from app import build_crm_sync

    if not _configured(settings):
        return 1

    async def work(database: Database) -> int:
        current = await current_or_initial(database, settings)
        sync = build_crm_sync(settings, database, lambda: current.taxonomy)
        try:
            report = await sync.run(datetime.now(UTC), full=args.full, dry_run=args.dry_run)
        finally:
            await sync.connector.close()
        if report.busy:
            print("kebiao crm sync: another replica is syncing now; nothing done", file=sys.stderr)
            return 1
        _print_report(report)
        if report.error:
            print(f"kebiao crm sync: {report.error}", file=sys.stderr)
            return 1
        return 0

    return run_db(settings, work)


def _print_report(report: Any) -> None:
    mode = " (dry run: nothing written)" if report.dry_run else ""
    print(
        f"{report.connector}{mode}: {report.records} records in {report.pages} pages, {report.created} customers "
        f"created, {report.attributes} customers' attributes updated, {report.added} tags added, "
        f"{report.removed} removed, {report.conflicts} conflicts recorded, "
        f"{report.unlinked} links marked deleted/merged, {report.written} CRM writes, "
        f"{report.write_failures} failed writes kept for retry"
    )
    for note in report.notes:
        print(f"refused: {note}")


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print last sync, cursor, pending writes and failures."""
    from storage.crm import SqlCrmStore

    if not _configured(settings):
        return 1
    name = settings.crm.kind

    async def work(database: Database) -> int:
        store = SqlCrmStore(database.engine)
        state = await store.state(name)
        waiting, failing = await store.pending(name)
        print(f"connector: {name}")
        if state is None:
            print("last sync: never")
        else:
            print(f"last successful sync: {_when(state.last_ok_at)}; last started: {_when(state.last_started_at)}")
            print(f"records read so far: {state.records}")
            print(f"cursor: {state.cursor or '(none: the next sync reads everything)'}")
            if state.lease_owner:
                print(f"running on: {state.lease_owner} (lease until {_when(state.lease_until)})")
            if state.last_error:
                print(f"last error ({_when(state.last_error_at)}): {state.last_error}")
        print(f"pending writes: {waiting} ({failing} failing)")
        for row in await store.failures(name, 10):
            print(
                f"  customer {row.customer_id}: {row.attempts} attempts, "
                f"next {_when(row.next_attempt_at)}: {row.last_error}"
            )
        return 1 if state is not None and state.last_error else 0

    return run_db(settings, work)


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"
