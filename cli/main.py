"""The `kebiao` entry point: build the parser from the verb table, read settings once, run the handler."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from datetime import datetime, tzinfo

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
    "cli.events",
    "cli.rules",
    "cli.webhooks",
    "cli.learn",
    "cli.crm",
)


def build_parser() -> argparse.ArgumentParser:
    """The `kebiao` argument parser; each verb's handler is stored as `handler`."""
    parser = argparse.ArgumentParser(
        prog="kebiao",
        description="Kebiao (客标): customer tagging in Teams and WeCom.",
        epilog="Every verb has --help. The documentation is in the repository's docs/ folder (docs/README.md): "
        "file formats, the admin API, configuration, deployment and troubleshooting.",
    )
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
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"kebiao: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.verbose, settings.timezone)
    handler = args.handler
    try:
        code: int = handler(args, settings)
        sys.stdout.flush()
    except BrokenPipeError:
        return closed_pipe()
    return code


class LocalTimeFormatter(logging.Formatter):
    """Log lines stamped in one time zone, ISO 8601 with the offset (what an operator reads)."""

    def __init__(self, zone: tzinfo) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, self.zone).isoformat(timespec="milliseconds")


def configure_logging(verbose: bool, timezone: str) -> None:
    """Log to stderr, stamped in KEBIAO_TIMEZONE; library chatter only with -v."""
    from zoneinfo import ZoneInfo

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LocalTimeFormatter(ZoneInfo(timezone)))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    if not verbose:
        # Migration chatter belongs in -v output; the CLI's own lines are what a person reads.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # APScheduler logs "Running job ..." at INFO on every run of every job (the outbox runs every 30 s).
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


# The exit status of a program stopped by SIGPIPE (128 + 13), as `cat` or `grep` end when `head` closes the pipe.
CLOSED_PIPE_EXIT = 141


def closed_pipe() -> int:
    """The reader went away (`kebiao ... | head -1`): stop quietly, without a traceback at interpreter exit."""
    import os

    # Python flushes stdout once more at exit; point it at /dev/null so that flush cannot fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (an embedding caller's stream)
        pass
    finally:
        os.close(devnull)
    return CLOSED_PIPE_EXIT
