"""`kebiao wecom sync-personal-tags`: agents' own WeCom tags on known contacts, read into their personal tags."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from core.records import CustomerDraft
from core.tags.personal import PersonalSource
from storage import tables as t
from storage.database import Database, open_database
from storage.personal import SqlPersonalTagStore
from tests.alerts.test_scheduler_cli import _kebiao
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi
from tests.wecom.test_personal_tags import follow

ID_NUMBER = "11010519491231002X"  # a valid GB 11643 checksum: personal data


async def _seed(database: Database) -> dict[str, int]:
    """Customers: three in WeCom, one WeCom no longer knows, one without a WeCom id."""
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    async with database.unit_of_work() as uow:
        for name, external in (("钱多", "wmB1"), ("孙无", "wmB2"), ("赵有", "wmB3"), ("离开", "wmGONE"), ("线下", "")):
            customer = await uow.customers.add(CustomerDraft(name=name, wecom_external_userid=external), now)
            ids[name] = customer.id
    # zhangwei typed one personal note on 钱多 in chat before: the backfill keeps it.
    store = SqlPersonalTagStore(database.engine)
    await store.change_personal(ids["钱多"], "zhangwei", ["爱打高尔夫"], [], PersonalSource.MANUAL, now)
    return ids


async def _personal(url: str) -> list[tuple[int, str, str, str]]:
    database = await open_database(url)
    try:
        async with database.engine.connect() as conn:
            p = t.personal_tags.c
            rows = await conn.execute(select(p.customer_id, p.author, p.name, p.source).order_by(p.customer_id, p.id))
            return [(r.customer_id, r.author, r.name, r.source) for r in rows]
    finally:
        await database.close()


def _env(tmp_path: Path, url: str, fake: FakeWeComApi) -> dict[str, str]:
    return {
        "KEBIAO_DATABASE_URL": url,
        "CWD": str(tmp_path),
        "WECOM_CORP_ID": CORP_ID,
        "WECOM_SECRET": SECRET,
        "WECOM_AGENT_ID": AGENT_ID,
        "WECOM_API_BASE": fake.api_base,
    }


def _contacts(fake: FakeWeComApi) -> None:
    fake.add_contact("wmB1", "钱多", ["zhangwei", "lisi"])
    fake.contacts["wmB1"]["follow_user"] = [
        follow("zhangwei", ("重点客户", 1), ("周三拜访", 2), ("性格急躁", 2), ("规则", 3)),
        follow("lisi", ("喜欢喝茶", 2), ("13800138000", 2), (ID_NUMBER, 2), ("很" * 21, 2)),
    ]
    fake.add_contact("wmB2", "孙无", ["zhangwei"])
    fake.contacts["wmB2"]["follow_user"] = [follow("zhangwei", ("重点客户", 1))]  # no own tags
    fake.add_contact("wmB3", "赵有", ["wangwu"])
    fake.contacts["wmB3"]["follow_user"] = [follow("wangwu", ("爱打高尔夫", 2), ("月底回访", 2))]


async def test_backfill_fills_each_agents_own_tags_idempotently(
    tmp_path: Path, database_url: str, fake_wecom: FakeWeComApi
) -> None:
    database = await open_database(database_url)
    try:
        ids = await _seed(database)
    finally:
        await database.close()
    _contacts(fake_wecom)
    env = _env(tmp_path, database_url, fake_wecom)
    rc, out, err = await _kebiao(env, "wecom", "sync-personal-tags")
    assert rc == 0, err
    assert out == (
        "4 contacts read: personal tags changed on 2 customers (4 agent lists), 1 no longer in WeCom, 0 failed\n"
    )
    assert "contacts: 4 of 4 contacts in" in err  # the progress line (not a terminal: one line per phase)
    asked = [c.query["external_userid"] for c in fake_wecom.calls_to("externalcontact/get")]
    assert asked == ["wmB1", "wmB2", "wmB3", "wmGONE"]  # every known contact once, by customer id
    first = await _personal(database_url)
    assert first == [
        (ids["钱多"], "zhangwei", "爱打高尔夫", "manual"),
        (ids["钱多"], "zhangwei", "周三拜访", "wecom"),
        (ids["钱多"], "zhangwei", "性格急躁", "wecom"),
        (ids["钱多"], "lisi", "喜欢喝茶", "wecom"),  # the phone, the ID number and the 21-character name are dropped
        (ids["赵有"], "wangwu", "爱打高尔夫", "wecom"),
        (ids["赵有"], "wangwu", "月底回访", "wecom"),
    ]
    assert ID_NUMBER not in out + err and "13800138000" not in out + err and SECRET not in out + err
    # Again: nothing changes.
    rc, out, _ = await _kebiao(env, "wecom", "sync-personal-tags")
    assert rc == 0 and "personal tags changed on 0 customers" in out
    assert await _personal(database_url) == first
    # An agent drops a tag in WeCom: the next run follows, the typed note stays.
    fake_wecom.contacts["wmB1"]["follow_user"][0] = follow("zhangwei", ("周三拜访", 2))
    rc, out, _ = await _kebiao(env, "wecom", "sync-personal-tags")
    assert rc == 0 and "personal tags changed on 1 customers" in out
    assert (ids["钱多"], "zhangwei", "性格急躁", "wecom") not in await _personal(database_url)
    assert (ids["钱多"], "zhangwei", "爱打高尔夫", "manual") in await _personal(database_url)


async def test_backfill_resumes_with_limit_and_after(
    tmp_path: Path, database_url: str, fake_wecom: FakeWeComApi
) -> None:
    database = await open_database(database_url)
    try:
        ids = await _seed(database)
    finally:
        await database.close()
    _contacts(fake_wecom)
    env = _env(tmp_path, database_url, fake_wecom)
    rc, out, _ = await _kebiao(env, "wecom", "sync-personal-tags", "--limit", "2")
    assert rc == 0
    assert out.startswith("2 contacts read:")
    assert out.endswith(f"more contacts remain: run again with --after {ids['孙无']}\n")
    assert {row[0] for row in await _personal(database_url)} == {ids["钱多"]}
    rc, out, _ = await _kebiao(env, "wecom", "sync-personal-tags", "--after", str(ids["孙无"]))
    assert rc == 0 and out.startswith("2 contacts read:") and "more contacts remain" not in out
    assert {row[0] for row in await _personal(database_url)} == {ids["钱多"], ids["赵有"]}
    rc, _, err = await _kebiao(env, "wecom", "sync-personal-tags", "--limit", "-1")
    assert rc == 2 and "'-1' is not a whole number" in err


async def test_failures_are_counted_and_a_run_of_them_stops_the_walk(
    tmp_path: Path, database_url: str, fake_wecom: FakeWeComApi
) -> None:
    database = await open_database(database_url)
    try:
        ids = await _seed(database)
        async with database.unit_of_work() as uow:
            for name in ("后来一", "后来二", "后来三"):
                await uow.customers.add(CustomerDraft(name=name, wecom_external_userid=f"wm{name}"), datetime.now(UTC))
    finally:
        await database.close()
    _contacts(fake_wecom)
    env = _env(tmp_path, database_url, fake_wecom)
    fake_wecom.fail("externalcontact/get", 60011, "no privilege to access/modify contact", times=1)
    rc, out, err = await _kebiao(env, "wecom", "sync-personal-tags")
    assert rc == 1 and out.startswith("7 contacts read:") and "1 failed" in out  # one refusal: the walk goes on
    assert "errcode 60011" not in out and SECRET not in err
    filled = {row[0] for row in await _personal(database_url) if row[3] == "wecom"}
    assert filled == {ids["赵有"]}  # 钱多's contact was the one refused
    fake_wecom.fail("externalcontact/get", 60011, "no privilege to access/modify contact", times=10)
    rc, out, err = await _kebiao(env, "wecom", "sync-personal-tags", "--after", str(ids["钱多"]))
    assert rc == 1 and out.startswith("5 contacts read:") and "5 failed" in out
    assert "stopped: 5 contacts in a row could not be read" in err and "errcode 60011" in err
    assert out.endswith(f"more contacts remain: run again with --after {ids['钱多']}\n")  # retries the failed run
    rc, _, err = await _kebiao({**env, "WECOM_SECRET": ""}, "wecom", "sync-personal-tags")
    assert rc == 1 and "set WECOM_CORP_ID and WECOM_SECRET" in err
