"""The scheduler's routine lines: every-30-seconds jobs log at DEBUG, daily ones at INFO, times in the local zone."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scheduler import JOB_CHURN, JOB_EXPIRE, JOB_OUTBOX, _job
from tests.alerts.test_scheduler_cli import _jobs

NOW = datetime(2026, 12, 5, 22, 22, tzinfo=UTC)


async def _report(jobs: Any, now: datetime) -> str:
    return "sent 0"


@pytest.mark.parametrize(
    ("job_id", "level"), [(JOB_OUTBOX, logging.DEBUG), (JOB_EXPIRE, logging.DEBUG), (JOB_CHURN, logging.INFO)]
)
async def test_job_lines_log_at_their_level_in_local_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, job_id: str, level: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="scheduler")
    await _job(job_id, _report, _jobs(tmp_path), lambda: NOW)()
    [record] = [r for r in caplog.records if r.name == "scheduler"]
    assert record.levelno == level
    assert record.getMessage() == f"alert job {job_id} at 2026-12-06T06:22:00+08:00: sent 0"
