"""Fuzz POST /api/messages through the real app, bot and botbuilder adapter: no 5xx, nothing logged as an error.

In emulator mode (no app id) every body reaches parsing and, when well-formed, the bot and the database.
With authentication on (tokens minted locally, as the Bot Connector would), a body without a valid token is
refused with 401 whatever it holds, before it is parsed; with a valid token the body is fuzzed as above.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from app import TEAMS
from bots.teams.adapter import close_adapter, create_adapter
from bots.teams.auth import BotFrameworkEndpoints, build_authentication
from core.verbs import DATA_KEYS
from tests.fuzz.conftest import FUZZ, FUZZ_LONG, ErrorLog, Statuses
from tests.fuzz.hostile import GARBAGE, HOSTILE_INT, HOSTILE_TEXT, JSON_VALUE, dumps, mutated
from tests.teams.conftest import APP_ID, APP_PASSWORD, Credentials
from tests.teams.tokens import ISSUER, LocalCredentialFactory, OpenIdServer, SigningKey, mint_token

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads" / "teams"
JSON_TYPE = {"Content-Type": "application/json"}
SERVICE = "https://connector.fuzz.invalid/"  # replaced by the catch-all connector's URL when sent


def _bases(service_url: str) -> list[dict[str, Any]]:
    """Every recorded activity, card actions for every verb, and a few commands, pointed at `service_url`."""
    bases = []
    for path in sorted(PAYLOADS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["serviceUrl"] = service_url
        bases.append(data)
    card = next(b for b in bases if b.get("name") == "adaptiveCard/action")
    for verb, keys in DATA_KEYS.items():
        action = json.loads(json.dumps(card))
        action["value"]["action"].update(verb=verb, data={k: 1 for k in keys})
        bases.append(action)
    message = json.loads((PAYLOADS / "personal_message.json").read_text(encoding="utf-8"))
    message["serviceUrl"] = service_url
    for text in ("tag ABC公司 +VIP客户", "查看 ABC公司", "搜索 VIP客户 AND 询价客户", "绑定 ABC公司", "退款 报价"):
        bases.append({**message, "text": text})
    return bases


DATA_VALUES = st.one_of(HOSTILE_INT, HOSTILE_INT.map(str), HOSTILE_TEXT, JSON_VALUE)
DATA_NAMES = sorted({k for keys in DATA_KEYS.values() for k in keys} | {"verb", "add", "remove", "tag"})


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    node = data
    for step in path[:-1]:
        node = node.setdefault(step, {})
    node[path[-1]] = value
    return data


def _invokes(bases: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Card actions and message-extension invokes whose data carries hostile numbers and texts."""
    by_name = {b.get("name"): b for b in bases if b.get("type") == "invoke"}
    card, query = by_name["adaptiveCard/action"], by_name["composeExtension/query"]
    submit = by_name["composeExtension/submitAction"]
    return st.one_of(
        st.builds(
            lambda verb, data: _with(_with(card, ("value", "action", "verb"), verb), ("value", "action", "data"), data),
            st.sampled_from([*sorted(DATA_KEYS), "nonsense"]),
            st.dictionaries(st.sampled_from(DATA_NAMES), DATA_VALUES, max_size=4),
        ),
        st.builds(
            lambda skip, count: _with(query, ("value", "queryOptions"), {"skip": skip, "count": count}),
            DATA_VALUES,
            DATA_VALUES,
        ),
        st.builds(
            lambda customer, tags: _with(submit, ("value", "data"), {"customer": customer, "tags": tags}),
            DATA_VALUES,
            DATA_VALUES,
        ),
    )


def _bodies() -> st.SearchStrategy[bytes]:
    bases = _bases(SERVICE)
    texts = st.builds(lambda b, t: {**b, "text": t}, st.sampled_from(bases[-5:]), HOSTILE_TEXT)
    activities = st.one_of(mutated(bases, keep=frozenset({"serviceUrl"})), texts, _invokes(bases))
    return st.one_of(activities.map(dumps), activities.map(dumps), JSON_VALUE.map(dumps), GARBAGE)


BODIES = _bodies()


def _aimed(body: bytes, connector_url: str) -> bytes:
    return body.replace(SERVICE.encode(), connector_url.encode())


async def _check(response: Any, errors: ErrorLog, statuses: Statuses) -> None:
    statuses.add(response.status)
    body = await response.read()
    assert response.status < 500, (response.status, body[:300])
    if response.status >= 400:
        assert b"Traceback" not in body
    errors.check()


@FUZZ_LONG
@given(body=BODIES)
async def test_emulator_mode_answers_every_body_below_500(
    served: TestClient, connector_url: str, server_errors: ErrorLog, statuses: Statuses, body: bytes
) -> None:
    response = await served.post("/api/messages", data=_aimed(body, connector_url), headers=JSON_TYPE)
    await _check(response, server_errors, statuses)


@pytest.fixture
def openid() -> Iterator[OpenIdServer]:
    server = OpenIdServer(keys=[SigningKey(kid="fuzz-key")])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def authenticated(served: TestClient, openid: OpenIdServer) -> AsyncIterator[TestClient]:
    """The served app with Bot Framework authentication on, against the local OpenID server."""
    auth = build_authentication(
        Credentials(app_id=APP_ID, app_password=APP_PASSWORD),
        BotFrameworkEndpoints(openid_metadata_url=openid.metadata_url, token_issuer=ISSUER),
        LocalCredentialFactory(APP_ID, APP_PASSWORD),
    )
    endpoint = served.app[TEAMS]
    emulator = endpoint.adapter
    endpoint.adapter = create_adapter(auth)
    try:
        yield served
    finally:
        await close_adapter(endpoint.adapter)
        endpoint.adapter = emulator


def _bad_token(kind: str, url: str) -> str:
    key = SigningKey(kid="fuzz-key")
    if kind == "forged":
        return mint_token(key, audience=APP_ID, service_url=url, signing_key=SigningKey(kid="fuzz-key", name="forger"))
    if kind == "expired":
        return mint_token(key, audience=APP_ID, service_url=url, expires_in=-7200)
    return mint_token(key, audience="11111111-2222-3333-4444-555555555555", service_url=url)


HEADERS = st.one_of(
    st.just("none"),
    st.sampled_from(["forged", "expired", "audience"]),
    st.sampled_from(["Bearer", "Bearer ", "Basic eA==", "Bearer a.b.c", "bearer x"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(lambda t: "Bearer " + t),
)


@FUZZ
@given(body=BODIES, header=HEADERS, content_type=st.sampled_from(["application/json", "text/plain", ""]))
async def test_without_a_valid_token_every_body_gets_401(
    authenticated: TestClient, connector_url: str, server_errors: ErrorLog, body: bytes, header: str, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if header in ("forged", "expired", "audience"):
        headers["Authorization"] = "Bearer " + _bad_token(header, connector_url)
    elif header != "none":
        headers["Authorization"] = header
    response = await authenticated.post("/api/messages", data=_aimed(body, connector_url), headers=headers)
    assert response.status == 401, (response.status, await response.text())
    assert await response.json() == {"error": "unauthorized"}
    server_errors.check()


@FUZZ
@given(body=BODIES)
async def test_with_a_valid_token_every_body_is_answered_below_500(
    authenticated: TestClient, connector_url: str, server_errors: ErrorLog, statuses: Statuses, body: bytes
) -> None:
    token = mint_token(SigningKey(kid="fuzz-key"), audience=APP_ID, service_url=connector_url)
    headers = {**JSON_TYPE, "Authorization": f"Bearer {token}"}
    response = await authenticated.post("/api/messages", data=_aimed(body, connector_url), headers=headers)
    await _check(response, server_errors, statuses)
