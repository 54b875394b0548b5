"""`kebiao customers import|show`: customer data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cli.common import Verbs, initial_taxonomy, positive_int, run_db

if TYPE_CHECKING:
    from collections.abc import Sequence

    from config import Settings
    from core.ports import UnitOfWork
    from core.types import Customer
    from storage.database import Database


def register(verbs: Verbs) -> None:
    """The `kebiao customers ACTION` group."""
    customers = verbs.add_parser("customers", help="customer data", description="Customer data.")
    sub = customers.add_subparsers(dest="customers_action", metavar="ACTION", required=True)
    imp = sub.add_parser(
        "import",
        help="import customers and tags from CSV/XLSX (all or nothing)",
        description="Import FILE.csv or FILE.xlsx (the format is described in docs/customers.md). Every bad row "
        "is printed as 'row N, column C: reason' and nothing is written (exit 1). Importing the same file twice "
        "changes nothing.",
    )
    imp.add_argument("file", metavar="FILE", help="customer file (.csv or .xlsx)")
    imp.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    imp.set_defaults(handler=cmd_import)
    show = sub.add_parser(
        "show",
        help="show a customer's tags by dimension and recent history",
        description="Show the tags CUSTOMER holds (name, CRM id or WeCom external id; forgiving match) "
        "and the newest tag events. --as shows what that user may see (agents never see managers-only tags).",
    )
    show.add_argument("customer", metavar="CUSTOMER", help="customer name, CRM id or WeCom external user id")
    show.add_argument("--as", dest="viewer", metavar="USER_ID", help="see it as this user (default: admin view)")
    show.add_argument("--history", type=positive_int, default=10, metavar="N", help="events to list (default 10)")
    show.set_defaults(handler=cmd_show)


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Import customers (and their tags) from CSV/XLSX, all or nothing; --dry-run writes nothing."""
    from datetime import UTC, datetime

    from cli.progress import ProgressBar
    from core.importing.customers import import_customers
    from core.importing.files import ImportFileError, ImportLimits, parse_customer_file
    from core.tags.assignments import TaggingRules
    from core.taxonomy.store import ensure_taxonomy

    bar = ProgressBar()
    try:
        # row problems come back with the rows so the import adds its own and one run shows them all
        parsed = parse_customer_file(args.file, ImportLimits.command_line(), collect=True, progress=bar)
    except ImportFileError as exc:
        bar.finish()
        _print_problems(exc.problems)
        return 1
    rules = TaggingRules.of(settings.timezone, settings.tag_hard_cap)

    async def work(database: Database) -> int:
        async with database.unit_of_work(read_only=True) as uow:
            current = await uow.taxonomies.current()
        taxonomy = current.taxonomy if current else initial_taxonomy(settings)

        async def prepare(uow: UnitOfWork) -> None:
            if current is None:  # the first import stores the taxonomy it was checked against, in its transaction
                await ensure_taxonomy(uow, taxonomy, "cli", datetime.now(UTC))

        try:
            summary = await import_customers(
                database,
                taxonomy,
                rules,
                parsed.rows,
                actor="import",
                now=datetime.now(UTC),
                dry_run=args.dry_run,
                problems=parsed.problems,
                refused_tags=parsed.refused_tags,
                progress=bar,
                prepare=prepare,
            )
        except ImportFileError as exc:
            bar.finish()
            _print_problems(exc.problems)
            return 1
        bar.finish()
        print(summary)
        return 0

    return run_db(settings, work)


def not_resolved(query: str, candidates: Sequence[Customer]) -> str:
    """Why `customers show QUERY` shows nobody: no customer matches, or several do (listed)."""
    if not candidates:
        return (
            f"no customer matches {query!r}; give a customer name, CRM id or WeCom external user id "
            "(import customers with 'kebiao customers import FILE')"
        )
    names = ", ".join(f"{c.name} (#{c.id})" for c in candidates)
    return f"{query!r} matches {len(candidates)} customers: {names}; give more of the name or the CRM id"


def _print_problems(problems: Sequence[object], shown: int = 50) -> None:
    """Every problem up to `shown` on stderr, one a line, then how many more there are."""
    for problem in problems[:shown]:
        print(problem, file=sys.stderr)
    if len(problems) > shown:
        print(f"… and {len(problems) - shown} more problems", file=sys.stderr)


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print a customer's tags grouped by dimension and the newest events, as a given user sees them."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from cards.plain import render_customer_text
    from core.tags.customers import customer_history, resolve_customer
    from core.tags.summary import customer_summary
    from core.tags.users import get_user
    from core.types import Role, User

    async def work(database: Database) -> int:
        now = datetime.now(UTC)
        async with database.unit_of_work() as uow:
            current = await uow.taxonomies.current()
            if current is None:
                hint = "run 'kebiao taxonomy import FILE' or start the server once"
                print(f"kebiao: no taxonomy loaded yet; {hint}", file=sys.stderr)
                return 1
            viewer = User("cli", Role.ADMIN)
            if args.viewer:
                found = await get_user(uow, args.viewer)
                viewer = found if found is not None else User(args.viewer, Role.AGENT)
            resolution = await resolve_customer(uow, args.customer)
            if resolution.customer is None:
                print(f"kebiao: {not_resolved(args.customer, resolution.candidates)}", file=sys.stderr)
                return 1
            summary = await customer_summary(uow, current.taxonomy, resolution.customer.id, viewer, now)
            events = await customer_history(uow, current.taxonomy, resolution.customer.id, viewer, 0, args.history)
        print(render_customer_text(summary, events, ZoneInfo(settings.timezone)))
        return 0

    return run_db(settings, work)
