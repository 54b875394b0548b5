"""`kebiao users set-role --region` and PUT /admin/v1/users check regions against the taxonomy in force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from app import DATABASE, create_app
from config import Settings
from storage.database import open_database
from tagging.loader import load_taxonomy_text
from tagging.regions import check_regions
from tests.admin.conftest import AUTH, TOKEN
from tests.alerts.test_scheduler_cli import _kebiao
from tests.tagging.test_regions import REGIONAL

UNLISTED = REGIONAL.replace("regions: [华北, 华东, 华南]\n", "")  # regions only on a tag and a dimension


async def _stored_user(url: str, user_id: str) -> Any:
    database = await open_database(url)
    try:
        async with database.unit_of_work(read_only=True) as uow:
            return await uow.users.get(user_id)
    finally:
        await database.close()


async def _cli_with(tmp_path: Path, url: str, taxonomy: str) -> dict[str, str]:
    env = {"KEBIAO_DATABASE_URL": url, "CWD": str(tmp_path)}
    (tmp_path / "t.yaml").write_text(taxonomy, encoding="utf-8")
    rc, _, err = await _kebiao(env, "taxonomy", "import", str(tmp_path / "t.yaml"))
    assert rc == 0, err
    return env


def test_check_regions_refuses_unlisted_names_and_warns_about_unused_ones() -> None:
    listed = check_regions(load_taxonomy_text(REGIONAL), ["华东", "ｈｕａ", "华东区"])
    assert listed.regions == ("华东",)
    assert [(r, c) for r, _, c in listed.refused] == [("ｈｕａ", None), ("华东区", "华东")]
    assert "did you mean 华东?" in listed.refused[1][1] and not listed.warnings
    unlisted = check_regions(load_taxonomy_text(UNLISTED), ["华北", "华东"])
    assert unlisted.regions == ("华北", "华东") and not unlisted.refused
    [warning] = unlisted.warnings
    assert "'华东' is used by no dimension or tag" in warning and "(regions in use: 华北)" in warning
    plain = check_regions(load_taxonomy_text(UNLISTED.replace("regions: [华北]", "")), ["华东"])
    assert plain.regions == ("华东",) and not plain.refused and not plain.warnings  # no regional tags at all


async def test_cli_refuses_a_region_outside_the_regions_list_and_writes_nothing(
    tmp_path: Path, database_url: str
) -> None:
    env = await _cli_with(tmp_path, database_url, REGIONAL)
    argv = ("users", "set-role", "north.mgr", "manager", "--region", "华北", "--region", "西北")
    rc, out, err = await _kebiao(env, *argv)
    assert rc == 1 and out == ""
    assert "region '西北' is not in the taxonomy's regions list (华北, 华东, 华南); did you mean 华北?" in err
    assert "nothing was changed" in err
    assert await _stored_user(database_url, "north.mgr") is None
    rc, out, err = await _kebiao(env, "users", "set-role", "north.mgr", "manager", "--region", "华北")
    assert (rc, out, err) == (0, "north.mgr: manager (华北)\n", "")
    assert (await _stored_user(database_url, "north.mgr")).regions == ("华北",)


async def test_cli_without_a_regions_list_warns_about_a_region_no_tag_uses(tmp_path: Path, database_url: str) -> None:
    env = await _cli_with(tmp_path, database_url, UNLISTED)
    rc, out, err = await _kebiao(env, "users", "set-role", "east.mgr", "manager", "--region", "华东")
    assert rc == 0 and out == "east.mgr: manager (华东)\n"
    assert "warning: region '华东' is used by no dimension or tag of the taxonomy in force" in err
    assert "(regions in use: 华北)" in err
    assert (await _stored_user(database_url, "east.mgr")).regions == ("华东",)
    rc, _, err = await _kebiao(env, "users", "set-role", "north.mgr", "manager", "--region", "华北")
    assert rc == 0 and err == ""


async def test_admin_put_user_checks_regions(aiohttp_client: Any, tmp_path: Path, database_url: str) -> None:
    taxonomy = tmp_path / "t.yaml"
    taxonomy.write_text(REGIONAL, encoding="utf-8")
    settings = Settings.from_env(
        {
            "KEBIAO_DATABASE_URL": database_url,
            "KEBIAO_SCHEDULER": "off",
            "KEBIAO_TAXONOMY": str(taxonomy),
            "KEBIAO_ADMIN_TOKEN": TOKEN,
        },
        dotenv=None,
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    bad = await client.put("/admin/v1/users/li.si", json={"role": "manager", "regions": ["华东", "西北"]}, headers=AUTH)
    assert bad.status == 400
    body = await bad.json()
    assert body["error"] == "1 unknown regions; nothing changed"
    [problem] = body["problems"]
    assert problem["field"] == "regions[1]" and problem["did_you_mean"] == "华北"
    assert "not in the taxonomy's regions list (华北, 华东, 华南)" in problem["reason"]
    async with client.app[DATABASE].unit_of_work(read_only=True) as uow:
        assert await uow.users.get("li.si") is None
    good = await client.put("/admin/v1/users/li.si", json={"role": "manager", "regions": ["华东"]}, headers=AUTH)
    assert good.status == 200
    assert await good.json() == {
        "id": "li.si",
        "role": "manager",
        "regions": ["华东"],
        "display_name": "",
        "warnings": [],
    }
