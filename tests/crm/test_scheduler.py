"""The scheduled CRM sync: one job under a fixed id, run with an explicit `now`, failures logged not raised."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler import JOB_CRM_SYNC, add_crm_job

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_crm_job_runs_the_sync_with_now_and_survives_errors(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = AsyncIOScheduler()
    seen: list[datetime] = []

    async def run(now: datetime) -> SimpleNamespace:
        seen.append(now)
        if len(seen) == 2:
            raise RuntimeError("boom")
        return SimpleNamespace(error="zoho token refresh: invalid_code; generate a new one")

    scheduler.start(paused=True)
    try:
        add_crm_job(scheduler, run, 15, clock=lambda: NOW)
        add_crm_job(scheduler, run, 15, clock=lambda: NOW)  # adding twice never doubles the job
        (job,) = scheduler.get_jobs()
    finally:
        scheduler.shutdown(wait=False)
    assert job.id == JOB_CRM_SYNC and job.trigger.interval.total_seconds() == 900
    await job.func()
    await job.func()
    assert seen == [NOW, NOW]
    assert "crm sync job" in caplog.text and "invalid_code" in caplog.text and "boom" in caplog.text
