"""`kebiao learn …`, `kebiao suggest` and `kebiao taxonomy add-keywords` through the real CLI, on SQLite and
PostgreSQL (a fresh database each: the CLI takes a plain URL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagging.loader import dump_taxonomy
from tests.conftest import build_sample_taxonomy
from tests.learning.support import messages

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]



def _kebiao(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEBIAO_")}
    env.update(KEBIAO_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=180,
    )


def _history(path: Path) -> None:
    names = {"price": ["询价客户"], "repair": ["售后工单"], None: []}
    lines = [json.dumps({"text": t, "tags": names[k]}, ensure_ascii=False) for t, k in messages(240)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tags(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    [line] = result.stdout.splitlines()
    return [(t["tag"], t["source"]) for t in json.loads(line)["tags"]]


async def test_learn_end_to_end(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "tax.yaml").write_text(dump_taxonomy(build_sample_taxonomy()), encoding="utf-8")
    assert _kebiao(database_url, tmp_path, "taxonomy", "import", "tax.yaml").returncode == 0

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "能便宜点吗", "tags": ["询价客户"]}\n{oops\n{"text": "好", "tags": ["询价"]}\n', "utf-8")
    refused = _kebiao(database_url, tmp_path, "learn", "import", str(bad))
    assert refused.returncode == 1
    assert f"{bad}: line 2: not valid JSON" in refused.stderr
    assert f"{bad}: line 3: unknown tag '询价'" in refused.stderr and "nothing was stored" in refused.stderr
    empty = _kebiao(database_url, tmp_path, "learn", "status")
    assert empty.returncode == 0 and "no learned model yet; 0 examples stored" in empty.stdout
    untrained = _kebiao(database_url, tmp_path, "learn", "train")
    assert untrained.returncode == 1 and "no tag has enough data" in untrained.stderr
    assert "stage/询价客户: keyword-only (no examples yet)" in untrained.stderr

    _history(tmp_path / "history.jsonl")
    imported = _kebiao(database_url, tmp_path, "learn", "import", "history.jsonl")
    assert imported.returncode == 0 and "240 labelled texts imported" in imported.stdout, imported.stderr
    trained = _kebiao(database_url, tmp_path, "learn", "train")
    assert trained.returncode == 0, trained.stderr
    assert "model 1 trained on 122 texts (3600 examples)" in trained.stdout  # 240 lines, 122 distinct texts
    assert "stage/询价客户: learned" in trained.stdout and "value/VIP客户: keyword-only (too few" in trained.stdout
    status = _kebiao(database_url, tmp_path, "learn", "status")
    assert "model 1 (in use)" in status.stdout and "stage/售后工单: learned" in status.stdout

    question = "这个怎么卖，能便宜一点吗"
    assert _tags(_kebiao(database_url, tmp_path, "suggest", "--text", question)) == [("询价客户", "learned")]
    assert _tags(_kebiao(database_url, tmp_path, "suggest", "--taxonomy", "tax.yaml", "--text", question)) == []

    found = _kebiao(database_url, tmp_path, "learn", "keywords", "--tag", "询价客户")
    assert found.returncode == 0 and found.stdout.startswith("stage/询价客户 (")
    words = [line.split("\t")[0].strip() for line in found.stdout.splitlines() if "\tsupport " in line]
    assert "便宜" in words
    added = _kebiao(database_url, tmp_path, "taxonomy", "add-keywords", "询价客户", "便宜", "报价")
    assert added.returncode == 0, added.stderr
    assert "stage/询价客户 already has: 报价" in added.stdout and "version 2 is current" in added.stdout
    assert _tags(_kebiao(database_url, tmp_path, "suggest", "--text", question)) == [("询价客户", "keyword")]
    unknown = _kebiao(database_url, tmp_path, "taxonomy", "add-keywords", "询价户", "便宜")
    assert unknown.returncode == 1 and "no tag named '询价户'" in unknown.stderr

    gone = _kebiao(database_url, tmp_path, "learn", "forget", "--customer", "不存在的公司")
    assert gone.returncode == 1 and "no customer matches '不存在的公司'" in gone.stderr


def test_suggest_with_a_taxonomy_file_touches_no_database(tmp_path: Path) -> None:
    (tmp_path / "tax.yaml").write_text(dump_taxonomy(build_sample_taxonomy()), encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'never' / 'k.db'}"
    result = _kebiao(url, tmp_path, "suggest", "--taxonomy", "tax.yaml", "--text", "请给我报价")
    assert result.returncode == 0 and _tags(result) == [("询价客户", "keyword")]
    assert not (tmp_path / "never").exists()
    helped = _kebiao(url, tmp_path, "suggest", "--help")
    assert "taxonomy in force in the database" in " ".join(helped.stdout.split())
