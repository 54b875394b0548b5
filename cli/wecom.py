"""`kebiao wecom sync-tags`: WeCom corp tags in, Kebiao's tags out."""

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
