"""`kebiao db upgrade`: create or migrate the database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cli.common import Verbs, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao db ACTION` group."""
    db = verbs.add_parser("db", help="database schema", description="Database schema (KEBIAO_DATABASE_URL).")
    sub = db.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    upgrade = sub.add_parser(
        "upgrade", help="create or migrate the database", description="Apply every pending migration."
    )
    upgrade.set_defaults(handler=cmd_upgrade)


def cmd_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Create or migrate the database to the newest schema."""

    async def work(database: Database) -> int:
        print(f"database at revision {await database.current_revision()}")
        return 0

    return run_db(settings, work)
