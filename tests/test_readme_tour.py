"""The README's tour runs as written: every line of its shell block, in order, against a temporary database."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TOUR_HEADING = "## A short tour"


def tour_commands(readme: str) -> list[str]:
    """The command lines of the first ```sh block after the tour heading (comments and blanks left out)."""
    section = readme.split(TOUR_HEADING, 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the tour has no ```sh block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def tour_dir(tmp_path: Path) -> Path:
    """A folder laid out like the repository for the tour: examples/ and a .venv/bin/kebiao that runs this code."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    kebiao = bin_dir / "kebiao"
    kebiao.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cli "$@"\n', encoding="utf-8")
    kebiao.chmod(0o755)
    return tmp_path


def test_the_tour_uses_only_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"examples/[\w.-]+", text))
    assert {"examples/taxonomy.yaml", "examples/chat-export.txt", "examples/customers.csv"} <= named
    assert all((ROOT / name).is_file() for name in named), sorted(n for n in named if not (ROOT / n).is_file())
    assert "../shared" not in text and "my-taxonomy.yaml" not in text and "exported-chat.txt" not in text


def test_every_tour_command_runs_as_written(tour_dir: Path) -> None:
    commands = tour_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 10
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KEBIAO_", "MICROSOFT_", "WECOM_")) and key not in ("HOST", "PORT")
    }
    env["KEBIAO_DATABASE_URL"] = f"sqlite+aiosqlite:///{tour_dir / 'data' / 'kebiao.db'}"
    outputs: dict[str, str] = {}
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", f"set -euo pipefail\n{command}"],
            cwd=tour_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"{command}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr}"
        outputs[command] = done.stdout

    def output(fragment: str) -> str:
        return next(out for command, out in outputs.items() if fragment in command)

    assert "询价客户" in output("suggest --text")
    assert "examples/taxonomy.yaml: valid: 5 dimensions" in output("taxonomy validate")
    lines = (tour_dir / "tags.jsonl").read_text(encoding="utf-8").splitlines()
    chat = (tour_dir / "examples" / "chat-export.txt").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == chat
    # step 1 tags with the taxonomy in force, storing the built-in one as version 1 on first use
    assert "taxonomy version 2 is current (examples/taxonomy.yaml)" in output("taxonomy import")
    assert "dry run" in output("--dry-run").lower() and "created 3" in output("--dry-run")
    shown = output("customers show")
    assert "杭州云帆科技" in shown and "VIP客户" in shown and "industry: SaaS" in shown
    assert "by import via import" not in shown
    assert "manager (华东)" in output("users set-role")
    assert "tag health at" in output("reports tags")
    again = subprocess.run(
        [".venv/bin/kebiao", "taxonomy", "import", "examples/taxonomy.yaml"],
        cwd=tour_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stdout.startswith("no change:"), again.stdout + again.stderr
