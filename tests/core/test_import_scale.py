"""Bulk imports stay all or nothing: a crm_id taken meanwhile is a clear row problem, kill -9 changes nothing."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from bench.imports import write_customers
from cli.progress import ProgressBar
from core.importing.customers import import_customers
from core.importing.files import CustomerRow, ImportFileError
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules
from storage.database import Database, create_engine
from storage.repositories import SqlUnitOfWork
from tagging.taxonomy import Taxonomy
from tests.core.test_import_concurrency import _Hooked, _Watched

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 4, 1, 10, 0, tzinfo=SHANGHAI)
RULES = TaggingRules(tz=SHANGHAI)
ROOT = Path(__file__).resolve().parents[2]


class _AfterLookup(_Hooked):
    """Runs the hook right after the import looked the file's customers up (so it saw them absent)."""

    async def __aenter__(self) -> SqlUnitOfWork:
        uow = await self.inner.__aenter__()
        if self.hook is not None:
            hook, lookup = self.hook, uow.customers.find_for_import_many

            async def find(drafts: Sequence[CustomerDraft], limit: int = 5) -> list[list[Any]]:
                found = await lookup(drafts, limit)
                await hook()
                return found

            uow.customers.find_for_import_many = find  # type: ignore[method-assign]
        return uow


class _Racing(_Watched):
    def unit_of_work(self, read_only: bool = False) -> Any:
        return _AfterLookup(self.database.unit_of_work(read_only), self.while_planning if read_only else None)


async def test_a_crm_id_stored_while_the_file_is_checked_is_a_clear_row_problem(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    async def another_writer() -> None:
        async with database.unit_of_work() as uow:
            if not await uow.customers.find_exact("C-00005"):
                await uow.customers.add(CustomerDraft(name="同步来的客户", crm_id="C-00005"), NOW)

    rows = [CustomerRow(row=i + 2, name=f"客户{i:05d}", crm_id=f"C-{i:05d}", tags=("VIP客户",)) for i in range(20)]
    with pytest.raises(ImportFileError) as refused:
        await import_customers(_Racing(database, another_writer), sample_taxonomy, RULES, rows, actor="a", now=NOW)
    [problem] = refused.value.problems
    assert problem.column == "crm_id" and "while the file was being checked" in problem.reason
    assert "import the file again" in problem.reason
    if database.engine.dialect.name == "postgresql":  # PostgreSQL names the value, so the row is found
        assert problem.row == 7 and "'C-00005'" in problem.reason
    async with database.unit_of_work(read_only=True) as uow:
        assert [c.name for c in await uow.customers.find_exact("C-00005")] == ["同步来的客户"]
        assert await uow.customers.find_exact("C-00004") == []  # nothing of the file was written
    summary = await import_customers(database, sample_taxonomy, RULES, rows, actor="a", now=NOW)
    assert (summary.created, summary.updated) == (19, 1)  # importing again updates that customer


def _count(url: str) -> tuple[int, int, int]:
    async def count() -> tuple[int, int, int]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                counts = [
                    int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
                    for table in ("customers", "tag_assignments", "tag_events")
                ]
                return counts[0], counts[1], counts[2]
        finally:
            await engine.dispose()

    return asyncio.run(count())


def _cli(url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KEBIAO_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_import_killed_while_writing_leaves_the_database_as_it_was(database_url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    write_customers(first, 50)
    write_customers(second, 20_000, prefix="NEW")
    done = _cli(database_url, "customers", "import", str(first))
    assert done.wait(timeout=120) == 0, done.communicate()
    before = _count(database_url)
    assert before[0] == 50
    child = _cli(database_url, "customers", "import", str(second))
    assert child.stderr is not None
    # Without a terminal each finished phase prints one line: "checking: …" is printed as writing begins.
    for line in child.stderr:
        if line.startswith("checking:"):
            child.send_signal(signal.SIGKILL)
            break
    assert child.wait(timeout=120) == -signal.SIGKILL
    assert _count(database_url) == before
    done = _cli(database_url, "customers", "import", str(second))  # and the same file imports fine afterwards
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "created 20000" in out and _count(database_url)[0] == 20_050


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_one_line_per_phase_otherwise() -> None:
    plain = io.StringIO()
    bar = ProgressBar(plain)
    for done in (0, 500, 1000):
        bar("reading", done, 1000)
    bar("writing", 1000, 1000)
    bar.finish()
    lines = plain.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == ["reading: 1,000 of 1,000 rows", "writing: 1,000 of 1,000 rows"]
    terminal = _Terminal()
    bar = ProgressBar(terminal)
    bar("reading", 500, 1000)
    bar.finish()
    drawn = terminal.getvalue()
    assert drawn.startswith("\rreading   [###############...............]  50% 500/1,000 rows") and drawn.endswith("\n")
