"""`make run` installs what running needs; `make test` adds the test tools; CI runs `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _plan(target: str, tmp_path: Path) -> list[str]:
    """The commands `make TARGET` would run on a fresh machine (a new, empty venv folder)."""
    # Under `make test` the outer make's MAKEFLAGS/MAKELEVEL would make this one print "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTEST_ARGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_run_installs_only_the_runtime_quietly(tmp_path: Path) -> None:
    plan = _plan("run", tmp_path)
    installs = [line for line in plan if "pip install" in line and "--upgrade pip" not in line]
    assert len(installs) == 1 and installs[0].endswith(" -e .") and "[dev]" not in installs[0]
    assert installs[0].startswith("PYTHONWARNINGS=ignore ")  # no setuptools editable-install banner
    assert plan[-1].endswith("/bin/kebiao serve")


def test_make_test_installs_the_dev_tools_and_runs_pytest(tmp_path: Path) -> None:
    plan = _plan("test", tmp_path)
    assert any("pip install" in line and "'.[dev]'" in line for line in plan)
    assert plan[-1].endswith("-m pytest -q ")


def test_ci_runs_make_test() -> None:
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").rstrip().endswith("make test")
