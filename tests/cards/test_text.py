"""Escaping user text so it can inject no link, mention or formatting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cards.text import SPECIAL, clip, clip_bytes, escape

PAYLOADS = [
    "[x](http://evil)",
    "<at>CEO</at>",
    "**bold**",
    "_斜体_",
    "`代码`",
    "# 标题",
    "- 列表",
    "1. 第一",
    "&lt;at&gt;",
]


def test_payloads_lose_their_markup() -> None:
    assert escape("[x](http://evil)") == "［x］（http:∕∕evil）"
    assert escape("<at>CEO</at>") == "＜at＞CEO＜/at＞"
    assert escape("**bold**") == "＊＊bold＊＊"
    assert escape("- 沉默客户") == "‐ 沉默客户"
    assert escape("1. 询价客户") == "1． 询价客户"
    assert escape("访问 www.evil.com 领奖") == "访问 www․evil.com 领奖"
    for payload in PAYLOADS:
        assert not SPECIAL & set(escape(payload)), payload


def test_chinese_text_is_unchanged() -> None:
    assert escape("ABC公司 需要报价，加急！") == "ABC公司 需要报价，加急！"


def test_lines_fold_to_one() -> None:
    assert escape("华东区\n- VIP客户\r\n\t重点") == "华东区 - VIP客户 重点"


@given(st.text())
def test_escaped_text_has_no_special_characters(raw: str) -> None:
    out = escape(raw)
    assert not SPECIAL & set(out)
    assert "://" not in out
    assert "\n" not in out
    assert escape(out) == out  # idempotent: escaping twice changes nothing


def test_clip() -> None:
    assert clip("客户标签系统", 4) == "客户标…"
    assert clip("客户", 4) == "客户"
    assert len(clip_bytes("标签" * 100, 20).encode()) <= 20
