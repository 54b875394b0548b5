"""The channel-name convention and meeting titles, pure: what is read as a customer and what is not."""

from __future__ import annotations

import pytest

from core.chat.channel_names import ChannelName, parse_channel_name
from core.chat.meetings import title_parts


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("[VIP]ABC公司-合同续约中", ChannelName("VIP", "ABC公司", "合同续约中")),
        ("【VIP】ABC公司－合同续约中", ChannelName("VIP", "ABC公司", "合同续约中")),
        ("［重点］ABC公司—询价", ChannelName("重点", "ABC公司", "询价")),
        (" [VIP] Coca-Cola - 询价 ", ChannelName("VIP", "Coca-Cola", "询价")),
    ],
)
def test_conventional_names(name: str, parsed: ChannelName) -> None:
    assert parse_channel_name(name) == parsed


@pytest.mark.parametrize(
    "name",
    [
        "ABC公司-合同续约中",
        "[VIP]ABC公司",
        "[VIP ABC公司-合同",
        "[]ABC-x",
        "[VIP]-合同",
        "[VIP]ABC公司-",
        "[A][B]C-D",
        "",
        None,
        7,
    ],
)
def test_near_misses_are_not_read(name: object) -> None:
    assert parse_channel_name(name) is None


def test_title_parts_split_at_separators_longest_first() -> None:
    assert title_parts("ABC公司 - 季度业务回顾（华为深圳）") == ["季度业务回顾", "ABC公司", "华为深圳"]
    assert title_parts("周会 a") == ["周会"]  # one-letter words are never customer names
