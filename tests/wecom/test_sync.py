"""Tag sync with WeCom: mark_tag after Kebiao changes, corp tags created on demand, failures retried, the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from bots.wecom.background import Background
from bots.wecom.client import WeComClient
from bots.wecom.sync import WeComTagSync
from core.tags.assignments import remove_tag
from core.types import Source
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.sync_pending import SqlPendingTagPushes
from tagging.taxonomy import Taxonomy
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi
from tests.wecom.sync_support import (
    NOW,
    add_customer,
    apply,
    no_sleep,
)

ROOT = Path(__file__).resolve().parents[2]


def _sync(
    session: aiohttp.ClientSession, fake: FakeWeComApi, database: Database, taxonomy: Taxonomy, background: Background
) -> WeComTagSync:
    client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, fake.api_base, sleep=no_sleep)
    channels = SqlChannelStore(database.engine)
    pending = SqlPendingTagPushes(database.engine)
    return WeComTagSync(client, database, channels, lambda: taxonomy, background, pending, retry_delays=(0.0, 0.0))


async def test_apply_then_remove_is_mirrored_with_mark_tag(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    background = Background()
    sync = _sync(session, fake_wecom, database, sample_taxonomy, background)
    customer = await add_customer(database)
    tag = sample_taxonomy.dimensions[0].tags[0].name
    change = await apply(database, sample_taxonomy, customer, tag)
    await sync.tags_changed(customer.id, [change])
    await background.drain()
    (created,) = fake_wecom.calls_to("externalcontact/add_corp_tag")  # missing corp tag created first
    assert created.body and created.body["tag"] == [{"name": tag}]
    (mark,) = fake_wecom.calls_to("externalcontact/mark_tag")
    assert mark.body and mark.body["userid"] == "lisi" and mark.body["external_userid"] == "wmWANGFANG01"
    tag_id = mark.body["add_tag"][0]
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == {tag_id}
    async with database.unit_of_work() as uow:
        removed = await remove_tag(uow, sample_taxonomy, customer.id, tag, actor="lisi", source=Source.MANUAL, now=NOW)
    await sync.tags_changed(customer.id, [removed])
    await background.drain()
    last = fake_wecom.calls_to("externalcontact/mark_tag")[-1]
    assert last.body and last.body["remove_tag"] == [tag_id] and last.body["add_tag"] == []
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == set()
    assert len(fake_wecom.calls_to("externalcontact/add_corp_tag")) == 1  # the id was remembered


async def test_names_over_30_characters_are_not_mirrored(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    sync = _sync(session, fake_wecom, database, sample_taxonomy, Background())
    customer = await add_customer(database)
    long_name = "非常重要的长期战略合作伙伴客户" * 3  # 45 characters: WeCom refuses more than 30
    result = await sync.push(customer.id, [("basic", long_name)])
    assert result.skipped == "no tag has a WeCom counterpart"
    assert fake_wecom.calls_to("externalcontact/add_corp_tag") == []
    assert fake_wecom.calls_to("externalcontact/mark_tag") == []


async def test_expired_token_is_refreshed_once_during_a_push(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    sync = _sync(session, fake_wecom, database, sample_taxonomy, Background())
    customer = await add_customer(database)
    tag = sample_taxonomy.dimensions[0].tags[0].name
    await apply(database, sample_taxonomy, customer, tag)
    await sync.push(customer.id, [(sample_taxonomy.dimensions[0].key, tag)])  # token fetched, tag created
    fake_wecom.expire_token_once(42001)
    fetches = fake_wecom.token_fetches
    result = await sync.push(customer.id, [(sample_taxonomy.dimensions[0].key, tag)])
    assert result.skipped is None and result.added
    assert fake_wecom.token_fetches == fetches + 1


async def test_rate_limit_backs_off_and_succeeds(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    sync = _sync(session, fake_wecom, database, sample_taxonomy, Background())
    customer = await add_customer(database)
    tag = sample_taxonomy.dimensions[0].tags[0].name
    await apply(database, sample_taxonomy, customer, tag)
    fake_wecom.rate_limit("externalcontact/mark_tag", times=2)
    result = await sync.push(customer.id, [(sample_taxonomy.dimensions[0].key, tag)])
    assert result.added
    assert len(fake_wecom.calls_to("externalcontact/mark_tag")) == 3  # two 45009 answers, then success


async def test_permanent_error_is_logged_and_retried_later_without_losing_the_change(
    database: Database,
    sample_taxonomy: Taxonomy,
    fake_wecom: FakeWeComApi,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    background = Background()
    sync = _sync(session, fake_wecom, database, sample_taxonomy, background)
    customer = await add_customer(database)
    tag = sample_taxonomy.dimensions[0].tags[0].name
    change = await apply(database, sample_taxonomy, customer, tag)
    fake_wecom.fail("externalcontact/mark_tag", 60011, "no privilege", times=1)
    await sync.tags_changed(customer.id, [change])
    await background.drain()
    assert "mark_tag for customer" in caplog.text and "retry 1" in caplog.text
    marks = fake_wecom.calls_to("externalcontact/mark_tag")
    assert len(marks) == 2  # refused once, then pushed by the retry
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")]
    async with database.unit_of_work() as uow:
        assert [a.tag for a in await uow.assignments.active_for(customer.id)] == [tag]


async def test_cli_sync_tags_against_the_fake_api(tmp_path: Path, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.tag_groups.append(
        {"group_id": "etGRP1", "group_name": "客户等级", "tag": [{"id": "etVIP", "name": "重点客户"}]}
    )
    env = {
        **os.environ,
        "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}",
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_AGENT_ID": AGENT_ID,
        "WECOM_API_BASE": fake_wecom.api_base,
    }
    # The fake is served by this test's event loop: run the CLI as an asyncio subprocess so the loop stays free.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "wecom",
        "sync-tags",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    assert "1 WeCom corp tags imported" in out.decode()
    assert SECRET not in err.decode() and SECRET not in out.decode()
    assert fake_wecom.calls_to("externalcontact/get_corp_tag_list")
