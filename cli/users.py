"""`kebiao users set-role`: users, roles and the regions managers look after."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.common import Verbs, run_db

if TYPE_CHECKING:
    from config import Settings
    from storage.database import Database

ROLES = ("agent", "manager", "admin")


def register(verbs: Verbs) -> None:
    """The `kebiao users ACTION` group."""
    users = verbs.add_parser("users", help="users and roles", description="Users and roles.")
    sub = users.add_subparsers(dest="users_action", metavar="ACTION", required=True)
    role = sub.add_parser(
        "set-role",
        help="set a user's role and regions",
        description="Set USER_ID's role. Managers get alerts for customers in their regions (none = all). "
        "Each region is checked against the taxonomy in force: with a top-level `regions:` list an unknown "
        "region is refused (nothing changes); without one, a region no dimension or tag uses is warned about.",
    )
    role.add_argument(
        "user_id", metavar="USER_ID", help="Teams AAD object id (GUID) or WeCom userid (1-64 letters, digits, _ - . @)"
    )
    role.add_argument("role", choices=ROLES, help="agent, manager or admin")
    role.add_argument("--region", action="append", default=[], metavar="R", help="a region (repeatable)")
    role.set_defaults(handler=cmd_set_role)


def cmd_set_role(args: argparse.Namespace, settings: Settings) -> int:
    """Give a user a role (and the regions a manager looks after)."""
    from datetime import UTC, datetime

    from core.tags.users import assign_role, user_id_problem
    from core.types import Role

    problem = user_id_problem(args.user_id)
    if problem is not None:
        print(f"kebiao users set-role: {problem}", file=sys.stderr)
        return 2

    async def work(database: Database) -> int:
        async with database.unit_of_work() as uow:
            change = await assign_role(uow, args.user_id, Role(args.role), args.region, datetime.now(UTC))
        for warning in change.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        user = change.user
        regions = ", ".join(user.regions) or "all regions"
        print(f"{user.id}: {user.role.value} ({regions})")
        return 0

    try:
        return run_db(settings, work)
    except ValueError as exc:
        print(f"kebiao users set-role: {exc}", file=sys.stderr)
        return 1
