"""The Teams turn benchmark's CPU line: per-turn figures of each side, and which database's CPU is counted."""

from __future__ import annotations

import time

from bench.cpu import CpuClock
from bench.teams import cpu_line, local_postgres


def test_the_cpu_line_gives_each_sides_cpu_per_turn_and_the_ratio_of_the_totals() -> None:
    line = cpu_line(100, (0.2, 0.05), (0.1, 0.01), postgres=True)
    assert "teams 2.00 ms here + 0.50 ms PostgreSQL, baseline 1.00 + 0.10 ms" in line
    assert line.endswith("baseline/teams 0.440")
    line = cpu_line(100, (0.2, 0.0), (0.1, 0.0), postgres=False)
    assert line == "CPU per turn (this process): teams 2.00 ms, baseline 1.00 ms; baseline/teams 0.500"


def test_only_a_postgresql_server_on_this_host_is_counted() -> None:
    assert local_postgres("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    assert local_postgres("postgresql+asyncpg://postgres@localhost/test")
    assert local_postgres("postgresql+asyncpg:///test")  # a Unix socket
    assert not local_postgres("postgresql+asyncpg://postgres@db.example.com/test")
    assert not local_postgres("sqlite+aiosqlite:///bench.db")


def test_the_clock_counts_this_process_and_leaves_postgresql_out_when_told() -> None:
    clock = CpuClock(postgres=False)
    before = clock.now()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass  # burn a little CPU to be counted
    here, postgres = clock.since(before)
    assert here >= 0.05
    assert postgres == 0.0
