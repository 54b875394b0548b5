"""Hostile XML through the real POST /wecom/callback: outer envelope and encrypted inner message.

Every variant (odd declared encodings, BOMs, truncation, huge attributes, deep nesting, non-UTF-8 bytes,
garbage) must be a 4xx that stores nothing — never a 500 with a traceback.
"""

from __future__ import annotations

import base64
import os
import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import func, select

from app import DATABASE, WECOM, create_app
from bots.wecom.crypto import WeComCrypto, _pad
from bots.wecom.parser import MalformedXmlError, WeComXmlError, parse_envelope, parse_message
from storage import tables as t
from tests.wecom.callbacks import AES_KEY, TOKEN, envelope, settings_for
from tests.wecom.fake_api import CORP_ID, FakeWeComApi

CRYPTO = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
VALID_INNER = (
    "<xml><ToUserName>ww</ToUserName><FromUserName>zhangwei</FromUserName><CreateTime>1732510200</CreateTime>"
    "<MsgType>text</MsgType><Content>你好，报价多少钱</Content><MsgId>88001</MsgId></xml>"
)


def _declared(encoding: str, body: str = "<xml><Encrypt>a</Encrypt></xml>") -> bytes:
    return f'<?xml version="1.0" encoding="{encoding}"?>{body}'.encode()


def hostile_bodies() -> list[tuple[str, bytes]]:
    """(label, raw bytes) of hostile XML documents, each within the body size cap."""
    rng = random.Random(20250301)
    cases: list[tuple[str, bytes]] = [
        ("bogus encoding", _declared("bogus")),
        ("empty encoding", _declared("")),
        ("multi-byte encoding shift_jis", _declared("shift_jis")),
        ("multi-byte encoding gb18030", _declared("gb18030")),
        ("big5", _declared("big5")),
        ("declared utf-16, sent utf-8", _declared("utf-16")),
        ("declared utf-32", _declared("utf-32")),
        ("python-only codec", _declared("rot13")),
        ("binary codec", _declared("base64")),
        ("utf-8 BOM then bogus encoding", b"\xef\xbb\xbf" + _declared("bogus")),
        ("utf-16 BOM, utf-16 text", "\ufeff<xml><Encrypt>a</Encrypt></xml>".encode("utf-16-le")),
        ("utf-16 BOM, utf-8 text", b"\xff\xfe<xml><Encrypt>a</Encrypt></xml>"),
        ("utf-32 BOM", b"\x00\x00\xfe\xff<xml/>"),
        ("truncated", b"<xml><Encrypt>abc</Enc"),
        ("truncated declaration", b'<?xml version="1.0" encod'),
        ("empty body", b""),
        ("only whitespace", b"   \n\t "),
        ("NUL bytes", b"<xml>\x00\x00</xml>"),
        ("huge attribute", b'<xml a="' + b"x" * 60_000 + b'"><Encrypt>a</Encrypt></xml>'),
        ("many attributes", b"<xml " + b" ".join(f'a{i}="{i}"'.encode() for i in range(5000)) + b"/>"),
        ("deep nesting", b"<xml>" + b"<a>" * 7000 + b"</a>" * 7000 + b"</xml>"),
        ("unclosed deep nesting", b"<xml>" + b"<a>" * 20000),
        ("invalid UTF-8", b"<xml><Encrypt>\xc3\x28\xff\xfe</Encrypt></xml>"),
        ("latin-1 declared, odd bytes", _declared("iso-8859-1", "<xml><Encrypt>\xe9</Encrypt></xml>")),
        ("lone surrogate escaped", b"<xml><Encrypt>&#xD800;</Encrypt></xml>"),
        ("processing instruction only", b"<?xml-stylesheet href='x'?>"),
        ("CDATA never closed", b"<xml><Encrypt><![CDATA[abc</Encrypt></xml>"),
        ("undeclared entity", b"<xml><Encrypt>&nope;</Encrypt></xml>"),
        ("wrong root", b"<Xml><Encrypt>a</Encrypt></Xml>"),
        ("JSON", b'{"Encrypt": "a"}'),
    ]
    for i in range(12):
        cases.append((f"garbage {i}", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))))
        prefix = b'<?xml version="1.0"?><xml><Encrypt>'
        cases.append((f"xml prefix + garbage {i}", prefix + bytes(rng.getrandbits(8) for _ in range(200))))
    return cases


def _encrypt_bytes(message: bytes) -> str:
    """Encrypt raw inner bytes the way WeCom does (valid padding, length and corp id)."""
    key = base64.b64decode(AES_KEY + "=")
    body = os.urandom(16) + struct.pack(">I", len(message)) + message + CORP_ID.encode()
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(_pad(body)) + enc.finalize()).decode()


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


async def _stored(client: TestClient) -> int:
    async with client.app[DATABASE].engine.connect() as conn:
        rows = 0
        for table in (t.inbound_messages, t.inbound_dedup, t.customers):
            rows += int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        return rows


def test_every_hostile_body_parses_or_is_a_typed_parser_error() -> None:
    for _, body in hostile_bodies():
        for parse in (parse_envelope, parse_message):
            try:
                parse(body)
            except WeComXmlError:
                continue  # anything else escapes and fails the test (it would be a 500 in the route)


def test_unknown_declared_encoding_is_malformed_not_lookup_error() -> None:
    with pytest.raises(MalformedXmlError, match="LookupError"):
        parse_envelope(_declared("bogus"))
    with pytest.raises(MalformedXmlError):
        parse_message(_declared("bogus", VALID_INNER).decode())


async def test_hostile_outer_bodies_are_4xx_and_store_nothing(client: TestClient) -> None:
    params = {"msg_signature": "x", "timestamp": "1", "nonce": "n"}
    for label, body in hostile_bodies():
        resp = await client.post("/wecom/callback", params=params, data=body)
        assert 400 <= resp.status < 500, f"outer {label}: {resp.status} {await resp.text()}"
    await client.app[WECOM].background.drain()
    assert await _stored(client) == 0


async def test_hostile_inner_messages_are_4xx_and_store_nothing(client: TestClient) -> None:
    inner_cases = [*hostile_bodies()]
    inner_cases += [(f"{label} around a valid message", _declared(label, VALID_INNER)) for label in ("bogus", "big5")]
    inner_cases.append(("BOM before a bogus declaration", b"\xef\xbb\xbf" + _declared("bogus", VALID_INNER)))
    for label, body in inner_cases:
        encrypt = _encrypt_bytes(body)
        query = {"msg_signature": CRYPTO.signature("1", "n", encrypt), "timestamp": "1", "nonce": "n"}
        resp = await client.post("/wecom/callback", params=query, data=envelope(encrypt).encode())
        assert 400 <= resp.status < 500, f"inner {label}: {resp.status} {await resp.text()}"
    await client.app[WECOM].background.drain()
    assert await _stored(client) == 0


async def test_the_audit_reproduction_is_400(client: TestClient) -> None:
    params = {"msg_signature": "x", "timestamp": "1", "nonce": "n"}
    body = b'<?xml version="1.0" encoding="bogus"?><xml><Encrypt>a</Encrypt></xml>'
    resp = await client.post("/wecom/callback", params=params, data=body)
    assert resp.status == 400 and "callback XML refused" in await resp.text()
