"""Import speed: `python -m bench imports [--rows N] [--postgres URL] [--no-sqlite] [--bad-file-rows M]`.

Generates N-row files (default 200,000) and runs the real commands as a user does (`python -m cli customers
import`, `events import`, `learn import`, each in its own process, start-up included), on SQLite and on
PostgreSQL (a scratch database). Each figure is printed beside a same-process baseline that loads the same
rows with no checks at all (SQLite: one driver executemany into a bare table; PostgreSQL: COPY into a bare
table). Then, unless --skip-safety: a customer import killed with SIGKILL mid-write leaves the database as
it was, and an M-row file (default 1,000,000) with one bad row in the middle is refused whole, naming the row,
with nothing written. Target: every import at least 5,000 rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.scratch import scratch_postgres

TARGET = 5000.0  # rows per second
REGIONS = ("华东", "华南", "华北")
TAGS = ("询价客户", "VIP客户", "重点客户", "")
TEXTS = ("你好，麻烦给我报个价，我们想买二十套", "这款软件一年多少钱？", "发票什么时候能开", "系统登录不上了")


def write_customers(path: Path, rows: int, bad_row: int | None = None, prefix: str = "CRM") -> None:
    """A customer CSV with a free attribute column (tier); row `bad_row` (header = 1) gets an impossible date."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["name", "company", "crm_id", "region", "contract_end", "tags", "tier"])
        for i in range(rows):
            date = "2027-13-45" if i + 2 == bad_row else "2027-03-31"
            out.writerow(
                [f"客户{i}", f"公司{i % 997}", f"{prefix}{i:08d}", REGIONS[i % 3], date, TAGS[i % 4], f"t{i % 5}"]
            )


def write_events(path: Path, rows: int, customers: int) -> None:
    """A JSONL event file naming the generated customers by crm_id."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            item = {
                "id": f"ev-{i}",
                "customer": f"CRM{i % customers:08d}",
                "kind": "purchase" if i % 2 else "click",
                "at": f"2026-11-{1 + i % 28:02d}T10:00:00+08:00",
                "amount": i % 1000,
            }
            f.write(json.dumps(item, ensure_ascii=False) + "\n")


def write_history(path: Path, rows: int) -> None:
    """A labelled-history JSONL file (text and tags)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            tags = [TAGS[i % 3]] if i % 2 else []
            f.write(json.dumps({"text": f"{TEXTS[i % 4]} #{i}", "tags": tags}, ensure_ascii=False) + "\n")


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(url: str, *args: str) -> tuple[float, int, str]:
    """(seconds, exit status, output) of `python -m cli ARGS` on `url`: the phase lines (the writing phase is
    how long SQLite's write lock was held), or the last lines when it failed."""
    env = {**os.environ, "KEBIAO_DATABASE_URL": url}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return time.perf_counter() - started, done.returncode, (done.stderr + done.stdout)[-400:]
    phases = [line for line in done.stderr.splitlines() if ": " in line and line.endswith(" s")]
    return time.perf_counter() - started, done.returncode, "; ".join(phases)


def migrate(url: str) -> None:
    """Create the schema (not timed)."""
    _, code, tail = run_cli(url, "db", "upgrade")
    if code != 0:
        raise SystemExit(f"cannot migrate {url}: {tail}")


# ---------------------------------------------------------------- baselines (same process, no checks)


def baseline_sqlite(path: Path, rows: list[tuple[str, ...]]) -> float:
    """Seconds for one executemany of `rows` into a bare table of a fresh SQLite file (WAL, as Kebiao)."""
    db = path.with_suffix(".baseline.db")
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    width = len(rows[0])
    conn.execute(f"CREATE TABLE bare ({', '.join(f'c{i} TEXT' for i in range(width))})")
    started = time.perf_counter()
    with conn:
        conn.executemany(f"INSERT INTO bare VALUES ({', '.join('?' * width)})", rows)
    elapsed = time.perf_counter() - started
    conn.close()
    db.unlink(missing_ok=True)
    return elapsed


async def baseline_postgres(url: str, rows: list[tuple[str, ...]]) -> float:
    """Seconds for COPY of `rows` into a bare temporary table (asyncpg copy_records_to_table)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        width = len(rows[0])
        await conn.execute(f"CREATE TEMP TABLE bare ({', '.join(f'c{i} text' for i in range(width))})")
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table("bare", records=rows)
        return time.perf_counter() - started
    finally:
        await conn.close()


def file_rows(path: Path) -> list[tuple[str, ...]]:
    """The file's records as tuples of text (CSV cells, or a JSON line as one cell)."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            return [tuple(r) for r in list(csv.reader(f))[1:]]
    return [(line,) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- runs


def measure(label: str, url: str, rows: int, baseline: float, *args: str) -> bool:
    """Run one import, print rows/s beside the baseline's; True when it succeeded and met the target."""
    cpu = _children_cpu()
    seconds, code, tail = run_cli(url, *args)
    cpu = _children_cpu() - cpu
    rate = rows / seconds
    base = rows / baseline
    verdict = "ok" if code == 0 and rate >= TARGET else "MISSED" if code == 0 else f"FAILED (exit {code})"
    print(
        f"  {label:<18} {rows:>9,} rows in {seconds:6.1f} s = {rate:>9,.0f} rows/s "
        f"(baseline {base:>10,.0f} rows/s, ratio {rate / base:.3f}; target {TARGET:,.0f}) {verdict}",
        flush=True,
    )
    print(f"    import process CPU {cpu:.1f} s ({rows / max(cpu, 1e-9):,.0f} rows per CPU second); {tail}")
    return code == 0 and rate >= TARGET


def run_all(url: str, folder: Path, rows: int, postgres: bool) -> bool:
    """Customers, then events for them, then labelled history, each with its baseline."""
    customers, events, history = folder / "customers.csv", folder / "events.jsonl", folder / "history.jsonl"
    if not customers.exists():
        write_customers(customers, rows)
        write_events(events, rows, rows)
        write_history(history, rows)
    migrate(url)
    ok = True
    for label, path, args in (
        ("customers import", customers, ("customers", "import", str(customers))),
        ("customers again", customers, ("customers", "import", str(customers))),
        ("events import", events, ("events", "import", str(events))),
        ("learn import", history, ("learn", "import", str(history))),
    ):
        records = file_rows(path)
        base = asyncio.run(baseline_postgres(url, records)) if postgres else baseline_sqlite(folder / "b", records)
        ok &= measure(label, url, len(records), base, *args)
    return ok


# ---------------------------------------------------------------- safety


def count_customers(url: str) -> int:
    """Customers stored, read through a fresh process-local engine."""

    async def count() -> int:
        from sqlalchemy import text

        from storage.database import create_engine

        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM customers"))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def kill_mid_import(url: str, path: Path) -> bool:
    """SIGKILL a customer import once it is writing; the database must hold what it held before."""
    before = count_customers(url)
    env = {**os.environ, "KEBIAO_DATABASE_URL": url}
    child = subprocess.Popen(
        [sys.executable, "-m", "cli", "customers", "import", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    # Without a terminal the import prints a line as each phase ends: "checking: …" means writing has begun.
    for line in child.stderr:
        if line.startswith("checking:"):
            time.sleep(0.3)
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    after = count_customers(url)
    ok = after == before
    print(f"  kill -9 mid-import: customers before {before:,}, after {after:,}: {'unchanged' if ok else 'CHANGED'}")
    return ok


def refuse_bad_file(url: str, path: Path, rows: int) -> bool:
    """An M-row file with one bad row in the middle: refused, the row named, nothing written."""
    bad_row = rows // 2 + 1
    write_customers(path, rows, bad_row)
    before = count_customers(url)
    seconds, code, tail = run_cli(url, "customers", "import", str(path))
    after = count_customers(url)
    named = f"row {bad_row}" in tail
    ok = code == 1 and named and after == before
    print(
        f"  {rows:,}-row file, bad row {bad_row:,}: exit {code} in {seconds:.1f} s, row named: {named}, "
        f"customers before {before:,} after {after:,}: {'refused whole' if ok else 'WRONG'}"
    )
    return ok


def _scratch_run(url: str, folder: Path, args: argparse.Namespace) -> bool:
    """The suite on a scratch database (created and dropped around it)."""
    loop = asyncio.new_event_loop()
    scratch = scratch_postgres(url, "kebiao_bench_imports")
    try:
        target = loop.run_until_complete(scratch.__aenter__())
        try:
            return _suite(target, folder, args, postgres=True)
        finally:
            loop.run_until_complete(scratch.__aexit__(None, None, None))
    finally:
        loop.close()


def _suite(url: str, folder: Path, args: argparse.Namespace, *, postgres: bool) -> bool:
    ok = run_all(url, folder, args.rows, postgres)
    if not args.skip_safety:
        fresh = folder / "fresh.csv"
        write_customers(fresh, args.rows, prefix="NEW")
        ok &= kill_mid_import(url, fresh)
        ok &= refuse_bad_file(url, folder / "bad.csv", args.bad_file_rows)
    return ok


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench imports", description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--bad-file-rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (scratch database)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    parser.add_argument("--skip-safety", action="store_true", help="skip the kill -9 and bad-file runs")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        if not args.no_sqlite:
            print(f"SQLite ({os.getloadavg()[0]:.2f} load):", flush=True)
            ok &= _suite(f"sqlite+aiosqlite:///{folder}/bench.db", folder, args, postgres=False)
        if args.postgres:
            print(f"PostgreSQL ({os.getloadavg()[0]:.2f} load):", flush=True)
            ok &= _scratch_run(args.postgres, folder, args)
    return 0 if ok else 1
