"""GET/POST /wecom/callback through the real app: crypto and XML refusals, de-duplication, chat and clicks."""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import func, select

from app import DATABASE, WECOM, create_app
from bots.wecom.crypto import WeComCrypto
from bots.wecom.parser import MAX_BODY_BYTES
from cards.wecom import button_key
from core.types import SuggestionStatus
from storage import tables as t
from tests.wecom import official_sample as official
from tests.wecom.callbacks import (
    AES_KEY,
    TOKEN,
    card_click_xml,
    contact_xml,
    envelope,
    settings_for,
    signed,
    text_xml,
)
from tests.wecom.fake_api import CORP_ID, FakeWeComApi

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "wecom"
CRYPTO = WeComCrypto(TOKEN, AES_KEY, CORP_ID)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


async def settle(client: TestClient) -> None:
    """Wait for the work started after the acknowledgements."""
    await client.app[WECOM].background.drain()


async def count(client: TestClient, table: Any) -> int:
    async with client.app[DATABASE].engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def post(client: TestClient, inner: str, crypto: WeComCrypto = CRYPTO) -> tuple[int, str]:
    query, body = signed(crypto, inner)
    resp = await client.post("/wecom/callback", params=query, data=body.encode())
    return resp.status, await resp.text()


# ---------------------------------------------------------------- verification and refusals


async def test_official_sample_url_verification_and_post(
    aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi
) -> None:
    settings = settings_for(
        tmp_path, fake_wecom.api_base, token=official.TOKEN, key=official.ENCODING_AES_KEY, corp=official.CORP_ID
    )
    client = await aiohttp_client(create_app(settings))
    resp = await client.get(
        "/wecom/callback",
        params={
            "msg_signature": official.VERIFY_MSG_SIGNATURE,
            "timestamp": official.VERIFY_TIMESTAMP,
            "nonce": official.VERIFY_NONCE,
            "echostr": official.VERIFY_ECHOSTR,
        },
    )
    assert resp.status == 200
    plain = WeComCrypto(official.TOKEN, official.ENCODING_AES_KEY, official.CORP_ID).decrypt(official.VERIFY_ECHOSTR)
    assert await resp.text() == plain
    body = (PAYLOADS / "official_sample_post.xml").read_bytes()
    params = {
        "msg_signature": official.POST_MSG_SIGNATURE,
        "timestamp": official.POST_TIMESTAMP,
        "nonce": official.POST_NONCE,
    }
    resp = await client.post("/wecom/callback", params=params, data=body)
    assert resp.status == 200 and await resp.text() == ""
    await settle(client)
    assert await count(client, t.inbound_messages) == 1  # MsgId 1456453720 stored once (the inbox row is the claim)


async def test_url_verification_with_a_wrong_signature_is_403(client: TestClient) -> None:
    echostr = CRYPTO.encrypt("echo-回声")
    good = CRYPTO.signature("1", "n", echostr)
    resp = await client.get(
        "/wecom/callback", params={"msg_signature": good, "timestamp": "1", "nonce": "n", "echostr": echostr}
    )
    assert resp.status == 200 and await resp.text() == "echo-回声"
    bad = "0" * 40
    resp = await client.get(
        "/wecom/callback", params={"msg_signature": bad, "timestamp": "1", "nonce": "n", "echostr": echostr}
    )
    assert resp.status == 403


async def test_missing_query_parameters_are_named(client: TestClient) -> None:
    resp = await client.post("/wecom/callback", params={"timestamp": "1"}, data=b"<xml/>")
    assert resp.status == 400
    assert "msg_signature" in await resp.text() and "nonce" in await resp.text()


async def test_bad_signature_is_refused_and_stores_nothing(client: TestClient) -> None:
    query, body = signed(CRYPTO, contact_xml("add_external_contact"))
    query["msg_signature"] = "f" * 40
    resp = await client.post("/wecom/callback", params=query, data=body.encode())
    assert resp.status == 403
    await settle(client)
    assert await count(client, t.inbound_messages) == 0 and await count(client, t.customers) == 0


def _encrypt_raw(plain_body: bytes, key: str = AES_KEY) -> str:
    """Encrypt an envelope body as given (no padding added): for malformed-padding cases."""
    aes = base64.b64decode(key + "=")
    enc = Cipher(algorithms.AES(aes), modes.CBC(aes[:16])).encryptor()
    return base64.b64encode(enc.update(plain_body) + enc.finalize()).decode()


async def test_bad_padding_is_400(client: TestClient) -> None:
    message = contact_xml("add_external_contact").encode()
    body = os.urandom(16) + struct.pack(">I", len(message)) + message + CORP_ID.encode()
    body += b"\x00" * (32 - len(body) % 32)  # zero bytes: not PKCS#7
    encrypt = _encrypt_raw(body)
    query = {"msg_signature": CRYPTO.signature("1", "n", encrypt), "timestamp": "1", "nonce": "n"}
    resp = await client.post("/wecom/callback", params=query, data=envelope(encrypt).encode())
    assert resp.status == 400
    assert await count(client, t.inbound_messages) == 0


async def test_wrong_corp_id_is_400(client: TestClient) -> None:
    other = WeComCrypto(TOKEN, AES_KEY, "ww_another_corp")
    status, _ = await post(client, contact_xml("add_external_contact"), crypto=other)
    assert status == 400
    assert await count(client, t.customers) == 0


@pytest.mark.parametrize(
    "attack",
    ["attack_billion_laughs.xml", "attack_xxe_file.xml", "attack_external_dtd.xml", "attack_parameter_entity.xml"],
)
async def test_hostile_xml_inside_and_outside_the_envelope_is_400(client: TestClient, attack: str) -> None:
    hostile = (PAYLOADS / attack).read_text(encoding="utf-8")
    status, _ = await post(client, hostile)  # encrypted and correctly signed
    assert status == 400
    resp = await client.post(
        "/wecom/callback", params={"msg_signature": "a" * 40, "timestamp": "1", "nonce": "n"}, data=hostile.encode()
    )
    assert resp.status == 400  # outer envelope refused before any signature check could matter
    assert await count(client, t.inbound_messages) == 0


async def test_oversized_body_is_413_by_length_and_by_stream(client: TestClient) -> None:
    params = {"msg_signature": "a" * 40, "timestamp": "1", "nonce": "n"}
    big = b"<xml>" + b"x" * (MAX_BODY_BYTES + 10) + b"</xml>"
    resp = await client.post("/wecom/callback", params=params, data=big)
    assert resp.status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap must stop the read
        for _ in range(4):
            yield b"y" * (MAX_BODY_BYTES // 2)

    resp = await client.post("/wecom/callback", params=params, data=chunks())
    assert resp.status == 413
    assert await count(client, t.inbound_messages) == 0


async def test_not_well_formed_inner_xml_is_400_never_500(client: TestClient) -> None:
    for inner in (
        "<xml><MsgType>text",
        "<note>你好</note>",
        "<xml><MsgType>text</MsgType><CreateTime>soon</CreateTime></xml>",
    ):
        status, _ = await post(client, inner)
        assert status == 400, inner


# ---------------------------------------------------------------- effects, de-duplication


async def test_same_add_event_posted_four_times_has_one_effect(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.add_contact("wmABC123customer", "李娜", ["zhangwei"])
    fake_wecom.contacts["wmABC123customer"]["external_contact"]["corp_name"] = "上海明远科技"
    inner = contact_xml("add_external_contact", state="expo2025")
    for _ in range(4):
        status, text = await post(client, inner)
        assert (status, text) == (200, "")
    await settle(client)
    assert await count(client, t.customers) == 1
    assert await count(client, t.tag_events) == 1
    async with client.app[DATABASE].unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact("wmABC123customer")
        held = await uow.assignments.active_for(customer.id)
    assert (customer.name, customer.company, customer.owner) == ("李娜", "上海明远科技", "zhangwei")
    assert [(a.tag, a.source.value) for a in held] == [("展会获客", "channel")]
    assert len(fake_wecom.calls_to("externalcontact/get")) == 1
    (mark,) = fake_wecom.calls_to("externalcontact/mark_tag")  # channel tag mirrored once
    assert mark.body and mark.body["userid"] == "zhangwei" and mark.body["external_userid"] == "wmABC123customer"
    created = fake_wecom.calls_to("externalcontact/add_corp_tag")
    assert created and created[0].body and created[0].body["tag"] == [{"name": "展会获客"}]


async def test_customer_deleting_the_agent_is_a_churn_signal(client: TestClient) -> None:
    await post(client, contact_xml("add_external_contact", created=100))
    await post(client, contact_xml("del_follow_user", created=200))
    await settle(client)
    async with client.app[DATABASE].unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact("wmABC123customer")
    assert customer.attributes["wecom_status"] == "lost_by_customer"
    assert customer.attributes["wecom_lost_by"] == "zhangwei"


async def test_agent_text_command_tags_and_replies_in_markdown(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    await post(client, contact_xml("add_external_contact"))
    await settle(client)
    async with client.app[DATABASE].unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact("wmABC123customer")
    for _ in range(2):  # a retried message tags once and answers once
        status, _ = await post(client, text_xml(f"tag {customer.name} +VIP客户", msg_id="8800001"))
        assert status == 200
    await settle(client)
    async with client.app[DATABASE].unit_of_work() as uow:
        assert [a.tag for a in await uow.assignments.active_for(customer.id)] == ["VIP客户"]
    sends = fake_wecom.calls_to("message/send")
    assert len(sends) == 1 and sends[0].body
    assert sends[0].body["msgtype"] == "markdown" and sends[0].body["touser"] == "zhangwei"
    assert "VIP客户" in sends[0].body["markdown"]["content"]
    marks = fake_wecom.calls_to("externalcontact/mark_tag")
    assert marks and marks[-1].body and marks[-1].body["add_tag"]


async def test_unknown_text_gets_help(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    await post(client, text_xml("今天天气不错", msg_id="8800002"))
    await settle(client)
    (send,) = fake_wecom.calls_to("message/send")
    assert send.body and send.body["msgtype"] == "markdown"


async def test_button_click_accepts_a_suggestion_and_updates_the_card(
    client: TestClient, fake_wecom: FakeWeComApi
) -> None:
    await post(client, contact_xml("add_external_contact"))
    await settle(client)
    database = client.app[DATABASE]
    now = __import__("datetime").datetime(2025, 3, 1, tzinfo=__import__("datetime").UTC)
    async with database.unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact("wmABC123customer")
        row = await uow.suggestions.add_if_absent(
            customer.id,
            "wecom:m1",
            "stage",
            "询价客户",
            0.9,
            {"matched": ["报价"], "excerpt": "报价多少"},
            now,
            SuggestionStatus.PENDING,
            False,
            None,
        )
    assert row is not None
    key = button_key("suggestion.accept", [row.id])
    for _ in range(3):
        status, _ = await post(client, card_click_xml(key))
        assert status == 200
    await settle(client)
    async with database.unit_of_work() as uow:
        decided = await uow.suggestions.get(row.id)
        held = [a.tag for a in await uow.assignments.active_for(customer.id)]
    assert decided and decided.status is SuggestionStatus.ACCEPTED and decided.decided_by == "zhangwei"
    assert held == ["询价客户"]
    (update,) = fake_wecom.calls_to("message/update_template_card")
    assert update.body and update.body["response_code"] == "rc-click-1"


async def test_foreign_button_key_is_ignored_quietly(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    status, _ = await post(client, card_click_xml("accept:sug-42"))
    assert status == 200
    await settle(client)
    assert fake_wecom.calls_to("message/update_template_card") == []
