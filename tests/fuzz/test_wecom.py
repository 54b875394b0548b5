"""Fuzz GET/POST /wecom/callback through the real app: signed and encrypted with the test corp's keys, so every
body reaches the XML parser and the handlers. No 5xx; nothing logged as an error, background work included.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app import WECOM
from bots.wecom.crypto import WeComCrypto
from core.verbs import ALL_VERBS
from tests.fuzz.conftest import FUZZ, FUZZ_LONG, ErrorLog, Statuses
from tests.fuzz.hostile import HOSTILE_TEXT
from tests.wecom.callbacks import AES_KEY, TOKEN, envelope
from tests.wecom.fake_api import AGENT_ID, CORP_ID

CRYPTO = WeComCrypto(TOKEN, AES_KEY, CORP_ID)
PATH = "/wecom/callback"

# Inner messages as field lists (order kept); the fuzz replaces, drops or adds fields.
MESSAGES: list[list[tuple[str, str]]] = [
    [("MsgType", "text"), ("FromUserName", "zhangwei"), ("Content", "绑定 ABC公司"), ("MsgId", "7000001")],
    [("MsgType", "text"), ("FromUserName", "zhangwei"), ("Content", "tag ABC公司 +VIP客户"), ("MsgId", "7000002")],
    [
        ("MsgType", "event"),
        ("Event", "change_external_contact"),
        ("ChangeType", "add_external_contact"),
        ("UserID", "zhangwei"),
        ("ExternalUserID", "wmABC123customer"),
        ("State", "expo2025"),
        ("WelcomeCode", "wc-1"),
    ],
    [
        ("MsgType", "event"),
        ("Event", "change_external_contact"),
        ("ChangeType", "del_follow_user"),
        ("UserID", "zhangwei"),
        ("ExternalUserID", "wmABC123customer"),
    ],
    [
        ("MsgType", "event"),
        ("Event", "template_card_event"),
        ("FromUserName", "zhangwei"),
        ("EventKey", "suggestion.accept:1"),
        ("TaskId", "kb-task1"),
        ("CardType", "button_interaction"),
        ("ResponseCode", "rc-1"),
    ],
    [
        ("MsgType", "event"),
        ("Event", "change_external_tag"),
        ("ChangeType", "create"),
        ("Id", "et1"),
        ("TagType", "tag"),
    ],
    [("MsgType", "event"), ("Event", "change_external_tag"), ("ChangeType", "shuffle")],
    [("MsgType", "event"), ("Event", "enter_agent"), ("FromUserName", "zhangwei"), ("EventKey", "")],
]
FIELD_NAMES = sorted({name for message in MESSAGES for name, _ in message} | {"CreateTime", "AgentID", "ToUserName"})

VALUES = st.one_of(
    HOSTILE_TEXT,
    st.text(max_size=40),
    st.sampled_from(["9" * 5000, "99999999999999999999", "-5", "1e9", "０１", "]]>", "<x>1</x>", "&amp;", "&#0;"]),
    st.builds(
        lambda v, n: f"{v}:{n}", st.sampled_from(sorted(ALL_VERBS)), st.sampled_from(["1", "0", "9" * 30, "1,x"])
    ),
)


NUMBERS = st.sampled_from(["9" * 5000, "9" * 19, "99999999999999999999", "0", "-1", "1.5", "１２", " 12 ", ""])
NUMERIC = ("CreateTime", "MsgId", "AgentID")


def _field(name: str, value: str, raw: bool) -> str:
    return f"<{name}>{value}</{name}>" if raw else f"<{name}>{escape(value)}</{name}>"


@st.composite
def inner_xml(draw: st.DrawFn) -> str:
    """A plausible callback with one to three fields replaced, dropped or added (sometimes unescaped)."""
    fields = dict(draw(st.sampled_from(MESSAGES)))
    fields.setdefault("ToUserName", CORP_ID)
    fields.setdefault("CreateTime", "1732510200")
    fields.setdefault("AgentID", AGENT_ID)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(FIELD_NAMES) | st.sampled_from(NUMERIC))
        if draw(st.integers(0, 4)) == 0:
            fields.pop(name, None)
        else:
            fields[name] = draw(NUMBERS if name in NUMERIC and draw(st.booleans()) else VALUES)
    raw = draw(st.integers(0, 9)) == 0
    body = "".join(_field(name, value, raw) for name, value in fields.items())
    return f"<xml>{body}</xml>"


INNER = st.one_of(
    inner_xml(),
    inner_xml(),
    inner_xml(),
    st.text(max_size=200),
    st.sampled_from(["", "<xml/>", "<xml><MsgType>text</MsgType>", "<!DOCTYPE x [<!ENTITY a 'b'>]><xml>&a;</xml>"]),
)


def _encodable(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@FUZZ_LONG
@given(inner=INNER, timestamp=st.sampled_from(["1732510200", "", "9" * 5000, "\u00bd"]), nonce=st.text(max_size=12))
async def test_signed_encrypted_callbacks_are_answered_below_500(
    served: TestClient, server_errors: ErrorLog, statuses: Statuses, inner: str, timestamp: str, nonce: str
) -> None:
    encrypt = CRYPTO.encrypt(_encodable(inner))
    query = {"msg_signature": CRYPTO.signature(timestamp, nonce, encrypt), "timestamp": timestamp, "nonce": nonce}
    response = await served.post(PATH, params=query, data=envelope(encrypt).encode())
    statuses.add(response.status)
    assert response.status < 500, (response.status, await response.text())
    await served.app[WECOM].background.drain()
    server_errors.check()


@FUZZ
@given(
    query=st.dictionaries(
        st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]), st.text(max_size=60), max_size=4
    ),
    body=st.one_of(st.binary(max_size=400), st.text(max_size=300).map(lambda t: _encodable(t).encode())),
    method=st.sampled_from(["GET", "POST"]),
)
async def test_unsigned_requests_are_refused_below_500(
    served: TestClient, server_errors: ErrorLog, query: dict[str, str], body: bytes, method: str
) -> None:
    params = {k: _encodable(v) for k, v in query.items()}
    response = await served.request(method, PATH, params=params, data=body)
    assert 400 <= response.status < 500, (response.status, await response.text())
    server_errors.check()


@FUZZ
@given(echo=st.text(max_size=200), timestamp=st.text(max_size=20), nonce=st.text(max_size=20))
async def test_url_verification_with_a_valid_signature_is_answered_below_500(
    served: TestClient, server_errors: ErrorLog, echo: str, timestamp: str, nonce: str
) -> None:
    """A correctly signed echostr that is not a valid encrypted payload (or is one): never a 5xx."""
    echostr = _encodable(echo)
    signature = CRYPTO.signature(_encodable(timestamp), _encodable(nonce), echostr)
    query = {"msg_signature": signature, "timestamp": _encodable(timestamp), "nonce": _encodable(nonce)}
    response = await served.get(PATH, params={**query, "echostr": echostr})
    assert response.status < 500, (response.status, await response.text())
    server_errors.check()
