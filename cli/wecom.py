"""`kebiao wecom sync-tags`: WeCom corp tags in, Kebiao's tags out; `sync-personal-tags`: agents' own tags in."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, initial_taxonomy, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao wecom ACTION` group."""
    group = verbs.add_parser("wecom", help="WeCom integration", description="WeCom integration.")
    sub = group.add_subparsers(dest="wecom_action", metavar="ACTION", required=True)
    sync = sub.add_parser(
        "sync-tags",
        help="import WeCom corp tags and push Kebiao's tags to WeCom",
        description="Import every WeCom corp customer tag into the dimension 'wecom' (a new taxonomy version "
        "when it changed), then mark every customer's active Kebiao tags on WeCom (owner userid + "
        "wecom_external_userid), creating missing corp tags. Needs WECOM_CORP_ID, WECOM_SECRET.",
    )
    sync.add_argument("--import-only", action="store_true", help="only import WeCom's tags; push nothing")
    sync.set_defaults(handler=cmd_sync_tags)
    personal = sub.add_parser(
        "sync-personal-tags",
        help="read every agent's own WeCom tags on known contacts into their personal tags",
        description="For each customer with a wecom_external_userid (by customer id), read the contact from "
        "WeCom (externalcontact/get) and make each follow user's personal tags of source wecom exactly their "
        "own WeCom tags (type 2), as a contact edit event would. Idempotent; names with personal data or over "
        "20 characters are skipped. Progress on stderr. Needs WECOM_CORP_ID, WECOM_SECRET.",
    )
    personal.add_argument("--after", type=_count, default=0, metavar="ID", help="start after this customer id")
    personal.add_argument("--limit", type=_count, default=None, metavar="N", help="read at most N contacts")
    personal.set_defaults(handler=cmd_sync_personal_tags)


def _count(text: str) -> int:
    """A non-negative whole number for --after / --limit."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number (0 or more)")
    return int(text)


def cmd_sync_tags(args: argparse.Namespace, settings: Settings) -> int:
    """Import WeCom's corp tags into the `wecom` dimension, then push every customer's tags to WeCom."""
    import aiohttp

    from bots.wecom.background import Background
    from bots.wecom.client import WeComApiError, WeComClient
    from bots.wecom.sync import WeComTagSync
    from storage.channels import SqlChannelStore
    from storage.sync_pending import SqlPendingTagPushes

    wecom = settings.wecom
    if not (wecom.corp_id and wecom.secret):
        print("kebiao wecom sync-tags: set WECOM_CORP_ID and WECOM_SECRET", file=sys.stderr)
        return 1

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
        taxonomy = current.taxonomy if current else initial_taxonomy(settings)
        background = Background()
        async with aiohttp.ClientSession() as session:
            client = WeComClient(session, wecom.corp_id, wecom.secret, wecom.agent_id, wecom.api_base)
            pending = SqlPendingTagPushes(database.engine)  # push_all drains the pending pushes first
            sync = WeComTagSync(
                client, database, SqlChannelStore(database.engine), lambda: taxonomy, background, pending
            )
            try:
                result = await sync.import_corp_tags()
                pushed, failed = (0, 0) if args.import_only else await sync.push_all()
            except WeComApiError as exc:
                print(f"kebiao wecom sync-tags: {exc}", file=sys.stderr)
                return 1
            finally:
                await background.close()
        version = f"taxonomy version {result.change.version.version}" if result.change else "taxonomy unchanged"
        print(f"{len(result.tags)} WeCom corp tags imported ({version}); {pushed} customers pushed, {failed} failed")
        for skipped in result.skipped:
            print(f"skipped: {skipped}", file=sys.stderr)
        return 1 if failed else 0

    return run_db(settings, work)


def cmd_sync_personal_tags(args: argparse.Namespace, settings: Settings) -> int:
    """Backfill each agent's personal tags from their own WeCom tags on every known external contact."""
    from datetime import UTC, datetime

    import aiohttp

    from bots.wecom.client import WeComClient
    from bots.wecom.contact_tags import WeComContactTags
    from cli.progress import ProgressBar
    from core.wecom_sync.personal import backfill_personal_tags
    from storage.personal import SqlPersonalTagStore

    wecom = settings.wecom
    if not (wecom.corp_id and wecom.secret):
        print("kebiao wecom sync-personal-tags: set WECOM_CORP_ID and WECOM_SECRET", file=sys.stderr)
        return 1
    if args.limit == 0:
        print("kebiao wecom sync-personal-tags: --limit must be at least 1", file=sys.stderr)
        return 2

    async def work(database: Database) -> int:
        bar = ProgressBar(unit="contacts")
        async with aiohttp.ClientSession() as session:
            client = WeComClient(session, wecom.corp_id, wecom.secret, wecom.agent_id, wecom.api_base)
            result = await backfill_personal_tags(
                database,
                SqlPersonalTagStore(database.engine),
                WeComContactTags(client),
                lambda: datetime.now(UTC),
                after=args.after,
                limit=args.limit,
                progress=bar,
            )
        bar.finish()
        print(
            f"{result.contacts} contacts read: personal tags changed on {result.changed} customers "
            f"({result.agents} agent lists), {result.gone} no longer in WeCom, {result.failed} failed"
        )
        if result.gave_up:
            print(f"kebiao wecom sync-personal-tags: stopped: {result.gave_up}", file=sys.stderr)
        if result.next_after is not None:
            print(f"more contacts remain: run again with --after {result.next_after}")
        return 1 if result.failed else 0

    return run_db(settings, work)
