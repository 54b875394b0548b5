"""Keyset paging (tag search past a customer id, history before an event id) and the capped name search, on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import storage.repositories as repositories
from core.ports import AllOf, HasTag, NoneOf
from core.records import CustomerDraft, NewEvent
from core.types import EventKind, Source
from storage.database import Database

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


async def _customers(database: Database, names: list[str]) -> list[int]:
    async with database.unit_of_work() as uow:
        return [(await uow.customers.add(CustomerDraft(name=n), NOW)).id for n in names]


async def _tag(database: Database, ids: list[int], tag: str) -> None:
    async with database.unit_of_work() as uow:
        for cid in ids:
            await uow.assignments.insert_active(cid, "value", tag, Source.MANUAL, "u1", NOW, None)


@pytest.mark.parametrize("page_size", [1, 3, 7, 100])
async def test_search_after_walks_every_match_once(database: Database, page_size: int) -> None:
    ids = await _customers(database, [f"客户{i}" for i in range(17)])
    await _tag(database, ids[::2], "vip客户")
    await _tag(database, ids[::3], "重点客户")
    query = AllOf((HasTag(("vip客户",)), NoneOf(HasTag(("重点客户",)))))
    expected = sorted(set(ids[::2]) - set(ids[::3]))
    seen: list[int] = []
    after = 0
    async with database.unit_of_work(read_only=True) as uow:
        while True:
            page, total = await uow.assignments.search(query, NOW, None, 0, page_size, after, count_up_to=100)
            assert total == len(expected)  # every page reports the whole count, not what is left
            seen.extend(page)
            if len(page) < page_size:
                break
            after = page[-1]
        skipped, _ = await uow.assignments.search(query, NOW, None, 2, 2, expected[0], count_up_to=100)
    assert seen == expected
    assert skipped == expected[3:5]  # after, then skip


async def test_search_after_counts_customers_holding_several_matching_tags_once(database: Database) -> None:
    ids = await _customers(database, ["甲", "乙", "丙"])
    await _tag(database, ids, "vip客户")
    async with database.unit_of_work() as uow:
        await uow.assignments.insert_active(ids[1], "stage", "询价客户", Source.MANUAL, "u1", NOW, None)
    query = HasTag(("vip客户", "询价客户"))
    async with database.unit_of_work(read_only=True) as uow:
        first, total = await uow.assignments.search(query, NOW, None, 0, 2, 0, count_up_to=100)
        rest, again = await uow.assignments.search(query, NOW, None, 0, 2, first[-1], count_up_to=100)
    assert (first, rest, total, again) == (ids[:2], ids[2:], 3, 3)


async def test_search_counts_up_to_the_cap_and_pages_past_it(database: Database) -> None:
    ids = await _customers(database, [f"客户{i}" for i in range(9)])
    await _tag(database, ids, "vip客户")
    await _tag(database, ids[4:], "重点客户")
    query = AllOf((HasTag(("vip客户",)), NoneOf(HasTag(("重点客户",)))))  # ids[:4] match
    async with database.unit_of_work(read_only=True) as uow:
        every = await uow.assignments.search(HasTag(("vip客户",)), NOW, None, 0, 2, count_up_to=3)
        second = await uow.assignments.search(HasTag(("vip客户",)), NOW, None, 2, 2, count_up_to=3)
        deep = await uow.assignments.search(HasTag(("vip客户",)), NOW, None, 4, 2, count_up_to=3)
        past = await uow.assignments.search(HasTag(("vip客户",)), NOW, None, 0, 3, ids[5], count_up_to=3)
        exact = await uow.assignments.search(query, NOW, None, 0, 10, count_up_to=4)
        over = await uow.assignments.search(query, NOW, None, 0, 10, count_up_to=3)
    # Nine match: counted no further than the cap + 1, however the page is chosen.
    assert every == (ids[:2], 4) and second == (ids[2:4], 4) and deep == (ids[4:6], 4)
    assert past == (ids[6:], 4)
    assert exact == (ids[:4], 4) and over == (ids[:4], 4)  # four within a cap of 4; "more than 3" with 3


async def test_history_before_pages_newest_first_with_equal_times(database: Database) -> None:
    (cid,) = await _customers(database, ["历史客户"])
    async with database.unit_of_work() as uow:
        for i in range(9):  # three events share each timestamp: ties are broken by id
            at = NOW + timedelta(minutes=i // 3)
            await uow.events.append(NewEvent(cid, "value", f"标签{i}", EventKind.ADDED, "u1", Source.MANUAL, at, {}))
    pages: list[list[int]] = []
    before = 0
    async with database.unit_of_work(read_only=True) as uow:
        everything = [e.id for e in await uow.events.for_customer(cid, 0, 100)]
        while True:
            page = [e.id for e in await uow.events.for_customer(cid, 0, 4, before)]
            pages.append(page)
            if len(page) < 4:
                break
            before = page[-1]
    assert [i for p in pages for i in p] == everything == sorted(everything, reverse=True)
    assert [len(p) for p in pages] == [4, 4, 1]


async def test_name_search_keeps_equal_and_prefix_names_when_many_contain_the_key(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repositories, "NAME_CANDIDATES", 3)
    await _customers(database, [f"上海{i:02d}星辰科技" for i in range(12)])
    wanted = await _customers(database, ["星辰科技有限公司", "星辰"])
    async with database.unit_of_work(read_only=True) as uow:
        found = await uow.customers.find_by_name_key("星辰", 5)
        every = await uow.customers.find_by_name_key("星辰", 100)
    assert [c.id for c in found[:2]] == wanted[::-1]  # equal first, then the prefix match
    assert [c.name for c in found[2:]] == [f"上海{i:02d}星辰科技" for i in range(3)]  # then contains, by id
    assert len(every) == 14  # a limit above the cap still reaches every match
