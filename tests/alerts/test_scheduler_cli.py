"""The scheduler's job table, KEBIAO_SCHEDULER=off, and `kebiao alerts run-once` run as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import create_async_engine

from app import ALERT_SCHEDULER, create_app
from config import AlertSettings, Settings
from core.alerts.jobs import AlertJobs
from core.alerts.ports import NewOutboxMessage, OutboxState
from scheduler import (
    JOB_CHURN,
    JOB_EXPIRE,
    JOB_EXPIRY_WARNINGS,
    JOB_LEARN_PURGE,
    JOB_LEARN_TRAIN,
    JOB_MAINTENANCE,
    JOB_OUTBOX,
    JOB_RULE_TAGS,
    JOB_RULES,
    JOB_STARTUP,
    add_jobs,
    build_scheduler,
    configure_jobs,
)
from storage.channels import SqlChannelStore
from storage.database import open_database
from storage.outbox import SqlAlertStore
from tagging.builtin import load_builtin
from tests.alerts.conftest import NOW, seed
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi

ROOT = Path(__file__).resolve().parents[2]
DAILY = {JOB_EXPIRY_WARNINGS: (9, 0), JOB_CHURN: (9, 30), JOB_MAINTENANCE: (4, 0)}


def _jobs(tmp_path: Path) -> AlertJobs:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    engine = create_async_engine(settings.database_url)  # never connected: the scheduler is only inspected
    return configure_jobs(settings, SqlAlertStore(engine), load_builtin, {})


def _field(trigger: CronTrigger, name: str) -> str:
    return str(next(f for f in trigger.fields if f.name == name))


async def test_every_job_has_a_fixed_id_a_grace_time_and_runs_one_at_a_time(tmp_path: Path) -> None:
    jobs = _jobs(tmp_path)
    settings = AlertSettings(expire_every_minutes=15, outbox_every_seconds=30, run_at_start=True)
    scheduler = build_scheduler(jobs, settings, clock=lambda: NOW)
    scheduler.start(paused=True)
    try:
        table = {job.id: job for job in scheduler.get_jobs()}
        assert set(table) == {JOB_EXPIRE, JOB_EXPIRY_WARNINGS, JOB_CHURN, JOB_OUTBOX, JOB_MAINTENANCE, JOB_STARTUP}
        assert all(job.coalesce and job.max_instances == 1 for job in table.values())
        grace = {job_id: job.misfire_grace_time for job_id, job in table.items()}
        assert grace == {
            JOB_EXPIRE: 300,
            JOB_EXPIRY_WARNINGS: 3600,
            JOB_CHURN: 3600,
            JOB_OUTBOX: 60,
            JOB_MAINTENANCE: 3600,
            JOB_STARTUP: 300,
        }
        for job_id, (hour, minute) in DAILY.items():
            trigger = table[job_id].trigger
            assert isinstance(trigger, CronTrigger) and str(trigger.timezone) == "Asia/Shanghai"
            assert (_field(trigger, "hour"), _field(trigger, "minute")) == (str(hour), str(minute))
        expire, outbox = table[JOB_EXPIRE].trigger, table[JOB_OUTBOX].trigger
        assert isinstance(expire, IntervalTrigger) and expire.interval == timedelta(minutes=15)
        assert isinstance(outbox, IntervalTrigger) and outbox.interval == timedelta(seconds=30)
        assert table[JOB_STARTUP].next_run_time == NOW + timedelta(seconds=1)

        add_jobs(scheduler, jobs, settings, clock=lambda: NOW)  # replace_existing: adding again doubles nothing
        assert sorted(job.id for job in scheduler.get_jobs()) == sorted(table)
    finally:
        scheduler.shutdown(wait=False)


async def test_no_startup_job_unless_asked(tmp_path: Path) -> None:
    scheduler = build_scheduler(_jobs(tmp_path), AlertSettings(), clock=lambda: NOW)
    scheduler.start(paused=True)
    try:
        assert JOB_STARTUP not in {job.id for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)


async def test_the_app_runs_no_scheduler_when_switched_off(aiohttp_client: Any, tmp_path: Path) -> None:
    base = {"KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"}
    off = create_app(Settings.from_env({**base, "KEBIAO_SCHEDULER": "off"}, dotenv=None))
    client: TestClient = await aiohttp_client(off)
    assert off[ALERT_SCHEDULER] is None
    await client.close()

    on = create_app(Settings.from_env({**base, "KEBIAO_SCHEDULER": "on"}, dotenv=None))
    await aiohttp_client(on)
    scheduler = on[ALERT_SCHEDULER]
    assert isinstance(scheduler, AsyncIOScheduler) and scheduler.running
    assert {job.id for job in scheduler.get_jobs()} == {
        JOB_EXPIRE,
        JOB_EXPIRY_WARNINGS,
        JOB_CHURN,
        JOB_OUTBOX,
        JOB_MAINTENANCE,
        JOB_RULES,
        JOB_RULE_TAGS,
        JOB_LEARN_TRAIN,
        JOB_LEARN_PURGE,
    }


# ---------------------------------------------------------------- the CLI verb, as a subprocess


async def _kebiao(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    """Run `kebiao ARGV` in a child process; the event loop keeps serving the fake WeCom API meanwhile."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KEBIAO_", "WECOM_", "MICROSOFT_"))}
    clean["PYTHONPATH"] = str(ROOT) + os.pathsep + clean.get("PYTHONPATH", "")
    script = "import sys, cli; sys.exit(cli.main(sys.argv[1:]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *argv,
        env={**clean, **env},
        cwd=env.get("CWD", str(ROOT)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_run_once_delivers_wecom_and_leaves_teams_users_to_the_server(
    tmp_path: Path, fake_wecom: FakeWeComApi
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    database = await open_database(url)
    try:
        await seed(database)
        await SqlChannelStore(database.engine).save_reference(
            "msteams", "王经理", {"conversation": {"id": "a:personal-wang"}}, "tenant-1", NOW
        )
    finally:
        await database.close()
    env = {
        "KEBIAO_DATABASE_URL": url,
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_AGENT_ID": AGENT_ID,
        "WECOM_API_BASE": fake_wecom.api_base,
        "CWD": str(tmp_path),
    }

    rc, out, err = await _kebiao(env, "alerts", "run-once", "--now", "2025-03-10T09:00:00+08:00")

    assert rc == 0, err
    assert "alerts at 2025-03-10T09:00:00+08:00: expired 1 tag assignments" in out
    # The built-in rule 服务到期未续费 adds its own alert to the managers of 华东 (王经理 on Teams, 李总 on WeCom).
    assert "服务到期未续费: fired for 1, +0 tags, -0 tags, 2 notifications" in out
    assert "3 msteams alerts left pending" in out and "kebiao serve" in out
    assert "outbox: pending 3, sent 6" in out
    sent_to = sorted((c.body or {})["touser"] for c in fake_wecom.calls_to("message/send"))
    assert sent_to == ["小张", "小张", "小李", "李总", "李总", "李总"]  # 王经理 has Teams: not sent through WeCom


async def test_run_once_refuses_a_bad_now_with_a_clear_message(tmp_path: Path) -> None:
    env = {"KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", "CWD": str(tmp_path)}
    rc, out, err = await _kebiao(env, "alerts", "run-once", "--now", "下周一早上")
    assert rc == 2 and out == ""
    assert "'下周一早上' is not an ISO date-time; use e.g. 2025-03-01T09:00:00+08:00" in err
    assert not (tmp_path / "k.db").exists()  # refused before touching the database


async def test_unknown_alerts_are_listed_and_can_be_marked_sent_or_resent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    database = await open_database(url)
    try:
        store = SqlAlertStore(database.engine)
        async with store.unit_of_work() as uow:
            for n, who in enumerate(("王经理", "李总")):
                message = NewOutboxMessage(f"churn|1|{who}|p7-1", who, "msteams", {"title": f"高危流失预警 {n}"})
                await uow.outbox.enqueue(message, NOW)
            for claimed in await uow.outbox.claim(NOW, 2):
                await uow.outbox.mark_unknown(claimed.id, "sender stopped; outcome unknown")
    finally:
        await database.close()
    env = {"KEBIAO_DATABASE_URL": url, "CWD": str(tmp_path)}

    rc, out, err = await _kebiao(env, "alerts", "unknown")
    assert rc == 0 and "2 alerts with an unknown outcome" in err
    assert [line.split("\t")[:3] for line in out.splitlines()] == [["1", "msteams", "王经理"], ["2", "msteams", "李总"]]
    # when the uncertain send was claimed, in KEBIAO_TIMEZONE (Asia/Shanghai)
    assert "高危流失预警 0" in out and "2025-03-10T09:00:00+08:00" in out and NOW.hour == 1

    rc, out, err = await _kebiao(env, "alerts", "unknown", "--mark-sent", "1")
    assert rc == 0 and "alert 1 to 王经理 (msteams) marked sent" in out
    rc, out, err = await _kebiao(env, "alerts", "unknown", "--resend", "2")
    assert rc == 0 and "alert 2 to 李总 (msteams) queued for resending" in out
    rc, out, err = await _kebiao(env, "alerts", "unknown", "--resend", "1")
    assert rc == 1 and "outbox message 1 is sent, not unknown" in err
    rc, out, err = await _kebiao(env, "alerts", "unknown", "--resend", "99")
    assert rc == 1 and "outbox message 99 does not exist" in err

    database = await open_database(url)
    try:
        async with SqlAlertStore(database.engine).unit_of_work() as uow:
            first, second = await uow.outbox.get(1), await uow.outbox.get(2)
    finally:
        await database.close()
    assert first is not None and first.state is OutboxState.SENT
    assert second is not None and second.state is OutboxState.PENDING
