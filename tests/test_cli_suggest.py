"""`kebiao suggest` through a real subprocess: JSON lines in input order, workers, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
# Without --taxonomy, suggest reads the database's taxonomy (the built-in one on first use): a scratch SQLite file.
_SCRATCH = Path(tempfile.mkdtemp(prefix="kebiao-suggest-"))


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "suggest", *args],
        input=stdin,
        env={**os.environ, "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{_SCRATCH / 'k.db'}"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_stdin_lines_become_json_lines_in_order() -> None:
    lines = ["请给我报价", "我不需要退款", "", "设备坏了，很紧急", "周末愉快"]
    result = _run(stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == lines
    assert rows[0]["tags"] == [
        {
            "tag": "询价客户",
            "dimension": "stage",
            "matched": ["报价"],
            "score": 0.9,
            "action": "suggest",
            "source": "keyword",
        }
    ]
    assert rows[1]["tags"] == [] and rows[4]["tags"] == []
    assert [t["tag"] for t in rows[3]["tags"]] == ["售后工单", "紧急工单"]
    assert "报价" in result.stdout.splitlines()[0]  # ensure_ascii=False


def test_text_option() -> None:
    result = _run("--text", "我要投訴")
    assert result.returncode == 0, result.stderr
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["tags"][0]["tag"] == "紧急工单" and row["tags"][0]["action"] == "apply"


def test_workers_keep_input_order() -> None:
    lines = [f"第{i}条：{'请报价' if i % 3 == 0 else '收到，谢谢'}" for i in range(5000)]
    single = _run(stdin="\n".join(lines) + "\n")
    double = _run("--workers", "2", stdin="\n".join(lines) + "\n")
    assert single.returncode == double.returncode == 0, double.stderr
    assert double.stdout == single.stdout
    rows = [json.loads(line) for line in double.stdout.splitlines()]
    assert [r["text"] for r in rows] == lines
    assert sum(1 for r in rows if r["tags"]) == len(range(0, 5000, 3))


def test_custom_taxonomy_file(tmp_path: Path) -> None:
    path = tmp_path / "mini.yaml"
    path.write_text(
        "version: 1\ndimensions:\n  - key: stage\n    name: 阶段\n    tags:\n"
        "      - name: 样品需求\n        keywords: [样品, sample]\n        auto_apply: true\n",
        encoding="utf-8",
    )
    result = _run("--taxonomy", str(path), "--text", "能寄个样品吗")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tags"][0]["tag"] == "样品需求"


def test_bad_taxonomy_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    body = "version: 1\ndimensions:\n  - key: Stage!\n    name: 阶段\n    tags: []\n"
    path.write_text(body, encoding="utf-8")
    result = _run("--taxonomy", str(path), "--text", "报价")
    assert result.returncode == 1
    assert result.stdout == ""
    assert str(path) in result.stderr and "refused" in result.stderr


def test_missing_taxonomy_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _run("--taxonomy", str(tmp_path / "nope.yaml"), "--text", "报价")
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr


def test_workers_must_be_positive() -> None:
    result = _run("--workers", "0", "--text", "报价")
    assert result.returncode == 2
    assert "--workers" in result.stderr


def test_a_leading_byte_order_mark_is_dropped() -> None:
    result = _run(stdin="\ufeff报价单发我一下\n\ufeff第二行保留原样\n")
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first["text"] == "报价单发我一下" and [t["tag"] for t in first["tags"]] == ["询价客户"]
    assert second["text"] == "\ufeff第二行保留原样"  # only the stream's first character is a BOM
