"""Tag changes from any flow reach WeCom: the drain reads the tag-event log after a persisted cursor."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from app import DATABASE, WECOM_DRAIN_INTERVAL, create_app
from bots.wecom.background import Background
from bots.wecom.client import WeComClient
from bots.wecom.sync import EVENT_CURSOR, WeComTagSync
from core.tags.assignments import ApplyItem, TaggingRules, apply_many, apply_tag, remove_tag
from core.types import Source
from storage import tables as t
from storage.channels import SqlChannelStore
from storage.database import Database
from storage.sync_pending import SqlPendingTagPushes, readable_upto
from tagging.taxonomy import Taxonomy
from tests.wecom.callbacks import settings_for
from tests.wecom.fake_api import AGENT_ID, CORP_ID, SECRET, FakeWeComApi
from tests.wecom.sync_support import (
    NOW,
    TAG,
    TAG_ID,
    Clock,
    add_customer,
    apply,
    known_corp_tag,
    no_sleep,
    reopen,
)

MARK = "externalcontact/mark_tag"


def _sync(
    session: aiohttp.ClientSession, fake: FakeWeComApi, database: Database, taxonomy: Taxonomy, **kw: Any
) -> WeComTagSync:
    client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, fake.api_base, sleep=no_sleep)
    return WeComTagSync(
        client,
        database,
        SqlChannelStore(database.engine),
        lambda: taxonomy,
        Background(),
        SqlPendingTagPushes(database.engine),
        clock=Clock(NOW),
        rng=random.Random(7),
        **kw,
    )


def _marks(fake: FakeWeComApi) -> list[tuple[str, list[str], list[str]]]:
    return [(c.body["external_userid"], c.body["add_tag"], c.body["remove_tag"]) for c in fake.calls_to(MARK) if c.body]


async def test_apply_and_remove_outside_wecom_are_mirrored_without_the_hook(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    await known_corp_tag(fake_wecom, database)
    sync = _sync(session, fake_wecom, database, sample_taxonomy)
    await sync.drain_pending()  # first start: the cursor begins at the newest event
    customer = await add_customer(database)
    await apply(database, sample_taxonomy, customer)

    report = await sync.drain_pending()
    assert (report.events, report.marked, report.pushed) == (1, 1, 1)
    assert _marks(fake_wecom) == [("wmWANGFANG01", [TAG_ID], [])]
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == {TAG_ID}

    async with database.unit_of_work() as uow:
        await remove_tag(uow, sample_taxonomy, customer.id, TAG, actor="admin-api", source=Source.MANUAL, now=NOW)
    assert (await sync.drain_pending()).pushed == 1
    assert _marks(fake_wecom)[-1] == ("wmWANGFANG01", [], [TAG_ID])
    assert fake_wecom.customer_tags[("lisi", "wmWANGFANG01")] == set()
    assert (await sync.drain_pending()).claimed == 0  # consumed events are not read twice
    assert len(_marks(fake_wecom)) == 2


async def test_apply_many_marks_only_customers_on_wecom(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    await known_corp_tag(fake_wecom, database)
    sync = _sync(session, fake_wecom, database, sample_taxonomy)
    await sync.drain_pending()
    on_wecom = await add_customer(database)
    no_external = await add_customer(database, name="赵磊", external="")
    no_owner = await add_customer(database, name="孙丽", external="wmSUNLI01", owner="")
    dimension = next(d for d in sample_taxonomy.dimensions if d.key == "basic")
    tag = next(d for d in dimension.tags if d.name == TAG)
    async with database.unit_of_work() as uow:  # as archive ingest does
        await apply_many(
            uow,
            [ApplyItem(c.id, dimension, tag, NOW, {"archive": "msg-001"}) for c in (on_wecom, no_external, no_owner)],
            TaggingRules(),
            actor="wecom-archive",
            source=Source.KEYWORD,
        )
    pending = SqlPendingTagPushes(database.engine)
    report = await sync.drain_pending()
    assert (report.events, report.marked, report.pushed, report.dropped) == (3, 1, 1, 0)
    assert _marks(fake_wecom) == [("wmWANGFANG01", [TAG_ID], [])]
    assert await pending.count() == 0


async def test_a_restart_does_not_push_consumed_events_again(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    await known_corp_tag(fake_wecom, database)
    sync = _sync(session, fake_wecom, database, sample_taxonomy)
    await sync.drain_pending()
    customer = await add_customer(database)
    await apply(database, sample_taxonomy, customer)
    assert (await sync.drain_pending()).pushed == 1

    restarted = await reopen(database)
    try:
        again = _sync(session, fake_wecom, restarted, sample_taxonomy)
        report = await again.drain_pending()
        assert (report.events, report.claimed) == (0, 0)
        await apply(restarted, sample_taxonomy, customer, "VIP客户")  # a change made after the restart
        assert (await again.drain_pending()).pushed == 1
    finally:
        await restarted.close()
    assert len(_marks(fake_wecom)) == 2


async def test_first_start_skips_history_and_a_crash_before_the_push_loses_nothing(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    await known_corp_tag(fake_wecom, database)
    old = await add_customer(database, name="周敏", external="wmZHOUMIN01")
    await apply(database, sample_taxonomy, old)  # before WeCom was enabled: history, not replayed
    sync = _sync(session, fake_wecom, database, sample_taxonomy)
    first = await sync.drain_pending()
    assert (first.events, first.marked, first.claimed) == (0, 0, 0)
    async with database.engine.connect() as conn:
        (cursor,) = (await conn.execute(select(t.sync_cursors.c.last_event_id))).one()
        newest = (await conn.execute(select(t.tag_events.c.id).order_by(t.tag_events.c.id.desc()))).scalar()
    assert cursor == newest
    assert fake_wecom.calls_to(MARK) == []

    customer = await add_customer(database)
    await apply(database, sample_taxonomy, customer)  # the process dies here: no hook, no push
    restarted = await reopen(database)
    try:
        report = await _sync(session, fake_wecom, restarted, sample_taxonomy).drain_pending()
    finally:
        await restarted.close()
    assert report.pushed == 1
    assert _marks(fake_wecom) == [("wmWANGFANG01", [TAG_ID], [])]


@pytest.mark.postgres
async def test_an_uncommitted_event_holds_the_cursor_until_it_commits_or_rolls_back(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    """PostgreSQL hands out ids at insert: a later id can commit first, and the cursor must not step past."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer: the drain never sees an uncommitted event id")
    await known_corp_tag(fake_wecom, database)
    sync = _sync(session, fake_wecom, database, sample_taxonomy, batch=10)
    await sync.drain_pending()
    slow, fast, rolled = [
        await add_customer(database, name=n, external=e)
        for n, e in (("钱进", "wmQIAN01"), ("吴昊", "wmWU01"), ("郑爽", "wmZHENG01"))
    ]

    async with database.unit_of_work() as uow:  # holds the lower event id while the other change commits
        await apply_tag(uow, sample_taxonomy, TaggingRules(), slow.id, TAG, actor="lisi", source=Source.MANUAL, now=NOW)
        await apply(database, sample_taxonomy, fast)
        for _ in range(2):
            report = await sync.drain_pending()
            assert (report.events, report.claimed) == (0, 0)  # waits at the gap, pushes nothing yet
    report = await sync.drain_pending()
    assert (report.events, report.pushed) == (2, 2)
    assert sorted(m[0] for m in _marks(fake_wecom)) == ["wmQIAN01", "wmWU01"]

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon):
        async with database.unit_of_work() as uow:
            await apply_tag(
                uow, sample_taxonomy, TaggingRules(), rolled.id, TAG, actor="lisi", source=Source.MANUAL, now=NOW
            )
            await apply(database, sample_taxonomy, slow, "VIP客户")
            assert (await sync.drain_pending()).events == 0  # the gap is recorded
            raise Abandon  # rolled back: its event id never appears
    # Stepped over once every transaction running when the gap was seen has ended. The oldest running
    # transaction is server-wide, so other sessions on the shared test server may delay it briefly.
    for _ in range(200):
        report = await sync.drain_pending()
        if report.events:
            break
        await asyncio.sleep(0.05)
    assert (report.events, report.pushed) == (1, 1)
    assert [m[0] for m in _marks(fake_wecom)][-1] == "wmQIAN01"


def test_readable_upto_stops_at_gaps_it_may_not_skip() -> None:
    assert readable_upto(10, [11, 12, 13], 0) == (13, False)
    assert readable_upto(10, [11, 13, 14], 0) == (11, True)
    assert readable_upto(10, [12, 13, 15], 1) == (13, True)
    assert readable_upto(10, [12, 13, 15], 2) == (15, False)
    assert readable_upto(10, [], 0) == (10, False)


async def test_the_running_app_mirrors_a_change_made_through_the_admin_api(
    aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi
) -> None:
    token = "kb-admin-同步-token-0123456789"
    settings = dataclasses.replace(settings_for(tmp_path, fake_wecom.api_base), admin_token=token)
    app = create_app(settings)
    app[WECOM_DRAIN_INTERVAL] = 0.05
    client = await aiohttp_client(app)
    database = client.app[DATABASE]
    await _until(lambda: _cursor_exists(database))  # the first pass has set the cursor (history skipped)
    customer = await add_customer(database, name="冯晓", external="wmFENGXIAO01")

    resp = await client.post(
        f"/admin/v1/customers/{customer.id}/tags",
        json={"add": ["VIP客户"], "actor": "王经理"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200, await resp.text()
    await _until(lambda: _has_marks(fake_wecom))
    ((external, added, removed),) = _marks(fake_wecom)
    assert (external, len(added), removed) == ("wmFENGXIAO01", 1, [])
    assert fake_wecom.customer_tags[("lisi", "wmFENGXIAO01")] == set(added)


async def _cursor_exists(database: Database) -> bool:
    async with database.engine.connect() as conn:
        row = (await conn.execute(select(t.sync_cursors).where(t.sync_cursors.c.name == EVENT_CURSOR))).first()
    return row is not None


async def _has_marks(fake: FakeWeComApi) -> bool:
    return bool(fake.calls_to(MARK))


async def _until(check: Any, tries: int = 400) -> None:
    """Poll (bounded) for what the app's drain loop does in the background."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the drain loop never got there")


async def test_migration_0003_to_0004_keeps_pending_pushes(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from storage.database import _alembic_config, head_revision

    def downgrade(connection: Any) -> None:
        command.downgrade(_alembic_config(connection), "0003")

    def tables(connection: Any) -> set[str]:
        return set(inspect(connection).get_table_names())

    async with database.engine.begin() as conn:
        await conn.run_sync(downgrade)
    async with database.engine.connect() as conn:
        assert "sync_cursors" not in await conn.run_sync(tables)
    customer = await add_customer(database)
    await apply(database, sample_taxonomy, customer)
    await SqlPendingTagPushes(database.engine).mark(customer.id, NOW, NOW)  # a push still owed from 0003 days
    await database.upgrade()
    assert await database.current_revision() == head_revision()  # 0004 and every later migration
    report = await _sync(session, fake_wecom, database, sample_taxonomy).drain_pending()
    assert (report.events, report.pushed) == (0, 1)  # the owed push is made; the history is not replayed
    assert len(_marks(fake_wecom)) == 1


async def test_two_replicas_draining_together_push_each_change_once(
    database: Database, sample_taxonomy: Taxonomy, fake_wecom: FakeWeComApi, session: aiohttp.ClientSession
) -> None:
    await known_corp_tag(fake_wecom, database)
    await _sync(session, fake_wecom, database, sample_taxonomy).drain_pending()
    names = ["王芳", "李娜", "张伟", "刘洋", "陈静", "杨帆"]
    for i, name in enumerate(names):
        await apply(database, sample_taxonomy, await add_customer(database, name=name, external=f"wmKEHU{i:02d}"))
    replica = await reopen(database)
    try:
        # One client for both: the fake honours only the newest access token (WeCom honours several).
        client = WeComClient(session, CORP_ID, SECRET, AGENT_ID, fake_wecom.api_base, sleep=no_sleep)
        first, second = (
            WeComTagSync(
                client,
                db,
                SqlChannelStore(db.engine),
                lambda: sample_taxonomy,
                Background(),
                SqlPendingTagPushes(db.engine),
                clock=Clock(NOW),
                batch=1,
                event_batch=2,
            )
            for db in (database, replica)
        )
        one, two = await asyncio.gather(first.drain_pending(), second.drain_pending())
    finally:
        await replica.close()
    assert one.events + two.events == len(names)  # each event read by exactly one replica
    assert sorted(m[0] for m in _marks(fake_wecom)) == [f"wmKEHU{i:02d}" for i in range(len(names))]
