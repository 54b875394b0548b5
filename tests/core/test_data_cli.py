"""`kebiao db upgrade | taxonomy import/export | customers import | users set-role`; /readyz."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient

from app import create_app
from config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _kebiao(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KEBIAO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'k.db'}")
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


TAXONOMY = """\
version: 1
dimensions:
  - key: value
    name: 价值等级
    exclusive: true
    tags:
      - name: VIP客户
      - name: 普通客户
  - key: stage
    name: 需求阶段
    tags:
      - name: 询价客户
        keywords: [报价, 询价]
"""


def test_cli_verbs_end_to_end(tmp_path: Path) -> None:
    up = _kebiao(tmp_path, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    (tmp_path / "tax.yaml").write_text(TAXONOMY, encoding="utf-8")
    imp = _kebiao(tmp_path, "taxonomy", "import", "tax.yaml")
    assert imp.returncode == 0 and "version 1" in imp.stdout, imp.stderr
    out = _kebiao(tmp_path, "taxonomy", "export", "--format", "json")
    assert out.returncode == 0 and "询价客户" in out.stdout
    good = "name,company,crm_id,tags\n上海明远科技,明远,C-1,VIP客户;询价客户\n杭州云栖,云栖,C-2,普通客户\n"
    (tmp_path / "c.csv").write_text(good, encoding="utf-8")
    dry = _kebiao(tmp_path, "customers", "import", "c.csv", "--dry-run")
    assert dry.returncode == 0 and "created 2" in dry.stdout, dry.stderr
    first = _kebiao(tmp_path, "customers", "import", "c.csv")
    assert "created 2" in first.stdout and "tags applied 3" in first.stdout, first.stderr
    second = _kebiao(tmp_path, "customers", "import", "c.csv")
    assert "created 0, updated 0, unchanged 2, tags applied 0" in second.stdout
    (tmp_path / "bad.csv").write_text("name,tags\n北京远航,不存在标签\n", encoding="utf-8")
    bad = _kebiao(tmp_path, "customers", "import", "bad.csv")
    assert bad.returncode == 1 and "row 2, column tags: unknown tag '不存在标签'" in bad.stderr
    role = _kebiao(tmp_path, "users", "set-role", "u-1", "manager", "--region", "华东")
    assert role.returncode == 0 and "manager (华东)" in role.stdout
    wrong = _kebiao(tmp_path, "users", "set-role", "u-1", "boss")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


async def test_readyz_checks_database_and_taxonomy(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'data' / 'k.db'}")
    client: TestClient = await aiohttp_client(create_app(settings))
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok" and body["taxonomy_version"] == 1


def test_customers_show_prints_tags_and_history_and_hides_risk_from_agents(tmp_path) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    kebiao = str(Path(sys.executable).with_name("kebiao"))
    env = {**os.environ, "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"}
    csv = tmp_path / "c.csv"
    csv.write_text("name,region,tags\n宁波海澜贸易,华东,VIP客户;竞品对比\n", encoding="utf-8")
    run = lambda *a: subprocess.run([kebiao, *a], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    assert run("customers", "import", str(csv)).returncode == 0
    shown = run("customers", "show", "宁波海澜")
    assert shown.returncode == 0, shown.stderr
    assert "VIP客户" in shown.stdout and "竞品对比" in shown.stdout and "added" in shown.stdout
    as_agent = run("customers", "show", "宁波海澜", "--as", "someone-new")
    assert as_agent.returncode == 0
    assert "VIP客户" in as_agent.stdout and "竞品对比" not in as_agent.stdout and "风险" not in as_agent.stdout
    assert "UTC" not in shown.stdout
    history = [line for line in shown.stdout.splitlines() if line.endswith("via import")]
    assert history and all(" Asia/Shanghai added " in line for line in history)
    env["KEBIAO_TIMEZONE"] = "America/New_York"
    shifted = run("customers", "show", "宁波海澜")
    [utc_minus] = [line for line in shifted.stdout.splitlines() if "VIP客户" in line and line.endswith("via import")]
    [shanghai] = [line for line in history if "VIP客户" in line]
    assert " America/New_York added " in utc_minus
    # Same moment, 12 or 13 hours apart on the clock: the zone really converts, not just relabels.
    clock = lambda line: datetime.strptime(line.split()[0] + " " + line.split()[1], "%Y-%m-%d %H:%M")  # noqa: E731
    assert (clock(shanghai) - clock(utc_minus)) in (timedelta(hours=12), timedelta(hours=13))
    missing = run("customers", "show", "不存在的公司")
    assert missing.returncode == 1 and "no customer matches '不存在的公司'" in missing.stderr
    assert not any("by import via import" in line for line in shown.stdout.splitlines())


def test_taxonomy_export_before_first_start_writes_what_would_be_loaded(tmp_path: Path) -> None:
    out = _kebiao(tmp_path, "taxonomy", "export")
    assert out.returncode == 0, out.stderr
    assert "no taxonomy stored yet" in out.stderr
    assert "风险与问题" in out.stdout and "询价客户" in out.stdout
    (tmp_path / "exported.yaml").write_text(out.stdout, encoding="utf-8")
    assert _kebiao(tmp_path, "taxonomy", "validate", "exported.yaml").returncode == 0


def test_taxonomy_import_of_a_template_alone_and_a_file_over_it(tmp_path: Path) -> None:
    alone = _kebiao(tmp_path, "taxonomy", "import", "--template", "retail")
    assert alone.returncode == 0, alone.stderr
    assert "taxonomy version 1 is current (built-in + retail)" in alone.stdout
    exported = _kebiao(tmp_path, "taxonomy", "export")
    assert "会员等级" in exported.stdout and "询价客户" in exported.stdout  # template + built-in
    (tmp_path / "extra.yaml").write_text(
        "version: 1\ndimensions:\n  - key: stage\n    name: 需求阶段\n    tags:\n      - name: 团购意向\n"
        "        keywords: [团购]\n",
        encoding="utf-8",
    )
    merged = _kebiao(tmp_path, "taxonomy", "import", "extra.yaml", "--template", "retail")
    assert merged.returncode == 0, merged.stderr
    assert "taxonomy version 2 is current (extra.yaml over built-in + retail)" in merged.stdout
    text = _kebiao(tmp_path, "taxonomy", "export").stdout
    assert all(name in text for name in ("团购意向", "会员等级", "询价客户"))
    neither = _kebiao(tmp_path, "taxonomy", "import")
    assert (neither.returncode, neither.stderr) == (2, "kebiao taxonomy import: give FILE, --template NAME, or both\n")


def test_serve_start_up_problems_are_one_line_errors(tmp_path: Path) -> None:
    import socket

    no_password = _kebiao_env(tmp_path, {"MICROSOFT_APP_ID": "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"}, "serve")
    assert no_password.returncode == 2
    assert no_password.stderr.startswith("kebiao: configuration error: MICROSOFT_APP_ID is set but")
    blank_id = _kebiao_env(tmp_path, {"KEBIAO_ENV": "production", "MICROSOFT_APP_ID": " "}, "serve")
    assert blank_id.returncode == 2 and "Traceback" not in blank_id.stderr
    assert "MICROSOFT_APP_ID is empty" in blank_id.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _kebiao_env(tmp_path, {"HOST": "127.0.0.1", "PORT": str(port), "KEBIAO_SCHEDULER": "off"}, "serve")
    assert busy.returncode == 1 and "Traceback" not in busy.stderr
    assert f"kebiao serve: cannot listen on 127.0.0.1:{port}:" in busy.stderr
    (tmp_path / "blocker").write_text("a file where a directory should be", encoding="utf-8")
    bad_db = _kebiao_env(
        tmp_path,
        {"KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'blocker' / 'k.db'}", "KEBIAO_SCHEDULER": "off"},
        "serve",
    )
    assert bad_db.returncode == 1 and "Traceback" not in bad_db.stderr
    assert bad_db.stderr.startswith("kebiao serve: ")


def _kebiao_env(tmp_path: Path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MICROSOFT_", "KEBIAO_", "WECOM_"))}
    env = keep | {"KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'k.db'}"} | extra
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_import_lists_file_and_taxonomy_problems_in_one_run(tmp_path: Path) -> None:
    assert _kebiao(tmp_path, "db", "upgrade").returncode == 0
    (tmp_path / "tax.yaml").write_text(TAXONOMY, encoding="utf-8")
    assert _kebiao(tmp_path, "taxonomy", "import", "tax.yaml").returncode == 0
    mixed = (
        "name,company,crm_id,contract_end,tags\n"
        "上海明远科技,明远,C-1,2026-03-01,VIP客户\n"
        "杭州云栖,云栖,C-2,2026-02-30,普通客户\n"
        "北京远航,远航,C-3,,不存在标签\n"
        "深圳蓝海,=1+2,C-4,,询价客户\n"
    )
    (tmp_path / "mixed.csv").write_text(mixed, encoding="utf-8")
    bad = _kebiao(tmp_path, "customers", "import", "mixed.csv")
    assert bad.returncode == 1 and bad.stdout == ""
    # Without a terminal each finished phase leaves one line ("reading: 4 of 4 rows in 0.0 s") before the problems.
    lines = [line for line in bad.stderr.splitlines() if not line.startswith(("reading:", "checking:"))]
    assert [line.split(":")[0] for line in lines] == [
        "row 3, column contract_end",
        "row 4, column tags",
        "row 5, column company",
    ], bad.stderr
    assert "'2026-02-30' is not a date" in lines[0] and "unknown tag '不存在标签'" in lines[1]
    # nothing written: the good row 2 is not stored either
    shown = _kebiao(tmp_path, "customers", "show", "上海明远科技")
    assert shown.returncode != 0 and "上海明远科技" not in shown.stdout, shown.stdout
