"""Two real `kebiao serve` processes on one PostgreSQL database, both scheduling: each alert goes out once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from storage.database import open_database
from tests.alerts.conftest import seed
from tests.conftest import scratch_database_url
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi

pytestmark = pytest.mark.postgres
DEADLINE_S = 90.0


@pytest.fixture
async def scratch_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (the servers take a plain URL, so a schema would not do)."""
    async with scratch_database_url("kebiao_alerts") as url:
        yield url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(url: str, fake: FakeWeComApi, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KEBIAO_", "WECOM_", "MICROSOFT_"))},
        "KEBIAO_DATABASE_URL": url,
        "HOST": "127.0.0.1",
        "PORT": str(_free_port()),
        "KEBIAO_SCHEDULER": "on",
        "KEBIAO_ALERTS_RUN_AT_START": "on",
        "KEBIAO_OUTBOX_EVERY_SECONDS": "1",
        "KEBIAO_QUIET_HOURS": "off",
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_AGENT_ID": AGENT_ID,
        "WECOM_TOKEN": "kebiaotoken",
        "WECOM_ENCODING_AES_KEY": "a" * 43,
        "WECOM_API_BASE": fake.api_base,
    }
    script = "import sys, cli; sys.exit(cli.main(['serve']))"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=env, stderr=log.open("wb"))


def _accepted_sends(fake: FakeWeComApi) -> list[dict[str, Any]]:
    """message/send calls the fake accepted. Both replicas fetch a token; as WeCom does, a fetch while the
    token is valid returns that same token, so neither replica voids the other's."""
    return [call.body or {} for call in fake.calls_to("message/send") if call.token == fake.valid_token]


async def test_two_replicas_send_each_alert_exactly_once(
    scratch_database: str, fake_wecom: FakeWeComApi, tmp_path: Path
) -> None:
    database = await open_database(scratch_database)
    try:
        await seed(database, datetime.now(UTC))
    finally:
        await database.close()
    logs = [tmp_path / "replica-a.log", tmp_path / "replica-b.log"]
    procs = [_serve(scratch_database, fake_wecom, tmp_path, log) for log in logs]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        stable_since, seen = loop.time(), -1
        while loop.time() < deadline:
            await asyncio.sleep(0.5)
            dead = [p for p in procs if p.poll() is not None]
            assert not dead, "a replica exited early:\n" + "\n".join(log.read_text() for log in logs)
            count = len(_accepted_sends(fake_wecom))
            if count != seen:
                seen, stable_since = count, loop.time()
            started = all("alert job kebiao.alerts.startup" in log.read_text() for log in logs)
            # both replicas ran the start-up pass, and three outbox drains passed without a new send
            if started and count >= 7 and loop.time() - stable_since > 3:
                break
        else:
            pytest.fail(f"alerts did not settle in {DEADLINE_S}s ({seen} sent)\n" + logs[0].read_text()[-3000:])
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    database = await open_database(scratch_database)
    try:
        async with database.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT dedupe_key, state, attempts FROM outbox ORDER BY id"))).all()
    finally:
        await database.close()
    assert [(r.state, r.attempts) for r in rows] == [("sent", 1)] * 7, rows
    sends = _accepted_sends(fake_wecom)
    per_alert = Counter((b["touser"], b["template_card"]["main_title"]["title"]) for b in sends)
    assert all(n == 1 for n in per_alert.values()), per_alert
    assert Counter(b["touser"] for b in sends) == Counter({"小张": 2, "王经理": 2, "李总": 2, "小李": 1})
    assert all("scheduler started" in log.read_text() for log in logs)
