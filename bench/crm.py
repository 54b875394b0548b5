"""CRM sync at scale: `python -m bench crm [--accounts N] [--changes M] [--page-size P] [--postgres URL]`.

Runs the real Dataverse connector (MSAL sign-in included) against the test fake on 127.0.0.1 over HTTPS
(tests/crm/fake_dynamics.py, in a child process, as a real CRM is another machine),
with the real sync service on a real database: a first full sync of N accounts
(each with a tag, an industry field mapped to a `sync: crm` dimension, and the basic attributes industry,
size and region read into the customer), then an incremental sync after M of them changed in the CRM.
The fake serves Dataverse's documented maximum page of 5,000 rows and does not throttle (Dataverse's
service protection allows 6,000 requests per user per 5 minutes; a full sync of 100,000 accounts makes
21 requests). Prints records/s and seconds against the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

from aiohttp import web

from bench.scratch import scratch_postgres
from core.crm.port import AttributeField
from core.crm.sync import CrmSync
from core.tags.assignments import TaggingRules
from crm.dynamics.connector import DynamicsConnector, DynamicsSettings
from storage.crm import SqlCrmStore
from storage.database import open_database
from tagging.loader import load_taxonomy_text
from tests.crm import fake_dynamics as fd
from tests.crm.conftest import OPTIONS, TAXONOMY
from tests.crm.tls import make_certificate

FULL_TARGET = 2000.0  # records per second
INCREMENTAL_TARGET = 5.0  # seconds for 1,000 changes


def _serve_fake(accounts: int, folder: str, pipe: Connection) -> None:
    """Child process: the fake Dataverse with `accounts` rows; answers ("port") and ("change", M) on `pipe`."""
    asyncio.run(_fake_main(accounts, Path(folder), pipe))


async def _fake_main(accounts: int, folder: Path, pipe: Connection) -> None:
    _, context = make_certificate(folder)
    fake = fd.FakeDataverse(options=dict(OPTIONS))
    industries = ["Manufacturing", "Retail", None]
    ids = [
        fake.add(
            "accounts",
            f"客户{i}",
            ["华东"],
            kb_industry=industries[i % 3],
            industrycode=(12, 27, None)[i % 3],
            numberofemployees=10 + i % 5000,
            address1_stateorprovince=("上海", "浙江", "江苏")[i % 3],
        )
        for i in range(accounts)
    ]
    runner = web.AppRunner(fd.build_app(fake), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    fake.base = f"https://127.0.0.1:{runner.addresses[0][1]}"
    pipe.send(fake.base)
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] == "stop":
            break
        for i in range(command[1]):
            fake.update(
                "accounts",
                ids[i * 7 % accounts],
                kb_industry="Retail" if i % 2 else "Manufacturing",
                numberofemployees=20_000 + i,
            )
        pipe.send("ok")
    await runner.cleanup()


async def _run(url: str, accounts: int, changes: int, page_size: int, folder: Path) -> bool:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(
        target=_serve_fake, args=(accounts, str(folder), child), daemon=True
    )
    server.start()
    loop = asyncio.get_running_loop()
    base = await loop.run_in_executor(None, parent.recv)
    settings = DynamicsSettings(
        base,
        f"{base}/{fd.TENANT}",
        fd.CLIENT_ID,
        fd.CLIENT_SECRET,
        fd.TAGS_FIELD,
        page_size,
        str(folder / "cert.pem"),
        attributes=tuple(
            AttributeField(*spec)
            for spec in (
                ("industry", "account", "industrycode"),
                ("size", "account", "numberofemployees"),
                ("region", "", "address1_stateorprovince"),
            )
        ),
    )
    database = await open_database(url)
    taxonomy = load_taxonomy_text(TAXONOMY)
    connector = DynamicsConnector(settings)
    sync = CrmSync(SqlCrmStore(database.engine), connector, lambda: taxonomy, TaggingRules(), "bench")
    now = datetime.now(UTC)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        first = await sync.run(now)
        full, cpu = time.perf_counter() - started, time.process_time() - cpu
        rate = first.records / full
        print(
            f"  full sync: {first.records:,} records, {first.pages} pages of ≤{page_size}, {first.created:,} "
            f"customers, {first.added:,} tags in {full:.1f} s = {rate:,.0f} records/s "
            f"(target ≥ {FULL_TARGET:,.0f}; {rate / FULL_TARGET:.2f}x); this process used {cpu:.1f} CPU s = "
            f"{first.records / cpu:,.0f} records per CPU second; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
        parent.send(("change", changes))
        await loop.run_in_executor(None, parent.recv)
        started = time.perf_counter()
        second = await sync.run(now + timedelta(minutes=15))
        inc = time.perf_counter() - started
        print(
            f"  incremental sync: {second.records:,} records read for {changes:,} changes, {second.added:,} added, "
            f"{second.removed:,} removed, {second.attributes:,} customers' attributes updated "
            f"in {inc:.2f} s (target < {INCREMENTAL_TARGET:.0f} s; "
            f"{inc / INCREMENTAL_TARGET:.2f} of the budget)"
        )
        if first.error or second.error:
            print(f"  error: {first.error or second.error}")
        return rate >= FULL_TARGET and inc < INCREMENTAL_TARGET and not (first.error or second.error)
    finally:
        await connector.close()
        await database.close()
        parent.send(("stop",))
        server.join(timeout=10)


async def _run_postgres(url: str, *args: object) -> bool:
    async with scratch_postgres(url) as scratch:
        return await _run(scratch, *args)  # type: ignore[arg-type]


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench crm", description=__doc__)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--page-size", type=int, default=fd.MAX_PAGE)
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (scratch database)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite run")
    args = parser.parse_args(argv)
    if args.accounts < 1 or not 0 < args.changes <= args.accounts:
        parser.error("need --accounts >= 1 and 0 < --changes <= --accounts")
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_sqlite:
            print("SQLite:")
            ok &= asyncio.run(
                _run(
                    f"sqlite+aiosqlite:///{folder}/bench.db", args.accounts, args.changes, args.page_size, Path(folder)
                )
            )
        if args.postgres:
            print("PostgreSQL:")
            ok &= asyncio.run(_run_postgres(args.postgres, args.accounts, args.changes, args.page_size, Path(folder)))
    return 0 if ok else 1
