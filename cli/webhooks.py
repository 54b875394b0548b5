"""`kebiao webhooks failed [--resend ID]`: webhook calls that failed for good, and sending one again."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, positive_int, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao webhooks ACTION` group."""
    group = verbs.add_parser("webhooks", help="outgoing webhook calls", description="Outgoing webhook calls.")
    sub = group.add_subparsers(dest="webhooks_action", metavar="ACTION", required=True)
    failed = sub.add_parser(
        "failed",
        help="list webhook calls that failed for good; --resend ID queues one again",
        description="List webhook calls the outbox gave up on (the receiver answered 4xx/410, or kept failing "
        "through every retry), with the last error. --resend ID puts one back (same idempotency key); the next "
        "outbox drain sends it.",
    )
    failed.add_argument("--resend", type=positive_int, metavar="ID", help="queue this failed call again")
    failed.set_defaults(handler=cmd_failed)


def cmd_failed(args: argparse.Namespace, settings: Settings) -> int:
    """List failed webhook calls, or resend one."""
    from datetime import UTC, datetime

    from core.errors import NotFoundError
    from core.rules.webhooks import failed_webhooks, resend_webhook
    from storage.rules import SqlRulesStore

    async def work(database: Database) -> int:
        store = SqlRulesStore(database.engine)
        if args.resend is not None:
            try:
                message = await resend_webhook(store, args.resend, datetime.now(UTC), "kebiao webhooks (CLI)")
            except (NotFoundError, ValueError) as exc:
                print(f"kebiao: {exc}", file=sys.stderr)
                return 1
            print(f"webhook call {message.id} to {message.recipient} queued again")
            return 0
        rows = await failed_webhooks(store)
        for m in rows:
            body = m.payload.get("body", {})
            rule = body.get("rule", "") if isinstance(body, dict) else ""
            print(f"{m.id}\t{m.recipient}\t{rule}\t{m.updated_at.isoformat()}\t{m.attempts}\t{m.last_error or ''}")
        print(f"{len(rows)} failed webhook calls", file=sys.stderr)
        return 0

    return run_db(settings, work)
