"""Crash benchmark: kill -9 `kebiao serve` mid-burst to a linked chat, restart, resend every activity.

`python -m bench crash [--messages N] [--concurrency C] [--kill-after K] [--postgres URL] [--code DIR]` sends N
messages (each auto-applies its own tag) with C in flight to a real `kebiao serve` subprocess in emulator mode,
kills it with SIGKILL when the fake Bot Connector has received K cards, restarts it and resends all N activities
with the same ids, as Teams would retry them. Then it prints, for SQLite and PostgreSQL: messages whose tag was
lost or applied twice, messages without a card or with two, and how many got their card. `--code DIR` runs the
server from another checkout (prepended to PYTHONPATH), to measure an earlier version the same way.
Nothing is asserted; tests/teams/test_crash.py asserts a smaller run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.scratch import scratch_postgres
from tests.teams.crash_harness import CrashOutcome, crash_run

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _one(backend: str, postgres: str, options: argparse.Namespace) -> CrashOutcome:
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        kwargs = {
            "messages": options.messages,
            "concurrency": options.concurrency,
            "kill_after": options.kill_after,
            "code": options.code,
        }
        if backend == "sqlite":
            return await crash_run(f"sqlite+aiosqlite:///{workdir / 'crash.db'}", workdir, **kwargs)
        async with scratch_postgres(postgres) as url:
            return await crash_run(url, workdir, **kwargs)


def _line(backend: str, outcome: CrashOutcome) -> str:
    return (
        f"{backend:<10} killed after {outcome.cards_before_kill:4d} cards | "
        f"lost tags {len(outcome.untagged):4d} | tagged twice {len(outcome.tagged_twice):3d} | "
        f"lost cards {len(outcome.missing_cards):4d} | cards twice {len(outcome.duplicated_cards):3d} | "
        f"delivered {outcome.delivered:4d}/{outcome.messages}"
    )


async def run(options: argparse.Namespace) -> None:
    postgres = options.postgres or os.environ.get("KEBIAO_TEST_POSTGRES_URL") or POSTGRES_DEFAULT
    print(
        f"{options.messages} messages to a linked chat, {options.concurrency} in flight, kill -9 after "
        f"{options.kill_after} cards, restart, resend all"
        + (f" (server code from {options.code})" if options.code else "")
    )
    for backend in options.backends:
        outcome = await _one(backend, postgres, options)
        print(_line(backend, outcome), flush=True)


def main(argv: Sequence[str]) -> int:
    """Entry point for `python -m bench crash`."""
    parser = argparse.ArgumentParser(prog="python -m bench crash", description=__doc__)
    parser.add_argument("--messages", type=int, default=200, help="messages in the burst (default 200)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--kill-after", type=int, default=40, help="cards delivered before the kill (default 40)")
    parser.add_argument("--postgres", help=f"PostgreSQL server URL for a scratch database (default {POSTGRES_DEFAULT})")
    parser.add_argument(
        "--backends", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"], help="databases"
    )
    parser.add_argument("--code", type=Path, help="run the server from this checkout instead (PYTHONPATH)")
    options = parser.parse_args(argv)
    asyncio.run(run(options))
    return 0
