"""CPU time from /proc: a process's, all processes of one name's (PostgreSQL's backends), the whole host's.

The benches print CPU beside throughput and latency: on a shared host whose speed drifts, CPU per turn says what
a turn costs, where a rate also says how busy the neighbours were.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def process_cpu(pid: int, *, reaped_children: bool = False) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc; None where it cannot be read.

    `reaped_children`: add what its children that exited and were waited for used (cutime, cstime).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def named_cpu(*names: str) -> dict[str, float]:
    """CPU seconds used by the processes of this host whose command is each of `names` (postgres, haproxy), in
    one walk over /proc.

    Their reaped children count too: a PostgreSQL backend that exits during a run (the killed replica's
    connections close) leaves the live processes, and its CPU moves into the postmaster's children's time.
    """
    totals = dict.fromkeys(names, 0.0)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "comm").read_text(encoding="ascii", errors="replace").strip()
            except OSError:
                continue
            if command in totals:
                totals[command] += process_cpu(int(entry.name), reaped_children=True) or 0.0
    return totals


def _host_ticks() -> list[int]:
    """The host's first /proc/stat line: user, nice, system, idle, iowait, irq, softirq, steal, …"""
    return [int(v) for v in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]


def host_cpu() -> tuple[float, float]:
    """CPU seconds every core of this host spent busy (not idle, not waiting for I/O), and of those, the seconds
    the hypervisor gave this virtual machine's cores to others while they had work (steal); one read of /proc/stat."""
    ticks = _host_ticks()
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / tick, (ticks[7] / tick if len(ticks) > 7 else 0.0)


def machine_cpu() -> float:
    """CPU seconds every core of this host spent busy (not idle, not waiting for I/O), from /proc/stat."""
    return host_cpu()[0]


class CpuClock:
    """CPU seconds used by this process and, when asked, by this host's PostgreSQL processes (its backends)."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres

    def now(self) -> tuple[float, float]:
        """(this process's CPU seconds so far, PostgreSQL's; 0.0 when not counted)."""
        return time.process_time(), named_cpu("postgres")["postgres"] if self.postgres else 0.0

    def since(self, before: tuple[float, float]) -> tuple[float, float]:
        """CPU seconds of each since `before` (a `now()`)."""
        here, postgres = self.now()
        return here - before[0], postgres - before[1]
