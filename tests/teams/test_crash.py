"""Kill -9 `kebiao serve` mid-burst to a linked chat, restart, resend: every message tagged once, every card out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from core.chat.turns import LIMIT
from tests.conftest import postgres_url
from tests.teams.crash_harness import crash_run

pytestmark = pytest.mark.slow

MESSAGES = 48
CONCURRENCY = 16  # requests in flight: more than the server runs at once, so some wait for a turn slot
KILL_AFTER = 12  # cards delivered before the kill: turns are in flight at every stage


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database for the server subprocess: a SQLite file, or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}"
        return
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable at the default URL and KEBIAO_TEST_POSTGRES_URL is unset")
    name = f"kebiao_crash_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_killed_mid_burst_then_resent_loses_nothing_and_tags_nothing_twice(
    database_url: str, tmp_path: Path
) -> None:
    outcome = await crash_run(database_url, tmp_path, messages=MESSAGES, concurrency=CONCURRENCY, kill_after=KILL_AFTER)
    assert 0 < outcome.cards_before_kill < MESSAGES, outcome.summary()  # the kill landed mid-burst
    assert outcome.untagged == (), outcome.summary()
    assert outcome.tagged_twice == (), outcome.summary()
    assert outcome.tagged == MESSAGES
    assert outcome.missing_cards == (), outcome.summary()
    assert outcome.delivered == MESSAGES
    # Only turns that replied but were not yet recorded as finished when killed can show their card twice, and
    # a process runs at most LIMIT turns at once.
    assert len(outcome.duplicated_cards) <= LIMIT, outcome.summary()
    assert dict(outcome.resend_statuses) == {200: MESSAGES}, outcome.summary()
