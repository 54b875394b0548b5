"""WeCom benchmark: encrypted callbacks/s through the real route, and ingest lines/s beside `kebiao suggest`.

`python -m bench wecom [--callbacks N] [--concurrency C] [--lines N] [--postgres URL]` prints the figures;
nothing is asserted. Callbacks are posted as WeCom drives the route: signed and encrypted, C in flight at
once, a mix of member texts (chat service + reply through the fake API), add_external_contact events with a
渠道活码 State (customer, channel tag, mark_tag push) and WeCom retries of earlier callbacks (de-duplicated).
Two figures: acknowledgements/s (what WeCom sees) and the end-to-end time until the background work after
the acknowledgements has drained. The client runs in the same process, so its cost counts against the app.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from app import WECOM, create_app
from bench import corpus
from bench.scratch import scratch_postgres
from bots.wecom.crypto import WeComCrypto
from core.importing.ingest import ingest_archive
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules
from core.taxonomy.dryrun import suggest_stream
from core.taxonomy.store import ensure_taxonomy
from storage.database import open_database
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin
from tagging.matcher import Matcher
from tests.wecom.callbacks import AES_KEY, TOKEN, contact_xml, settings_for, signed, text_xml
from tests.wecom.fake_api import CORP_ID, FakeWeComApi, running_fake_wecom

TEXTS = ("报价多少钱", "帮我看看这个客户", "help", "tag 客户 +VIP客户")


def _requests(count: int, fake: FakeWeComApi) -> list[tuple[dict[str, str], bytes]]:
    """Signed callbacks, built before timing: per 4 — 2 texts, 1 add-contact event, 1 retry of an earlier one."""
    crypto = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
    out: list[tuple[dict[str, str], bytes]] = []
    for i in range(count):
        kind = i % 4
        if kind == 3 and out:
            out.append(out[i // 2])  # WeCom retried a callback it already sent
            continue
        if kind == 2:
            external = f"wmBENCH{i:06d}"
            fake.add_contact(external, f"客户{i}", ["zhangwei"])
            inner = contact_xml("add_external_contact", external=external, state="expo2025", created=1732510200 + i)
        else:
            inner = text_xml(TEXTS[i % len(TEXTS)], msg_id=str(9_000_000 + i), user=f"agent{i % 20}")
        query, body = signed(crypto, inner, nonce=f"n{i}")
        out.append((query, body.encode()))
    return out


async def _callbacks(count: int, concurrency: int, workdir: Path, database_url: str | None) -> tuple[float, float]:
    """(acknowledgements/s, callbacks/s end to end including the background work)."""
    async with running_fake_wecom() as fake:
        settings = settings_for(workdir, fake.api_base)
        if database_url:
            settings = replace(settings, database_url=database_url)
        app = create_app(settings)
        async with TestClient(TestServer(app)) as client:
            requests = _requests(count, fake)
            gate = asyncio.Semaphore(concurrency)

            async def post(query: dict[str, str], body: bytes) -> None:
                async with gate:
                    resp = await client.post("/wecom/callback", params=query, data=body)
                    assert resp.status == 200, await resp.text()
                    await resp.read()

            start = time.perf_counter()
            await asyncio.gather(*(post(q, b) for q, b in requests))
            acked = time.perf_counter() - start
            await app[WECOM].background.drain()
            drained = time.perf_counter() - start
    return count / acked, count / drained


async def _ingest(texts: Sequence[str], workdir: Path, database_url: str) -> tuple[float, float]:
    """(ingest lines/s, dry-run lines/s) on the same texts, half of them from known customers."""
    taxonomy = load_builtin()
    matcher = Matcher.build(taxonomy)
    start = time.perf_counter()
    suggest_stream(matcher, texts, io.StringIO())
    dry = len(texts) / (time.perf_counter() - start)
    path = workdir / "archive.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            sender = f"wmBENCH{i % 50:03d}" if i % 2 == 0 else "zhangwei"
            record = {
                "msgid": f"b{i}",
                "from": sender,
                "tolist": [],
                "roomid": "",
                "msgtime": 1735700000000 + i,
                "msgtype": "text",
                "text": {"content": text},
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    database = await open_database(database_url)
    try:
        async with database.unit_of_work() as uow:
            await ensure_taxonomy(uow, taxonomy, "bench", datetime.now(UTC))
            for n in range(50):
                await uow.customers.add(
                    CustomerDraft(name=f"客户{n}", wecom_external_userid=f"wmBENCH{n:03d}"), datetime.now(UTC)
                )
        start = time.perf_counter()
        summary = await ingest_archive(SqlAlertStore(database.engine), taxonomy, matcher, TaggingRules(), path)
        rate = len(texts) / (time.perf_counter() - start)
        print(f"  ingest summary: {summary}")
    finally:
        await database.close()
    return rate, dry


async def _run(args: argparse.Namespace, tmp: Path) -> None:
    targets: list[tuple[str, str | None]] = [("sqlite", None)]
    if args.postgres:
        targets.append(("postgresql", args.postgres))
    # Ingest first: right after the callback phase, PostgreSQL is still writing out the dropped bench
    # database, which cost the ingest figure a third of its speed without saying anything about ingest.
    texts = corpus.messages(args.lines)
    for label, url in targets:
        work = tmp / label
        work.mkdir()
        if url is None:
            ingest, dry = await _ingest(texts, work, f"sqlite+aiosqlite:///{work / 'ingest.db'}")
        else:
            async with scratch_postgres(url) as fresh:
                ingest, dry = await _ingest(texts, work, fresh)
        print(
            f"[{label}] ingest: {ingest:,.0f} lines/s; kebiao suggest core: {dry:,.0f} lines/s; "
            f"ratio {ingest / dry:.2f} (target >= 0.7)"
        )
    for label, url in targets:
        work = tmp / label
        if url is None:
            ack, e2e = await _callbacks(args.callbacks, args.concurrency, work, None)
        else:
            async with scratch_postgres(url) as fresh:
                ack, e2e = await _callbacks(args.callbacks, args.concurrency, work, fresh)
        print(
            f"[{label}] {args.callbacks} encrypted callbacks, {args.concurrency} in flight: "
            f"acknowledged {ack:,.0f}/s (target >= 500/s); end to end incl. background work {e2e:,.0f}/s"
        )


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench wecom")
    parser.add_argument("--callbacks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="callbacks in flight at once (default 16)")
    parser.add_argument("--lines", type=int, default=20_000, help="archive lines for the ingest run (default 20,000)")
    parser.add_argument("--postgres", metavar="URL", help="also measure on this PostgreSQL (postgresql+asyncpg://…)")
    args = parser.parse_args(list(argv))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(args, Path(tmp)))
    return 0
