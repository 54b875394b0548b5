"""What the tag-count triggers cost a write: `python -m bench counts [--held K] [--writes N] [--postgres URL]`.

One customer holds K active tags in a dimension; each write adds (then, separately, removes) one tag of that
dimension in its own committed transaction. Run against the triggers as migration 0017 wrote them (one change
row per pair; a removal recomputes every pair of the dimension) and as they are now (migration 0021: one row
listing the other tags), alternating in the same process and database, on a fresh SQLite file and, when
reachable, a scratch PostgreSQL database. Prints ms per committed write (median of the rounds), change rows per
write and, on PostgreSQL, bytes of write-ahead log per write. Nothing is asserted; tests/storage/test_tag_counts.py
checks the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.scratch import scratch_postgres
from storage.database import migration_module, open_database

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
ROUNDS = 3
ADD = (
    "INSERT INTO tag_assignments (customer_id, dimension, tag_key, tag, state, source, assigned_by, assigned_at)"
    " VALUES (1, 'product', :key, :key, 'active', 'manual', 'bench', CURRENT_TIMESTAMP)"
)
REMOVE = (
    "UPDATE tag_assignments SET state = 'removed', ended_at = CURRENT_TIMESTAMP"
    " WHERE customer_id = 1 AND tag_key = :key AND state = 'active'"
)


@dataclass(frozen=True, slots=True)
class Cost:
    """One kind of write under one set of triggers: ms per committed write, change rows and WAL bytes per write."""

    ms: float
    rows: float
    wal: float | None


async def _use(engine: AsyncEngine, triggers: ModuleType, names: Sequence[str]) -> None:
    """Install one migration's trigger bodies (the `others` column stays; 0017's bodies leave it NULL); `names`:
    the SQLite triggers to replace."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for ddl in (triggers.PG_INSERT, triggers.PG_DELETE, triggers.PG_UPDATE):
                await conn.execute(text(ddl))
        else:
            for name in names:
                await conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            for ddl in triggers.SQLITE_TRIGGERS:
                await conn.execute(text(ddl))


async def _reset(engine: AsyncEngine, held: int) -> None:
    """The customer holds exactly `held` tags `h0000…`; the change log is empty."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM tag_assignments"))
        await conn.execute(text("DELETE FROM tag_count_changes"))
        for i in range(held):
            await conn.execute(text(ADD), {"key": f"h{i:04d}"})
        await conn.execute(text("DELETE FROM tag_count_changes"))


async def _wal(engine: AsyncEngine) -> int | None:
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))).scalar_one())


async def _timed(engine: AsyncEngine, statement: str, keys: list[str]) -> Cost:
    """Each key in its own committed transaction."""
    wal = await _wal(engine)
    started = time.perf_counter()
    for key in keys:
        async with engine.begin() as conn:
            await conn.execute(text(statement), {"key": key})
    ms = (time.perf_counter() - started) / len(keys) * 1000
    after = await _wal(engine)
    async with engine.connect() as conn:
        rows = int((await conn.execute(text("SELECT count(*) FROM tag_count_changes"))).scalar_one())
    return Cost(ms, rows / len(keys), None if wal is None or after is None else (after - wal) / len(keys))


async def _round(engine: AsyncEngine, held: int, writes: int) -> tuple[Cost, Cost]:
    """Adds while holding `held` (one new tag at a time, removed again), then removals of held tags."""
    await _reset(engine, held)
    adds: list[Cost] = []
    for i in range(writes):  # each add is removed again, so every add sees the same `held`
        adds.append(await _timed(engine, ADD, [f"n{i:04d}"]))
        async with engine.begin() as conn:
            await conn.execute(text(REMOVE), {"key": f"n{i:04d}"})
            await conn.execute(text("DELETE FROM tag_count_changes"))
    add = Cost(
        statistics.fmean(c.ms for c in adds),
        statistics.fmean(c.rows for c in adds),
        None if adds[0].wal is None else statistics.fmean(c.wal or 0 for c in adds),
    )
    await _reset(engine, held + writes)  # removing `writes` tags passes from held + writes down to held
    remove = await _timed(engine, REMOVE, [f"h{i:04d}" for i in range(writes)])
    return add, remove


def _median(costs: list[Cost]) -> Cost:
    wal = [c.wal for c in costs if c.wal is not None]
    return Cost(
        statistics.median(c.ms for c in costs),
        statistics.median(c.rows for c in costs),
        statistics.median(wal) if wal else None,
    )


async def measure(url: str, held: int, writes: int) -> list[str]:
    """Old and new triggers alternating, ROUNDS rounds each; a line per kind of write and a ratio line."""
    database = await open_database(url)
    engine = database.engine
    new = migration_module("0021")
    old = new.PREVIOUS  # the 0017 module 0021 restores on downgrade
    results: dict[str, list[tuple[Cost, Cost]]] = {"one row per pair (0017)": [], "listed (now)": []}
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO customers (id, name, name_key, company, owner, region, attributes, created_at,"
                    " updated_at) VALUES (1, 'bench', 'bench', '', '', '', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        for _ in range(ROUNDS):
            for label, triggers in zip(results, (old, new), strict=True):
                await _use(engine, triggers, new.SQLITE_TRIGGER_NAMES)
                results[label].append(await _round(engine, held, writes))
    finally:
        await database.close()
    lines = []
    medians = {label: (_median([a for a, _ in r]), _median([d for _, d in r])) for label, r in results.items()}
    for label, (add, remove) in medians.items():
        wal = "" if add.wal is None or remove.wal is None else f", WAL {add.wal:,.0f} / {remove.wal:,.0f} B"
        lines.append(
            f"  {label:24} add {add.ms:6.2f} ms, remove {remove.ms:6.2f} ms per committed write;"
            f" change rows {add.rows:.0f} / {remove.rows:.0f}{wal}"
        )
    (old_add, old_remove), (new_add, new_remove) = medians.values()
    lines.append(
        f"  now / 0017 time: add {new_add.ms / old_add.ms:.2f}, remove {new_remove.ms / old_remove.ms:.2f}"
    )
    return lines


def main(argv: Sequence[str]) -> int:
    """Print the per-write cost of the tag-count triggers, then and now, on SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser(prog="python -m bench counts", description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=140, help="tags the customer holds in the dimension")
    parser.add_argument("--writes", type=int, default=100, help="writes per round")
    parser.add_argument("--postgres", default=POSTGRES_DEFAULT, help="server for the scratch database")
    options = parser.parse_args(argv)
    held, writes = options.held, options.writes
    print(f"tag-count triggers, customer holding {held} tags in the dimension, {writes} writes x {ROUNDS}")
    with tempfile.TemporaryDirectory() as folder:
        print("SQLite:")
        print("\n".join(asyncio.run(measure(f"sqlite+aiosqlite:///{folder}/counts.db", options.held, options.writes))))
    try:
        lines = asyncio.run(_postgres(options.postgres, options.held, options.writes))
    except OSError as exc:
        print(f"PostgreSQL: not reachable at {options.postgres} ({exc}); skipped")
        return 0
    print("PostgreSQL:")
    print("\n".join(lines))
    return 0


async def _postgres(server: str, held: int, writes: int) -> list[str]:
    async with scratch_postgres(server, "kebiao_counts") as url:
        return await measure(url, held, writes)
