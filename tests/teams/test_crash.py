"""Kill -9 `kebiao serve` mid-burst to a linked chat, restart, resend: every message tagged once, every card out."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chat.turns import LIMIT
from tests.teams.crash_harness import crash_run

pytestmark = pytest.mark.slow

MESSAGES = 48
CONCURRENCY = 16  # requests in flight: more than the server runs at once, so some wait for a turn slot
KILL_AFTER = 12  # cards delivered before the kill: turns are in flight at every stage



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
