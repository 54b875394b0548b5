"""`kebiao crm sync|status` through the real entry point, against the fake Dataverse."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cli.main import main
from tests.crm.conftest import TAXONOMY, DynamicsFixture


@pytest.fixture
def crm_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dynamics: DynamicsFixture) -> DynamicsFixture:
    (tmp_path / "taxonomy.yaml").write_text(TAXONOMY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    s = dynamics.settings
    env = {
        "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}",
        "KEBIAO_TAXONOMY": str(tmp_path / "taxonomy.yaml"),
        "KEBIAO_CRM": "dynamics",
        "KEBIAO_CRM_DYNAMICS_URL": s.url,
        "KEBIAO_CRM_DYNAMICS_AUTHORITY": s.tenant_authority,
        "KEBIAO_CRM_DYNAMICS_CLIENT_ID": s.client_id,
        "KEBIAO_CRM_DYNAMICS_CLIENT_SECRET": s.client_secret,
        "KEBIAO_CRM_CA_BUNDLE": str(s.ca_bundle),
        "KEBIAO_CRM_PAGE_SIZE": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return dynamics


async def test_sync_then_status(crm_env: DynamicsFixture, capsys: pytest.CaptureFixture[str]) -> None:
    fake = crm_env.fake
    a = fake.add(
        "accounts", "甲公司", ["华东"], industrycode=12, numberofemployees=1200, address1_stateorprovince="上海"
    )
    fake.add("accounts", "乙公司")
    fake.add("contacts", "张三", accountrolecode=1)
    assert await asyncio.to_thread(main, ["crm", "sync", "--dry-run"]) == 0
    assert "dry run: nothing written" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["crm", "sync"]) == 0
    out = capsys.readouterr().out
    assert "3 records in 2 pages, 3 customers created, 0 customers' attributes updated, 1 tags added" in out
    assert await asyncio.to_thread(main, ["customers", "show", "甲公司"]) == 0
    shown = capsys.readouterr().out
    assert "industry: Manufacturing" in shown and "size: 1200" in shown and "上海" in shown
    assert await asyncio.to_thread(main, ["customers", "show", "张三"]) == 0
    assert "role: Decision Maker" in capsys.readouterr().out
    fake.update("accounts", a, industrycode=27, numberofemployees=None)  # the CRM is master of these
    assert await asyncio.to_thread(main, ["crm", "sync"]) == 0
    assert "1 customers' attributes updated" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["customers", "show", "甲公司"]) == 0
    shown = capsys.readouterr().out
    assert "industry: Retail" in shown and "size:" not in shown
    assert await asyncio.to_thread(main, ["crm", "status"]) == 0
    status = capsys.readouterr().out
    assert "last successful sync: 20" in status and "pending writes: 0 (0 failing)" in status
    assert "cursor: {" in status and crm_env.settings.client_secret not in status


async def test_a_failing_sync_exits_1_and_status_shows_the_error(
    crm_env: DynamicsFixture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEBIAO_CRM_DYNAMICS_CLIENT_SECRET", "zz-wrong-secret")
    assert await asyncio.to_thread(main, ["crm", "sync"]) == 1
    err = capsys.readouterr().err
    assert "dynamics sign-in: invalid_client" in err and "zz-wrong-secret" not in err
    assert await asyncio.to_thread(main, ["crm", "status"]) == 1
    assert "last error (" in capsys.readouterr().out


def test_unconfigured_crm_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEBIAO_CRM", raising=False)
    assert main(["crm", "status"]) == 1
    assert "set KEBIAO_CRM=dynamics" in capsys.readouterr().err
    monkeypatch.setenv("KEBIAO_CRM", "salesforce")
    assert main(["crm", "status"]) == 2
    assert "KEBIAO_CRM='salesforce' is not supported" in capsys.readouterr().err
    monkeypatch.setenv("KEBIAO_CRM", "zoho")
    assert main(["crm", "status"]) == 2
    assert "KEBIAO_CRM=zoho needs KEBIAO_CRM_ZOHO_CLIENT_ID" in capsys.readouterr().err


async def test_tags_in_a_related_table_are_configured_by_name(
    crm_env: DynamicsFixture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = crm_env.fake
    a = fake.add("accounts", "甲公司")
    fake.add_tag_row("accounts", a, "华东")
    fake.add_tag_row("accounts", a, "VIP客户")  # Kebiao is master of 价值等级: the row is taken away
    monkeypatch.setenv("KEBIAO_CRM_DYNAMICS_TAGS_TABLE", "kb_customertags")
    monkeypatch.setenv("KEBIAO_CRM_DYNAMICS_TAGS_FIELD", "kb_no_such_column")  # not used with a tags table
    assert await asyncio.to_thread(main, ["crm", "sync"]) == 0
    assert "1 CRM writes" in capsys.readouterr().out
    assert fake.table_labels("accounts", a) == ["华东"]
    assert await asyncio.to_thread(main, ["customers", "show", "甲公司"]) == 0
    assert "华东" in capsys.readouterr().out
    monkeypatch.setenv("KEBIAO_CRM_DYNAMICS_TAGS_TABLE_ACCOUNT", "kb_accountid")
    assert await asyncio.to_thread(main, ["crm", "sync"]) == 2
    assert "KEBIAO_CRM_DYNAMICS_TAGS_TABLE_ACCOUNT: give the tag row's lookup" in capsys.readouterr().err
