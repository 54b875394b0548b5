"""Personal tags: the pure rules (names, PII, cap), the mytag grammar, WeCom's follow_user tags, and storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.chat.commands import Verb, parse_command
from core.records import CustomerDraft
from core.tags.personal import (
    PERSONAL_CAP,
    PersonalRefusal,
    PersonalSource,
    PersonalTag,
    change_personal,
    plan_change,
    wecom_personal_tags,
)
from storage.database import Database
from storage.personal import SqlPersonalTagStore

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def held(*names: str) -> list[PersonalTag]:
    return [PersonalTag(1, "u1", n, PersonalSource.MANUAL, NOW) for n in names]


def test_plan_adds_new_names_once_and_removes_held_ones_by_key() -> None:
    adding, removing, not_held = plan_change(
        held("周三拜访", "ABC"), ["性格急躁", "周三拜访", "性格急躁"], ["abc", "不存在"]
    )
    assert adding == ("性格急躁",)
    assert removing == ("ABC",) and not_held == ("不存在",)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("手机13800138000", "personal data"),
        ("11010519491231002X", "personal data"),
        ("很长" * 11, "longer than 20"),
        ("\u3000", "empty"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name: str, problem: str) -> None:
    with pytest.raises(PersonalRefusal) as caught:
        plan_change([], [name], [])
    assert problem in str(caught.value)
    assert all(zh for _, zh in caught.value.problems)


def test_the_cap_counts_what_is_left_after_removals() -> None:
    full = held(*[f"备注{i}" for i in range(PERSONAL_CAP)])
    with pytest.raises(PersonalRefusal, match=f"at most {PERSONAL_CAP}"):
        plan_change(full, ["再来一个"], [])
    assert plan_change(full, ["再来一个"], ["备注0"])[0] == ("再来一个",)


@pytest.mark.parametrize(
    ("text", "customer", "add", "remove"),
    [
        ("mytag ABC公司 +周三拜访 -性格急躁", "ABC公司", ("周三拜访",), ("性格急躁",)),
        ("我的标签ABC公司 +周三拜访", "ABC公司", ("周三拜访",), ()),
        ("我的标签 ABC公司", "ABC公司", (), ()),
        ('mytag "Bosch (China)" +"周三 拜访"', "Bosch (China)", ("周三 拜访",), ()),
    ],
)
def test_mytag_grammar(text: str, customer: str, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
    command = parse_command(text)
    assert (command.verb, command.customer, command.add, command.remove, command.error) == (
        Verb.MYTAG,
        customer,
        add,
        remove,
        None,
    )


def test_mytag_without_customer_is_an_error_that_keeps_the_changes() -> None:
    command = parse_command("mytag +周三拜访")
    assert command.verb is Verb.MYTAG and command.error and "mytag <customer>" in command.error
    assert command.add == ("周三拜访",)


def test_wecom_follow_user_personal_tags_only_type_2() -> None:
    follow = [
        {
            "userid": "wangwu",
            "tags": [
                {"group_name": "客户等级", "tag_name": "VIP", "tag_id": "et1", "type": 1},
                {"group_name": "", "tag_name": "周三拜访", "type": 2},
                {"group_name": "", "tag_name": "手机13800138000", "type": 2},
                {"group_name": "规则组", "tag_name": "规则标签", "type": 3},
                {"tag_name": None, "type": 2},
                "garbage",
            ],
        },
        {"userid": "lisi", "remark": ""},
        {"tags": [{"tag_name": "无主", "type": 2}]},
        "garbage",
    ]
    assert wecom_personal_tags(follow) == {"wangwu": ("周三拜访",), "lisi": ()}
    assert wecom_personal_tags(None) == {} and wecom_personal_tags({"userid": "x"}) == {}


async def test_store_round_trip_authors_apart_and_wecom_source_replaced(database: Database) -> None:
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="ABC公司"), NOW)
        other = await uow.customers.add(CustomerDraft(name="XYZ公司"), NOW)
    store = SqlPersonalTagStore(database.engine)
    change = await change_personal(store, customer.id, "u1", ["周三拜访", "性格急躁"], [], NOW)
    assert [t.name for t in change.held] == ["周三拜访", "性格急躁"]
    await change_personal(store, customer.id, "u2", ["只属于u2"], [], NOW)
    assert [t.name for t in await store.personal_for(customer.id, "u1")] == ["周三拜访", "性格急躁"]
    assert await store.personal_for(other.id, "u1") == []
    # A second add of a held name (another case) changes nothing; removal goes by the normalised key.
    again = await change_personal(store, customer.id, "u1", ["周三拜访"], ["性格急躁"], NOW + timedelta(1))
    assert again.added == () and again.removed == ("性格急躁",)
    assert [t.name for t in again.held] == ["周三拜访"]
    later = NOW + timedelta(days=2)
    await store.replace_personal_source(customer.id, "u1", ["微信A", "微信B"], PersonalSource.WECOM, later)
    await store.replace_personal_source(customer.id, "u1", ["微信B", "周三拜访"], PersonalSource.WECOM, later)
    rows = await store.personal_for(customer.id, "u1")
    assert [(t.name, t.source) for t in rows] == [
        ("周三拜访", PersonalSource.MANUAL),  # typed in chat: WeCom neither duplicates nor removes it
        ("微信B", PersonalSource.WECOM),
    ]
    await store.replace_personal_source(customer.id, "u1", [], PersonalSource.WECOM, later)
    assert [t.name for t in await store.personal_for(customer.id, "u1")] == ["周三拜访"]
    # Personal tags are no enterprise assignments: nothing for reports, WeCom pushes or CRM writes to see.
    async with database.unit_of_work(read_only=True) as uow:
        assert await uow.assignments.active_for(customer.id) == []
