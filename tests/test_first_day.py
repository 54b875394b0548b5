"""What a first day with the `kebiao` command meets, through the real CLI in fresh processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cli.main import CLOSED_PIPE_EXIT

ROOT = Path(__file__).resolve().parent.parent
GUID = "0b6f5a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KEBIAO_", "MICROSOFT_", "WECOM_")) and key not in ("HOST", "PORT")
    }
    env["KEBIAO_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env.update(extra)
    return env


def kebiao(tmp_path: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=tmp_path,
        env=_env(tmp_path, **extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- closed pipes


@pytest.mark.parametrize(
    "args",
    [("suggest",), ("reports", "tags", "--json"), ("taxonomy", "export")],
    ids=["suggest", "reports", "export"],
)
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    if args[0] == "reports":
        assert kebiao(tmp_path, "taxonomy", "import", "--template", "retail").returncode == 0
    lines = (tmp_path / "lines.txt").open("w+", encoding="utf-8")
    lines.write("麻烦把报价单发我一下\n" * 2000)
    lines.seek(0)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdin=lines,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first write, as after `| head -1`
    stderr = process.stderr.read().decode("utf-8")
    assert process.wait(timeout=120) == CLOSED_PIPE_EXIT
    lines.close()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_suggest_piped_into_head_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "chat.txt").write_text("麻烦把报价单发我一下\n" * 5000, encoding="utf-8")
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m cli suggest < chat.txt | head -1'],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.count("\n") == 1 and "询价客户" in done.stdout
    # the first use creates the database (one log line); a closed pipe itself says nothing
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr and "Error" not in done.stderr


# ---------------------------------------------------------------- configuration


def test_an_unknown_kebiao_env_is_refused_by_every_verb(tmp_path: Path) -> None:
    done = kebiao(tmp_path, "customers", "show", "x", KEBIAO_ENV="prod")
    assert done.returncode == 2
    assert done.stderr == (
        "kebiao: configuration error: KEBIAO_ENV='prod' is not known: use development, production, test "
        "(production refuses to serve without Bot Framework credentials)\n"
    )


def test_production_without_credentials_runs_read_only_verbs_but_not_serve(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("name,tags\n宁波海澜贸易,VIP客户\n", encoding="utf-8")
    assert kebiao(tmp_path, "customers", "import", "c.csv").returncode == 0
    shown = kebiao(tmp_path, "customers", "show", "宁波海澜贸易", KEBIAO_ENV="production")
    assert shown.returncode == 0 and "VIP客户" in shown.stdout, shown.stderr
    served = kebiao(tmp_path, "serve", KEBIAO_ENV="production", PORT="0")
    assert served.returncode == 2 and "MICROSOFT_APP_ID is empty" in served.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_logs_one_start_up_line_in_the_local_zone(tmp_path: Path) -> None:
    port = _free_port()
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    env = _env(tmp_path, HOST="127.0.0.1", PORT=str(port), KEBIAO_SCHEDULER="off", KEBIAO_ADMIN_TOKEN="t" * 20)
    env["KEBIAO_DATABASE_URL"] = url
    env["KEBIAO_TIMEZONE"] = "America/New_York"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    try:
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if "kebiao serve:" in line or not line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert f"listening on http://127.0.0.1:{port}" in line
    assert f"database {url}" in line and "taxonomy version 1" in line
    assert "channels: teams, admin API" in line and "scheduler off" in line
    assert "emulator mode: no authentication" in line
    stamp = datetime.fromisoformat(line.split(" ", 1)[0])
    assert stamp.utcoffset() == datetime.now(ZoneInfo("America/New_York")).utcoffset()


def test_serve_and_suggest_help_describe_themselves(tmp_path: Path) -> None:
    serve = kebiao(tmp_path, "serve", "--help").stdout
    assert "HOST" in serve and "PORT" in serve and "0.0.0.0:3978" in serve and "docs/" in serve
    suggest = " ".join(kebiao(tmp_path, "suggest", "--help").stdout.split())
    assert "one JSON object per message" in suggest and '"action"' in suggest
    assert "(default: 1;" in suggest
    assert "saas, consulting, retail, manufacturing, education, finance" in suggest
    for args in (("--help",), ("taxonomy", "--help"), ("customers", "import", "--help"), ("reports", "tags", "--help")):
        text = kebiao(tmp_path, *args).stdout
        assert "../shared" not in text and "%%" not in text


# ---------------------------------------------------------------- users


@pytest.mark.parametrize("user_id", ["<aad-object-id-or-wecom-userid>", "张 伟", "x" * 65, "a/b"])
def test_set_role_refuses_ids_of_the_wrong_shape(tmp_path: Path, user_id: str) -> None:
    done = kebiao(tmp_path, "users", "set-role", user_id, "manager")
    assert done.returncode == 2 and done.stdout == ""
    assert "Teams AAD object id" in done.stderr and "WeCom userid" in done.stderr
    if user_id.startswith("<"):
        assert "is a placeholder" in done.stderr
    assert not (tmp_path / "k.db").exists()  # refused before the database is opened


@pytest.mark.parametrize("user_id", [GUID, "zhang.wei", "li_na-2", "wang@corp"])
def test_set_role_accepts_guids_and_wecom_userids(tmp_path: Path, user_id: str) -> None:
    done = kebiao(tmp_path, "users", "set-role", user_id, "manager", "--region", "华东")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{user_id}: manager (华东)\n"


# ---------------------------------------------------------------- taxonomy files


BAD_TAXONOMY = """\
version: 1
dimensions:
  - {key: stage, name: 需求阶段, tags: [{name: 询价客户, keywords: [报价]}]}
  - key: risk
    name: 风险与问题
    visibility: managers
    tags:
      - name: 高危流失
        keywords: [流失, 13812345678, 12315]
        colour: red
"""


def test_validate_lists_every_problem_with_dimension_keys_and_tag_names(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(BAD_TAXONOMY, encoding="utf-8")
    done = kebiao(tmp_path, "taxonomy", "validate", "t.yaml")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "t.yaml:dimensions[1](risk).tags[0](高危流失).colour: unknown key 'colour'; did you mean 'color'? allowed "
        "keys: name, icon, color, description, keywords, exclude, ttl_days, auto_apply, regions, children",
        "t.yaml:dimensions[1](risk).tags[0](高危流失).keywords[1]: keyword (a number) contains personal data (a "
        "mobile phone number at character 1); tags must never hold ID, phone or bank card numbers",
        "t.yaml:dimensions[1](risk).tags[0](高危流失).keywords[2]: keyword must be a string, got a number (12315); "
        "quote it in YAML",
    ]


def test_a_tab_in_yaml_says_indent_with_spaces(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(BAD_TAXONOMY.replace("  - key: risk", "\t- key: risk"), encoding="utf-8")
    done = kebiao(tmp_path, "taxonomy", "validate", "t.yaml")
    assert done.returncode == 1
    assert (
        done.stderr == "t.yaml: YAML syntax error at line 4, column 1: a tab character; indent with spaces, not tabs\n"
    )


def test_importing_the_same_taxonomy_again_stores_no_version(tmp_path: Path) -> None:
    example = str(ROOT / "examples" / "taxonomy.yaml")
    assert "taxonomy version 1 is current" in kebiao(tmp_path, "taxonomy", "import", "--template", "retail").stdout
    first = kebiao(tmp_path, "taxonomy", "import", example)
    assert first.returncode == 0 and "taxonomy version 2 is current" in first.stdout
    again = kebiao(tmp_path, "taxonomy", "import", example)
    assert again.returncode == 0
    assert again.stdout == f"no change: {example} is the same as taxonomy version 2; nothing stored\n"
    changed = kebiao(tmp_path, "taxonomy", "import", "--template", "retail")
    assert "taxonomy version 3 is current" in changed.stdout


# ---------------------------------------------------------------- customers


def test_customer_import_reports_every_problem_in_one_run(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(
        "name,company,tags,industry\n上海明远,13812345678,VIP客户;不存在标签,SaaS\n,明远,,\n杭州云栖,云栖,普通客户;未知,教育\n",
        encoding="utf-8",
    )
    done = kebiao(tmp_path, "customers", "import", "c.csv")
    assert done.returncode == 1 and done.stdout == ""
    problems = [line for line in done.stderr.splitlines() if line.startswith("row ")]
    assert problems == [
        "row 2, column company: contains a mobile phone number; personal data must not be imported",
        "row 2, column tags: unknown tag '不存在标签'",
        "row 3, column name: name is empty; every customer needs a name",
        "row 4, column tags: unknown tag '未知'",
    ]


def test_customers_show_tells_none_from_several_and_shows_attributes(tmp_path: Path) -> None:
    assert kebiao(tmp_path, "customers", "import", str(ROOT / "examples" / "customers.csv")).returncode == 0
    none = kebiao(tmp_path, "customers", "show", "不存在公司")
    assert none.returncode == 1 and none.stderr.startswith("kebiao: no customer matches '不存在公司';")
    (tmp_path / "more.csv").write_text("name,crm_id\n杭州云帆物流,CRM-9\n", encoding="utf-8")
    assert kebiao(tmp_path, "customers", "import", "more.csv").returncode == 0
    several = kebiao(tmp_path, "customers", "show", "杭州云帆")
    assert several.returncode == 1
    assert re.match(
        r"kebiao: '杭州云帆' matches 2 customers: 杭州云帆\S+ \(#\d\), 杭州云帆\S+ \(#\d\);", several.stderr
    )
    shown = kebiao(tmp_path, "customers", "show", "杭州云帆科技")
    assert shown.returncode == 0 and "  industry: SaaS" in shown.stdout.splitlines()
    history = [line for line in shown.stdout.splitlines() if " added " in line]
    assert history and all(line.endswith(" via import") and " by " not in line for line in history)


# ---------------------------------------------------------------- reports


def test_reports_tags_lines_up_chinese_names_in_the_local_zone(tmp_path: Path) -> None:
    assert kebiao(tmp_path, "taxonomy", "import", "--template", "retail").returncode == 0
    before = datetime.now(UTC)
    done = kebiao(tmp_path, "reports", "tags", KEBIAO_TIMEZONE="America/New_York")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = re.fullmatch(r"tag health at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) America/New_York", lines[0])
    assert header is not None
    shown = datetime.fromisoformat(header.group(1)).replace(tzinfo=ZoneInfo("America/New_York"))
    assert abs((shown - before).total_seconds()) < 120
    from core.reports.tag_health import display_width

    table = lines[2 : lines.index("", 2)]
    assert len(table) > 20 and any(display_width(row) != len(row) for row in table)
    # every row's holders count ends in the terminal column where the header's "holders" ends
    holders_end = display_width(table[0][: table[0].index("holders") + len("holders")])
    for row in table[1:]:
        first_number = re.search(r"  +(\d+) ", row)
        assert first_number is not None
        assert display_width(row[: first_number.end(1)]) == holders_end, row
    retire = lines[lines.index(next(line for line in lines if line.startswith("retire candidates"))) :]
    assert not any(f"/{parent}:" in line for line in retire for parent in ("地区", "公司规模", "华东"))


def test_alerts_run_once_says_when_in_the_local_zone(tmp_path: Path) -> None:
    done = kebiao(tmp_path, "alerts", "run-once", "--now", "2026-12-01T01:00:00+00:00")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("alerts at 2026-12-01T09:00:00+08:00: ")
