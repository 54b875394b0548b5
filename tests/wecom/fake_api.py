"""A small fake of the WeCom server API, served by aiohttp on 127.0.0.1 with an ephemeral port.

Use the `fake_wecom` fixture (import it into your conftest.py) or `async with running_fake_wecom()`.
Behaviour is controlled per API name ("message/send", "externalcontact/mark_tag", …):
`expire_token_once()`, `fail(api, errcode, times)`, `rate_limit(api, times)`,
`http_error(api, status, times)`.
Every request is recorded in `calls` (the access token is recorded too, so tests can check reuse).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

CORP_ID = "ww_kebiao_test"
SECRET = "fake-secret-不要记录"
AGENT_ID = "1000002"


@dataclass(frozen=True)
class RecordedCall:
    """One request the fake received."""

    api: str
    method: str
    query: dict[str, str]
    body: dict[str, Any] | None
    token: str | None


@dataclass
class _Fault:
    errcode: int = 0
    errmsg: str = ""
    status: int = 200


@dataclass
class FakeWeComApi:
    """State and controls of the fake; `api_base` is what WeComClient needs."""

    corp_id: str = CORP_ID
    secret: str = SECRET
    expires_in: int = 7200
    calls: list[RecordedCall] = field(default_factory=list)
    tag_groups: list[dict[str, Any]] = field(default_factory=list)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    customer_tags: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    sign_in_codes: dict[str, str] = field(default_factory=dict)  # web sign-in code -> member userid
    api_base: str = ""
    _faults: dict[str, deque[_Fault]] = field(default_factory=lambda: defaultdict(deque))
    _tokens: itertools.count = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _valid_token: str | None = None
    _expire_next: int = 0

    # ------------------------------------------------------------------ controls

    def expire_token_once(self, errcode: int = 42001) -> None:
        """The next authed call answers `errcode` (42001 expired / 40014 invalid) and the token dies."""
        self._expire_next = errcode

    def fail(self, api: str, errcode: int, errmsg: str = "injected failure", times: int = 1) -> None:
        """The next `times` calls to `api` answer errcode/errmsg."""
        self._faults[api].extend(_Fault(errcode, errmsg) for _ in range(times))

    def rate_limit(self, api: str, times: int, errcode: int = 45009) -> None:
        """The next `times` calls to `api` hit WeCom's frequency limit."""
        self.fail(api, errcode, "api freq out of limit", times)

    def http_error(self, api: str, status: int, times: int = 1) -> None:
        """The next `times` calls to `api` get a bare HTTP error (429, 502…)."""
        self._faults[api].extend(_Fault(status=status) for _ in range(times))

    def add_contact(self, external_userid: str, name: str, follow_users: list[str]) -> None:
        """Make a customer known to externalcontact/get."""
        self.contacts[external_userid] = {
            "external_contact": {"external_userid": external_userid, "name": name, "type": 2},
            "follow_user": [{"userid": u, "remark": "", "tags": []} for u in follow_users],
        }

    def calls_to(self, api: str) -> list[RecordedCall]:
        """Recorded calls of one API, in order."""
        return [c for c in self.calls if c.api == api]

    @property
    def valid_token(self) -> str | None:
        """The access token authed calls are accepted with now (None once expired, until the next fetch)."""
        return self._valid_token

    @property
    def token_fetches(self) -> int:
        return len(self.calls_to("gettoken"))

    # ------------------------------------------------------------------ server

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/cgi-bin/{api:.+}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        api = request.match_info["api"]
        body = None
        if request.can_read_body:
            body = json.loads(await request.text() or "null")
        token = request.query.get("access_token")
        self.calls.append(RecordedCall(api, request.method, dict(request.query), body, token))
        faults = self._faults.get(api)
        if faults:
            fault = faults.popleft()
            if fault.status != 200:
                return web.Response(status=fault.status, text="busy")
            return web.json_response({"errcode": fault.errcode, "errmsg": fault.errmsg})
        if api == "gettoken":
            return web.json_response(self._gettoken(request))
        if token is None or token != self._valid_token:
            return web.json_response({"errcode": 40014, "errmsg": "invalid access_token"})
        if self._expire_next:
            errcode, self._expire_next, self._valid_token = self._expire_next, 0, None
            return web.json_response({"errcode": errcode, "errmsg": "access_token expired"})
        handler = _HANDLERS.get(api)
        if handler is None:
            return web.json_response({"errcode": 60011, "errmsg": f"no privilege to access/modify: {api}"})
        return web.json_response({"errcode": 0, "errmsg": "ok", **handler(self, request, body or {})})

    def _gettoken(self, request: web.Request) -> dict[str, Any]:
        if request.query.get("corpid") != self.corp_id:
            return {"errcode": 40013, "errmsg": "invalid corpid"}
        if request.query.get("corpsecret") != self.secret:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        if self._valid_token is None:  # as WeCom: a fetch within the token's validity returns the same token
            self._valid_token = f"TOKEN-{next(self._tokens)}"
        return {
            "errcode": 0,
            "errmsg": "ok",
            "access_token": self._valid_token,
            "expires_in": self.expires_in,
        }

    # ------------------------------------------------------------------ API behaviour

    def _send(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"msgid": f"msg-{next(self._ids)}", "invaliduser": ""}
        if body.get("msgtype") == "template_card":
            out["response_code"] = f"rc-{next(self._ids)}"
        return out

    def _get_tags(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        tag_ids, group_ids = set(body.get("tag_id", [])), set(body.get("group_id", []))
        groups = []
        for group in self.tag_groups:
            if group_ids and group["group_id"] not in group_ids:
                continue
            tags = [t for t in group["tag"] if not tag_ids or t["id"] in tag_ids]
            if tags or not tag_ids:
                groups.append({**group, "tag": tags})
        return {"tag_group": groups}

    def _add_tags(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        group = next(
            (
                g
                for g in self.tag_groups
                if g["group_id"] == body.get("group_id") or g["group_name"] == body.get("group_name")
            ),
            None,
        )
        if group is None:
            group = {"group_id": f"etGROUP{next(self._ids)}", "group_name": body["group_name"], "tag": []}
            self.tag_groups.append(group)
        added = [{"id": f"etTAG{next(self._ids)}", "name": t["name"]} for t in body["tag"]]
        group["tag"].extend(added)
        return {"tag_group": {"group_id": group["group_id"], "group_name": group["group_name"], "tag": added}}

    def _mark(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        known = {t["id"] for g in self.tag_groups for t in g["tag"]}
        unknown = [t for t in [*body.get("add_tag", []), *body.get("remove_tag", [])] if t not in known]
        if unknown:
            return {"errcode": 40068, "errmsg": f"invalid tagid: {unknown[0]}"}
        held = self.customer_tags[(body["userid"], body["external_userid"])]
        held.update(body.get("add_tag", []))
        held.difference_update(body.get("remove_tag", []))
        return {}

    def _get_contact(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        contact = self.contacts.get(request.query.get("external_userid", ""))
        if contact is None:
            return {"errcode": 84061, "errmsg": "not external contact"}
        return contact

    def _update_card(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        return {"invaliduser": []}

    def _user_info(self, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
        userid = self.sign_in_codes.pop(request.query.get("code", ""), None)  # a code works once
        if userid is None:
            return {"errcode": 40029, "errmsg": "invalid code"}
        return {"userid": userid, "user_ticket": "ticket"}


_HANDLERS = {
    "message/send": FakeWeComApi._send,
    "message/update_template_card": FakeWeComApi._update_card,
    "externalcontact/get_corp_tag_list": FakeWeComApi._get_tags,
    "externalcontact/add_corp_tag": FakeWeComApi._add_tags,
    "externalcontact/mark_tag": FakeWeComApi._mark,
    "externalcontact/get": FakeWeComApi._get_contact,
    "auth/getuserinfo": FakeWeComApi._user_info,
}


@asynccontextmanager
async def running_fake_wecom() -> AsyncIterator[FakeWeComApi]:
    """Serve a fresh fake on 127.0.0.1:<ephemeral>; `api_base` is set while it runs."""
    fake = FakeWeComApi()
    runner = web.AppRunner(fake.app(), access_log=None)  # its access log would show tokens
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.api_base = f"http://{host}:{port}/cgi-bin"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def fake_wecom() -> AsyncIterator[FakeWeComApi]:
    """A running fake WeCom API; point WECOM_API_BASE / WeComClient at `fake_wecom.api_base`."""
    async with running_fake_wecom() as fake:
        yield fake
