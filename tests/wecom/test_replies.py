"""Passive replies and message/send payload builders."""

from __future__ import annotations

import pytest

from bots.wecom.crypto import WeComCrypto
from bots.wecom.parser import TextMessage, parse_envelope, parse_message, parse_xml
from bots.wecom.replies import (
    BUTTONS_MAX,
    MARKDOWN_MAX_BYTES,
    CardButton,
    HorizontalItem,
    button_interaction_card,
    encrypted_reply_xml,
    escape_markdown,
    markdown_message,
    recipients,
    template_card_message,
    text_reply_xml,
    truncate_bytes,
    truncate_chars,
)
from tests.wecom import official_sample as S


def test_encrypted_reply_round_trips_through_our_own_inbound_path() -> None:
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    inner = text_reply_xml(
        "ChenJiaShun", S.CORP_ID, "已为 ABC公司 打上标签：询价客户 ]]> <b>", create_time=1476422779
    )
    body = encrypted_reply_xml(crypto, inner, "1476422779", "1597212914")
    root = parse_xml(body)
    signature, timestamp, nonce = (root.findtext(n) for n in ("MsgSignature", "TimeStamp", "Nonce"))
    assert (timestamp, nonce) == ("1476422779", "1597212914")
    encrypt = parse_envelope(
        f"<xml><ToUserName>x</ToUserName><Encrypt>{root.findtext('Encrypt')}</Encrypt></xml>"
    )
    plain = crypto.decrypt_message(signature or "", timestamp or "", nonce or "", encrypt.encrypt)
    assert plain == inner
    reply = parse_xml(plain)
    assert reply.findtext("Content") == "已为 ABC公司 打上标签：询价客户 ]]> <b>"
    assert reply.findtext("MsgType") == "text" and reply.findtext("FromUserName") == S.CORP_ID


def test_passive_text_reply_is_cut_to_2048_bytes() -> None:
    xml = text_reply_xml("u", "ww", "标" * 1000, create_time=1)
    content = parse_xml(xml).findtext("Content") or ""
    assert len(content.encode()) <= 2048 and content.endswith("…")


@pytest.mark.parametrize(
    ("timestamp", "nonce"), [("12a", "abc"), ("123", "a b"), ("123", ""), ("123", "<x>")]
)
def test_reply_refuses_odd_timestamp_or_nonce(timestamp: str, nonce: str) -> None:
    crypto = WeComCrypto(S.TOKEN, S.ENCODING_AES_KEY, S.CORP_ID)
    with pytest.raises(ValueError):
        encrypted_reply_xml(crypto, "<xml/>", timestamp, nonce)


def test_inner_text_message_parses_back() -> None:
    xml = text_reply_xml("lina", "ww", "好的", create_time=3).replace(
        "<MsgType>", "<MsgId>1</MsgId><MsgType>"
    )
    assert isinstance(parse_message(xml), TextMessage)


def test_truncation_helpers() -> None:
    assert truncate_chars("沉默客户", 10) == "沉默客户"
    assert truncate_chars("高价值潜力客户群体", 5) == "高价值潜…"
    assert truncate_bytes("ab", 2) == "ab"
    cut = truncate_bytes("价" * 10, 10)
    assert len(cut.encode()) <= 10 and cut.endswith("…")


def test_escape_markdown_neutralises_links_mentions_and_colour_tags() -> None:
    text = '**VIP** [点我](http://evil) <@zhangwei> <font color="warning">急</font> # 标题 `x` a_b \\'
    escaped = escape_markdown(text)
    for ch in "*[]<>#`_\\":
        assert ch not in escaped
    assert "VIP" in escaped and "点我" in escaped


def test_markdown_message_payload() -> None:
    payload = markdown_message(f"**客户** {escape_markdown('ABC*公司')}", to_users=["zhangwei", "lina"])
    assert payload == {
        "touser": "zhangwei|lina",
        "msgtype": "markdown",
        "markdown": {"content": "**客户** ABC＊公司"},
    }


def test_markdown_content_is_cut_to_the_byte_limit() -> None:
    payload = markdown_message("流失预警" * 400, to_tags=["3"])
    assert len(payload["markdown"]["content"].encode()) <= MARKDOWN_MAX_BYTES
    assert payload["totag"] == "3"


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"to_users": ["a|b"]}, {"to_users": [""]}, {"to_users": ["u"] * 1001}, {"to_parties": ["1"] * 101}],
)
def test_bad_recipients_are_refused(kwargs: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        recipients(**kwargs)


def test_empty_markdown_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        markdown_message("  ", to_users=["u"])


def test_button_interaction_card() -> None:
    card = button_interaction_card(
        "suggest-42",
        "建议为 ABC公司 添加标签",
        [CardButton("接受", "accept:42", style=1), CardButton("拒绝", "reject:42", style=2)],
        description="来自聊天关键词：报价",
        sub_title_text="客户：我们想要一份报价单",
        horizontal=[HorizontalItem("标签", "询价客户"), HorizontalItem("维度", "需求阶段")],
        source_desc="客标",
    )
    assert card == {
        "card_type": "button_interaction",
        "task_id": "suggest-42",
        "source": {"desc": "客标"},
        "main_title": {"title": "建议为 ABC公司 添加标签", "desc": "来自聊天关键词：报价"},
        "sub_title_text": "客户：我们想要一份报价单",
        "horizontal_content_list": [
            {"keyname": "标签", "value": "询价客户"},
            {"keyname": "维度", "value": "需求阶段"},
        ],
        "button_list": [
            {"type": 0, "text": "接受", "style": 1, "key": "accept:42"},
            {"type": 0, "text": "拒绝", "style": 2, "key": "reject:42"},
        ],
    }
    message = template_card_message(card, to_users=["zhangwei"])
    assert message["msgtype"] == "template_card" and message["touser"] == "zhangwei"


def test_card_texts_are_truncated_to_wecom_limits() -> None:
    card = button_interaction_card(
        "t1",
        "标" * 50,
        [CardButton("非常非常非常非常长的按钮文字", "k")],
        description="述" * 60,
        sub_title_text="文" * 200,
        horizontal=[HorizontalItem("很长的二级标题", "值" * 40)],
    )
    assert len(card["main_title"]["title"]) == 36 and card["main_title"]["title"].endswith("…")
    assert len(card["main_title"]["desc"]) == 44
    assert len(card["sub_title_text"]) == 160
    assert card["horizontal_content_list"][0] == {"keyname": "很长的二…", "value": "值" * 29 + "…"}
    assert len(card["button_list"][0]["text"]) == 10


@pytest.mark.parametrize(
    ("task_id", "title", "buttons", "fragment"),
    [
        ("有中文", "t", [CardButton("a", "k")], "task_id"),
        ("a" * 129, "t", [CardButton("a", "k")], "128"),
        ("t", " ", [CardButton("a", "k")], "title"),
        ("t", "t", [], "1..6"),
        ("t", "t", [CardButton(str(i), f"k{i}") for i in range(BUTTONS_MAX + 1)], "1..6"),
        ("t", "t", [CardButton("a", "k"), CardButton("b", "k")], "unique"),
        ("t", "t", [CardButton("a", "k" * 1025)], "1024"),
        ("t", "t", [CardButton("a", "k", style=5)], "style"),
        ("t", "t", [CardButton("a", "")], "key"),
    ],
)
def test_card_structure_limits_are_refused(
    task_id: str, title: str, buttons: list[CardButton], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        button_interaction_card(task_id, title, buttons)


def test_too_many_horizontal_items_is_refused() -> None:
    with pytest.raises(ValueError, match="horizontal"):
        button_interaction_card("t", "t", [CardButton("a", "k")], horizontal=[HorizontalItem("a", "b")] * 7)
