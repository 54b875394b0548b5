"""Callback XML: size cap, XML attacks, envelope and inner message parsing via the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.wecom.parser import (
    MAX_BODY_BYTES,
    BodyTooLargeError,
    ExternalContactEvent,
    ExternalTagEvent,
    InvalidFieldError,
    MalformedXmlError,
    MissingFieldError,
    SelectedItem,
    TemplateCardEvent,
    TextMessage,
    UnknownEvent,
    UnsafeXmlError,
    WeComXmlError,
    parse_envelope,
    parse_message,
)

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "wecom"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


# ---------------------------------------------------------------- attacks and limits


@pytest.mark.parametrize(
    "name",
    [
        "attack_xxe_file.xml",
        "attack_billion_laughs.xml",
        "attack_external_dtd.xml",
        "attack_parameter_entity.xml",
    ],
)
@pytest.mark.parametrize("parse", [parse_envelope, parse_message])
def test_xml_attacks_are_refused_before_expansion(name: str, parse: object) -> None:
    with pytest.raises(UnsafeXmlError, match="DTDs and entities are not allowed"):
        parse(payload(name))  # type: ignore[operator]


def test_body_over_the_cap_is_refused_without_parsing() -> None:
    body = b"<xml><Encrypt>" + b"A" * MAX_BODY_BYTES + b"</Encrypt></xml>"
    with pytest.raises(BodyTooLargeError, match=str(MAX_BODY_BYTES)):
        parse_envelope(body)


def test_body_at_the_cap_is_parsed() -> None:
    head, tail = b"<xml><ToUserName>ww</ToUserName><Encrypt>", b"</Encrypt></xml>"
    body = head + b"A" * (MAX_BODY_BYTES - len(head) - len(tail)) + tail
    assert len(body) == MAX_BODY_BYTES
    assert len(parse_envelope(body).encrypt) == MAX_BODY_BYTES - len(head) - len(tail)


@pytest.mark.parametrize("body", [b"", b"<xml>", b"not xml", b"<xml><a></b></xml>", b"<xml>\x00</xml>"])
def test_malformed_xml_is_a_typed_error(body: bytes) -> None:
    with pytest.raises(MalformedXmlError, match="not well-formed"):
        parse_envelope(body)


def test_wrong_root_is_refused() -> None:
    with pytest.raises(MalformedXmlError, match="root <html>"):
        parse_envelope(b"<html><Encrypt>x</Encrypt></html>")


# ---------------------------------------------------------------- envelope


def test_envelope_fields() -> None:
    env = parse_envelope(payload("official_sample_post.xml"))
    assert env.to_user_name == "ww1436e0e65a779aee"
    assert env.encrypt.startswith("Kl7kjoSf6DMD") and env.agent_id == "1000002"


def test_envelope_without_agent_id_is_fine_for_external_contact_callbacks() -> None:
    env = parse_envelope("<xml><ToUserName>ww</ToUserName><Encrypt>abc</Encrypt></xml>")
    assert env.agent_id is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("<xml><ToUserName>ww</ToUserName></xml>", "Encrypt"),
        ("<xml><ToUserName>ww</ToUserName><Encrypt>  </Encrypt></xml>", "Encrypt"),
        ("<xml><Encrypt>abc</Encrypt></xml>", "ToUserName"),
    ],
)
def test_envelope_missing_field_is_named(body: str, field: str) -> None:
    with pytest.raises(MissingFieldError, match=f"<{field}>") as info:
        parse_envelope(body)
    assert info.value.field == field


# ---------------------------------------------------------------- inner messages


def test_text_message() -> None:
    msg = parse_message(payload("text_message.xml"))
    assert msg == TextMessage(
        msg_id="7441234567890123456",
        from_user="zhangwei",
        to_user="ww_kebiao_test",
        content="ABC公司想要一份报价单，客户说价格有点高",
        create_time=1732510000,
        agent_id="1000002",
    )
    assert msg.dedupe_key == "7441234567890123456"


def test_text_content_keeps_its_whitespace() -> None:
    xml = (
        "<xml><ToUserName>ww</ToUserName><FromUserName>lina</FromUserName><CreateTime>1</CreateTime>"
        "<MsgType>text</MsgType><Content><![CDATA[  tag ABC公司 +VIP客户\n]]></Content><MsgId>9</MsgId></xml>"
    )
    msg = parse_message(xml)
    assert isinstance(msg, TextMessage) and msg.content == "  tag ABC公司 +VIP客户\n"


def test_template_card_event() -> None:
    msg = parse_message(payload("template_card_event.xml"))
    assert isinstance(msg, TemplateCardEvent)
    assert (msg.event_key, msg.task_id, msg.card_type, msg.response_code) == (
        "accept:sug-42",
        "suggest-42",
        "button_interaction",
        "rc-abcdef",
    )
    assert msg.selected_items == (SelectedItem("stage", ("询价客户", "意向客户")),)
    assert msg.dedupe_key == "template_card_event||zhangwei|suggest-42|accept:sug-42|1732510100"


def test_add_external_contact_carries_the_channel_state() -> None:
    msg = parse_message(payload("add_external_contact.xml"))
    assert msg == ExternalContactEvent(
        change_type="add_external_contact",
        user_id="zhangwei",
        external_user_id="wmABC123customer",
        create_time=1732510200,
        state="展会渠道码",
        welcome_code="WELCOME-001",
    )
    assert (
        msg.dedupe_key == "change_external_contact|add_external_contact|zhangwei|wmABC123customer|1732510200"
    )


@pytest.mark.parametrize(
    ("change_type", "extra"),
    [
        ("edit_external_contact", ""),
        ("del_external_contact", "<Source><![CDATA[DELETE_BY_TRANSFER]]></Source>"),
        ("del_follow_user", ""),
        ("add_half_external_contact", "<State>活动码</State><WelcomeCode>W2</WelcomeCode>"),
        ("transfer_fail", "<FailReason><![CDATA[customer_refused]]></FailReason>"),
    ],
)
def test_every_external_contact_change_type(change_type: str, extra: str) -> None:
    xml = (
        "<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>1732510300</CreateTime>"
        f"<MsgType>event</MsgType><Event>change_external_contact</Event><ChangeType>{change_type}</ChangeType>"
        f"<UserID>zhangwei</UserID><ExternalUserID>wmXYZ</ExternalUserID>{extra}</xml>"
    )
    msg = parse_message(xml)
    assert isinstance(msg, ExternalContactEvent) and msg.change_type == change_type
    assert msg.dedupe_key == f"change_external_contact|{change_type}|zhangwei|wmXYZ|1732510300"
    if change_type == "del_external_contact":
        assert msg.source == "DELETE_BY_TRANSFER"
    if change_type == "transfer_fail":
        assert msg.fail_reason == "customer_refused"


def test_del_follow_user_payload() -> None:
    msg = parse_message(payload("del_follow_user.xml"))
    assert isinstance(msg, ExternalContactEvent) and msg.state is None


def test_external_tag_change() -> None:
    msg = parse_message(payload("change_external_tag.xml"))
    assert msg == ExternalTagEvent("create", "etTAG001", "tag", 1732510400, "3")
    assert msg.dedupe_key == "change_external_tag|create|tag|etTAG001|1732510400"


def test_external_tag_shuffle_of_all_groups_has_no_id() -> None:
    xml = (
        "<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>5</CreateTime>"
        "<MsgType>event</MsgType><Event>change_external_tag</Event><ChangeType>shuffle</ChangeType></xml>"
    )
    msg = parse_message(xml)
    assert isinstance(msg, ExternalTagEvent) and (msg.tag_id, msg.tag_type) == ("", "tag_group")


def test_unhandled_event_is_unknown_and_still_dedupable() -> None:
    msg = parse_message(payload("enter_agent.xml"))
    assert isinstance(msg, UnknownEvent)
    assert (msg.msg_type, msg.event, msg.from_user) == ("event", "enter_agent", "lina")
    assert ("EventKey", "") in msg.fields
    assert msg.dedupe_key == "enter_agent||lina|1732510500"


def test_unknown_change_type_of_a_known_event_is_unknown() -> None:
    xml = (
        "<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName><CreateTime>7</CreateTime>"
        "<MsgType>event</MsgType><Event>change_external_contact</Event><ChangeType>msg_audit_approved</ChangeType>"
        "<UserID>u</UserID></xml>"
    )
    msg = parse_message(xml)
    assert isinstance(msg, UnknownEvent) and msg.change_type == "msg_audit_approved"
    assert msg.dedupe_key == "change_external_contact|msg_audit_approved|sys|7"


def test_unknown_message_type_dedupes_by_msg_id() -> None:
    xml = (
        "<xml><ToUserName>ww</ToUserName><FromUserName>lina</FromUserName><CreateTime>8</CreateTime>"
        "<MsgType>image</MsgType><PicUrl>http://x</PicUrl><MsgId>123</MsgId></xml>"
    )
    msg = parse_message(xml)
    assert isinstance(msg, UnknownEvent) and msg.dedupe_key == "123"


@pytest.mark.parametrize(
    ("xml", "field", "where"),
    [
        (
            "<xml><MsgType>text</MsgType><FromUserName>a</FromUserName><ToUserName>w</ToUserName>"
            "<CreateTime>1</CreateTime><Content>hi</Content></xml>",
            "MsgId",
            "text",
        ),
        (
            "<xml><MsgType>text</MsgType><MsgId>1</MsgId><FromUserName>a</FromUserName><ToUserName>w</ToUserName>"
            "<CreateTime>1</CreateTime></xml>",
            "Content",
            "text",
        ),
        (
            "<xml><MsgType>event</MsgType><Event>change_external_contact</Event><ChangeType>add_external_contact"
            "</ChangeType><CreateTime>1</CreateTime><UserID>u</UserID></xml>",
            "ExternalUserID",
            "event/change_external_contact/add_external_contact",
        ),
        (
            "<xml><MsgType>event</MsgType><Event>template_card_event</Event><FromUserName>a</FromUserName>"
            "<CreateTime>1</CreateTime><EventKey>k</EventKey><CardType>button_interaction</CardType></xml>",
            "TaskId",
            "event/template_card_event",
        ),
        ("<xml><CreateTime>1</CreateTime></xml>", "MsgType", "decrypted message"),
    ],
)
def test_missing_required_field_names_the_field_and_the_message_type(
    xml: str, field: str, where: str
) -> None:
    with pytest.raises(MissingFieldError) as info:
        parse_message(xml)
    assert info.value.field == field
    assert where in str(info.value)


def test_non_integer_create_time_is_refused() -> None:
    xml = (
        "<xml><MsgType>text</MsgType><MsgId>1</MsgId><FromUserName>a</FromUserName><ToUserName>w</ToUserName>"
        "<CreateTime>昨天</CreateTime><Content>hi</Content></xml>"
    )
    with pytest.raises(InvalidFieldError, match="CreateTime"):
        parse_message(xml)


def test_all_parser_errors_share_one_base() -> None:
    for cls in (BodyTooLargeError, UnsafeXmlError, MalformedXmlError, MissingFieldError, InvalidFieldError):
        assert issubclass(cls, WeComXmlError)
