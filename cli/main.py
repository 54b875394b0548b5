"""The `kebiao` entry point: build the parser from the verb table, read settings once, run the handler."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# The verb groups, in the order `kebiao --help` lists them; each module has `register(verbs)`.
VERB_MODULES: tuple[str, ...] = (
    "cli.serve",
    "cli.suggest",
    "cli.taxonomy",
    "cli.db",
    "cli.customers",
    "cli.users",
    "cli.manifest",
    "cli.ingest",
    "cli.wecom",
    "cli.alerts",
    "cli.reports",
    "cli.crm",
)


def build_parser() -> argparse.ArgumentParser:
    """The `kebiao` argument parser; each verb's handler is stored as `handler`."""
    parser = argparse.ArgumentParser(prog="kebiao", description="Kebiao (客标): customer tagging in Teams and WeCom.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in VERB_MODULES:
        importlib.import_module(name).register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kebiao` console script."""
    from config import ConfigError, Settings

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # Migration chatter belongs in -v output; the CLI's own lines are what a person reads.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"kebiao: configuration error: {exc}", file=sys.stderr)
        return 2
    handler = args.handler
    code: int = handler(args, settings)
    return code
