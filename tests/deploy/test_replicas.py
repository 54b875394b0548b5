"""deploy/ as shipped: three real `kebiao serve` behind HAProxy (deploy/haproxy.cfg) on one PostgreSQL database.

A short `bench replicas` run: messages through HAProxy with one replica killed by SIGKILL half way, every
scheduler on. KEBIAO_TEST_HAPROXY set (CI): a missing HAProxy fails this test. Unset: it is skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.cpu import host_cpu, process_cpu
from bench.replicas import (
    BACKGROUND_TAGS,
    HAPROXY_CONFIG,
    Phase,
    background,
    cpu_line,
    haproxy_path,
    host_windows,
    percentile,
    replica_run,
    with_host_samples,
)
from bench.scratch import scratch_postgres
from core.chat.turns import LIMIT
from core.records import CustomerDraft
from storage.database import open_database
from tests.conftest import postgres_url

pytestmark = pytest.mark.postgres


def _haproxy() -> str:
    binary = haproxy_path()
    if binary is None:
        message = "HAProxy not found; install it with `apt-get install -y haproxy`"
        if os.environ.get("KEBIAO_TEST_HAPROXY"):
            pytest.fail(message)
        pytest.skip(message + " (set KEBIAO_TEST_HAPROXY=1 to make this a failure)")
    return binary


def _check(binary: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CONFIG)], env={**os.environ, **env}, capture_output=True, text=True
    )


def test_shipped_config_is_valid_with_its_addresses_and_refused_without() -> None:
    binary = _haproxy()
    addresses = {f"KEBIAO_REPLICA_{n}": f"127.0.0.1:{3977 + n}" for n in (1, 2, 3)}
    valid = _check(binary, {"KEBIAO_BIND": "127.0.0.1:8443", "KEBIAO_BIND_OPTIONS": "", **addresses})
    assert valid.returncode == 0, valid.stdout + valid.stderr
    unset = {k: v for k, v in os.environ.items() if not k.startswith("KEBIAO_")}
    missing = subprocess.run([binary, "-c", "-f", str(HAPROXY_CONFIG)], env=unset, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "bind" in missing.stderr and "server" in missing.stderr


def test_systemd_unit_sets_the_port_per_instance_and_reads_the_environment_file() -> None:
    unit = (HAPROXY_CONFIG.parent / "kebiao@.service").read_text(encoding="utf-8")
    assert "Environment=PORT=%i" in unit
    assert "EnvironmentFile=/etc/kebiao/kebiao.env" in unit
    example = (HAPROXY_CONFIG.parent / "kebiao.env.example").read_text(encoding="utf-8")
    assert "KEBIAO_DATABASE_URL=postgresql+asyncpg://" in example
    # EnvironmentFile= overrides Environment=: a PORT in the shared file would put every instance on one port
    assert not any(line.startswith("PORT=") for line in example.splitlines())
    guide = (HAPROXY_CONFIG.parent.parent / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert unit in guide  # the guide shows the shipped unit, not a copy that drifts


async def test_three_replicas_lose_no_acknowledged_message_and_send_each_alert_once(tmp_path: Path) -> None:
    _haproxy()
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable at the default URL and KEBIAO_TEST_POSTGRES_URL is unset")
    # Customers already in the database, as in `bench replicas`: none of them gets an alert or a message.
    outcome = await replica_run(
        url, tmp_path, rate=8, duration=5, kill_at=2.5, conversations=4, warmup=0, customers=300
    )
    assert outcome.killed
    assert outcome.acked > 0
    assert outcome.lost_acked == (), outcome.summary()
    assert outcome.tagged_once == outcome.messages, outcome.summary()
    assert outcome.untagged == () and outcome.tagged_twice == (), outcome.summary()
    # A turn the killed replica had answered with its card but not yet recorded as finished sends the card again
    # when it is retried (docs/security.md): at most LIMIT turns run at once in the one replica killed.
    assert len(outcome.cards_twice) <= LIMIT, outcome.summary()
    assert outcome.alerts == 6, outcome.summary()  # one expiry digest per owner (5) and the manager
    assert outcome.alerts_unsent == (), outcome.summary()
    assert outcome.alert_sends == outcome.alerts and outcome.alert_extra_sends == 0, outcome.summary()
    assert dict(outcome.statuses) == {200: outcome.messages}, outcome.summary()


def test_a_phase_reports_the_p99_of_each_window_and_drops_a_last_stub() -> None:
    phase = Phase("through HAProxy")
    phase.timed = [(k / 100, 10.0) for k in range(1000)] + [(10 + k / 100, 10.0 + k) for k in range(1000)]
    phase.timed.append((20.0, 900.0))  # the run's last message, alone in a third window
    phase.http = [ms for _, ms in phase.timed]
    assert phase.windows() == [10.0, percentile([10.0 + k for k in range(1000)], 0.99)]
    assert "http p99 per 10 s: 10, 1000 ms" in phase.lines()[-1]


def test_a_phase_reports_the_slowest_message_sent_around_the_kill() -> None:
    phase = Phase("through HAProxy")
    phase.timed = [(k / 100, 10.0) for k in range(6000)]
    phase.timed[3010] = (30.1, 412.0)  # in flight on the killed replica, retried elsewhere
    phase.timed[3500] = (35.0, 900.0)  # slow for another reason, seconds later
    assert phase.near(30.0) == f"  {'':<30} sent within 1 s of the kill: 201, the slowest answered in 412.0 ms"
    assert phase.near(90.0).endswith("sent within 1 s of the kill: 0, the slowest answered in none")


def test_a_phase_reports_the_host_cores_busy_and_stolen_in_each_window() -> None:
    samples = [(100.0, 50.0, 3.0), (110.0, 62.0, 3.0), (120.0, 80.0, 5.0)]
    phase = Phase("through HAProxy", host=host_windows(samples))
    assert phase.host == [(1.2, 0.0), (1.8, 0.2)]
    assert phase.lines()[-1].endswith("host cores busy per 10 s: 1.20, 1.80 (stolen by the hypervisor: 0.00, 0.20)")


def test_the_host_is_sampled_at_every_window_and_the_kill_still_happens() -> None:
    samples: list[tuple[float, float, float]] = []
    killed: list[bool] = []
    events = with_host_samples(60.0, samples, {30.0: lambda: killed.append(True)})
    assert sorted(events) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    for second in sorted(events):
        events[second]()
    assert killed == [True] and len(samples) == 6
    busy, stolen = host_cpu()
    assert busy >= stolen >= 0.0


def test_the_cpu_line_reads_this_process_and_says_which_replica_was_killed() -> None:
    before = process_cpu(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass  # burn a little CPU to be counted
    after = process_cpu(os.getpid())
    assert before is not None and after is not None and after > before
    assert process_cpu(2**22 + 1) is None  # above Linux's pid limit: no such process
    line = cpu_line(
        {"kebiao1": 1.0, "kebiao2": 1.0, "postgres": 5.0, "haproxy": 0.0, "bench": 2.0, "host": 10.0},
        {"kebiao1": 7.0, "kebiao2": 2.5, "postgres": 11.0, "haproxy": 0.3, "bench": 3.2, "host": 40.0},
        20.0,
        ["kebiao2"],
    )
    assert "replicas 0.30, 0.07 (killed); PostgreSQL 0.30; HAProxy 0.01; load and fake connector 0.06" in line
    assert f"host 1.50 of {os.cpu_count()}" in line


def test_a_child_that_exited_still_counts_in_its_parents_cpu() -> None:
    before = process_cpu(os.getpid(), reaped_children=True)
    busy = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", busy], check=True)  # exits and is waited for
    after = process_cpu(os.getpid(), reaped_children=True)
    assert before is not None and after is not None and after - before >= 0.15


async def test_the_background_customers_are_counted_and_analyzed_as_a_deployments() -> None:
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable at the default URL and KEBIAO_TEST_POSTGRES_URL is unset")
    async with scratch_postgres(url, "kebiao_background") as scratch:
        database = await open_database(scratch)
        try:
            await background(scratch, 120, 40, datetime.now(UTC))
            async with database.unit_of_work() as uow:  # new rows take ids after the loaded ones
                added = await uow.customers.add(CustomerDraft(name="新客户"), datetime.now(UTC))
            async with database.engine.connect() as conn:
                held = (await conn.execute(text(
                    "SELECT count(*), count(DISTINCT customer_id), count(DISTINCT (customer_id, tag_key)) "
                    "FROM tag_assignments WHERE state = 'active' AND expires_at IS NULL"
                ))).one()
                counted = (await conn.execute(text("SELECT count(*), min(n), max(n) FROM customer_tag_counts"))).one()
                analyzed = await conn.scalar(text(
                    "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'tag_assignments'"
                ))
                owners = await conn.scalar(text("SELECT count(*) FROM customers WHERE owner <> ''"))
        finally:
            await database.close()
    assert tuple(held) == (120 * BACKGROUND_TAGS, 120, 120 * BACKGROUND_TAGS)
    assert tuple(counted) == (120, BACKGROUND_TAGS, BACKGROUND_TAGS)  # as the tag-count triggers keep them
    assert analyzed and owners == 0 and added.id == 121
