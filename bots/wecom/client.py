"""Async WeCom server API client: one shared access token, bounded retries, typed errors.

The access token travels only in the query string of outgoing requests; it is never put into an
exception, a log line or a repr. Errors carry the API name (e.g. "message/send"), not the URL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
STALE_TOKEN_ERRCODES = frozenset({40014, 42001})  # the token, not the secret: a later call refreshes it
BUSY_ERRCODES = frozenset({-1, 45009, 45033})  # system busy, API frequency limit, concurrency limit
TAG_NAME_MAX_CHARS = 30
DUPLICATE_CHECK_MAX_SECONDS = 4 * 3600


class WeComApiError(Exception):
    """WeCom answered with a non-zero errcode (or could not be reached after retries)."""

    def __init__(self, errcode: int, errmsg: str, api: str) -> None:
        super().__init__(f"WeCom API {api} failed with errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.api = api


HTTP_ERRCODE = -2  # not a WeCom answer at all: the HTTP request itself was refused (never in BUSY_ERRCODES)


class WeComHttpError(WeComApiError):
    """A permanent HTTP refusal (4xx other than 429): a wrong WECOM_API_BASE or path; retrying cannot help."""

    def __init__(self, status: int, api: str) -> None:
        super().__init__(
            HTTP_ERRCODE,
            f"HTTP {status} from the API path /{api}; not retried (check WECOM_API_BASE, which should end in "
            "/cgi-bin, and any proxy in front of it)",
            api,
        )
        self.status = status


class _Retryable(Exception):
    """One attempt failed in a way worth retrying after a pause."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


class WeComClient:
    """Calls the WeCom server API for one self-built app."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        corp_id: str,
        secret: str,
        agent_id: str,
        api_base: str,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        request_timeout: float = 10.0,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not corp_id or not secret:
            raise ValueError("WeCom client needs WECOM_CORP_ID and WECOM_SECRET")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._session = session
        self._corp_id = corp_id
        self._secret = secret
        self._agent_id = agent_id
        self._base = api_base.rstrip("/")
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WeComClient(corp_id={self._corp_id!r}, agent_id={self._agent_id!r}, api_base={self._base!r})"

    # ------------------------------------------------------------------ public API

    async def send_message(
        self,
        payload: Mapping[str, Any],
        enable_duplicate_check: bool = True,
        duplicate_check_interval: int = 1800,
    ) -> dict[str, Any]:
        """POST message/send; returns WeCom's answer (msgid, response_code, invaliduser…)."""
        if not 0 < duplicate_check_interval <= DUPLICATE_CHECK_MAX_SECONDS:
            raise ValueError(f"duplicate_check_interval must be 1..{DUPLICATE_CHECK_MAX_SECONDS} seconds")
        body = {
            **payload,
            "agentid": self._agent(),
            "enable_duplicate_check": 1 if enable_duplicate_check else 0,
            "duplicate_check_interval": duplicate_check_interval,
        }
        return await self._call("message/send", "POST", body=body)

    async def update_template_card(
        self,
        response_code: str,
        *,
        template_card: Mapping[str, Any] | None = None,
        replace_name: str | None = None,
        userids: Sequence[str] = (),
        atall: bool = False,
    ) -> dict[str, Any]:
        """Replace a clicked card, or just its button text (exactly one of the two)."""
        if (template_card is None) == (replace_name is None):
            raise ValueError("update_template_card needs exactly one of template_card or replace_name")
        if not response_code:
            raise ValueError("update_template_card needs the response_code from the send or the click event")
        body: dict[str, Any] = {"agentid": self._agent(), "response_code": response_code}
        if userids:
            body["userids"] = list(userids)
        if atall:
            body["atall"] = 1
        if template_card is not None:
            body["template_card"] = dict(template_card)
        else:
            body["button"] = {"replace_name": replace_name}
        return await self._call("message/update_template_card", "POST", body=body)

    async def get_corp_tag_list(
        self, tag_ids: Sequence[str] | None = None, group_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The corp's customer tag groups (optionally only the given tags or groups)."""
        body: dict[str, Any] = {}
        if tag_ids:
            body["tag_id"] = list(tag_ids)
        if group_ids:
            body["group_id"] = list(group_ids)
        data = await self._call("externalcontact/get_corp_tag_list", "POST", body=body)
        return list(data.get("tag_group", []))

    async def add_corp_tag(
        self, tags: Sequence[str], *, group_id: str | None = None, group_name: str | None = None
    ) -> dict[str, Any]:
        """Create tags in an existing group (group_id) or in a group found/created by name."""
        if (group_id is None) == (group_name is None):
            raise ValueError("add_corp_tag needs exactly one of group_id or group_name")
        if not tags:
            raise ValueError("add_corp_tag needs at least one tag name")
        body: dict[str, Any] = {"tag": [{"name": _tag_name(name, "tag name")} for name in tags]}
        if len({t["name"] for t in body["tag"]}) != len(tags):
            raise ValueError("add_corp_tag got the same tag name twice")
        if group_id is not None:
            body["group_id"] = group_id
        else:
            body["group_name"] = _tag_name(group_name or "", "tag group name")
        data = await self._call("externalcontact/add_corp_tag", "POST", body=body)
        return dict(data.get("tag_group", {}))

    async def mark_tag(
        self, userid: str, external_userid: str, add_tag: Sequence[str] = (), remove_tag: Sequence[str] = ()
    ) -> None:
        """Add and/or remove corp tags (by tag id) on one customer as seen by one member."""
        if not add_tag and not remove_tag:
            raise ValueError("mark_tag needs at least one tag id to add or remove")
        overlap = set(add_tag) & set(remove_tag)
        if overlap:
            raise ValueError(f"mark_tag cannot add and remove the same tag ids: {sorted(overlap)}")
        body = {
            "userid": userid,
            "external_userid": external_userid,
            "add_tag": list(add_tag),
            "remove_tag": list(remove_tag),
        }
        await self._call("externalcontact/mark_tag", "POST", body=body)

    async def get_external_contact(self, external_userid: str) -> dict[str, Any]:
        """Customer details: {'external_contact': {...}, 'follow_user': [...]}."""
        if not external_userid:
            raise ValueError("get_external_contact needs an external_userid")
        return await self._call("externalcontact/get", "GET", params={"external_userid": external_userid})

    async def user_for_code(self, code: str) -> str:
        """Web sign-in: the member userid for an OAuth `code` (auth/getuserinfo); non-members raise."""
        if not code or len(code) > 512:
            raise ValueError("the sign-in code is missing or too long")
        data = await self._call("auth/getuserinfo", "GET", params={"code": code})
        userid = data.get("userid") or data.get("UserId")
        if not isinstance(userid, str) or not userid:
            raise WeComApiError(-3, "the code belongs to someone outside the company (no userid)", "auth/getuserinfo")
        return userid

    # ------------------------------------------------------------------ access token

    async def access_token(self) -> str:
        """The shared token, fetched on first use and refreshed ahead of its expiry."""
        token = self._token
        if token is not None and self._clock() < self._expires_at:
            return token
        return await self._refresh(stale=token)

    async def _refresh(self, stale: str | None) -> str:
        """Single-flight refresh: callers queued on the lock reuse the token the first one fetched."""
        async with self._lock:
            if self._token is not None and self._token != stale and self._clock() < self._expires_at:
                return self._token
            data = await self._call(
                "gettoken", "GET", params={"corpid": self._corp_id, "corpsecret": self._secret}, authed=False
            )
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise WeComApiError(-1, "gettoken answered without an access_token", "gettoken")
            expires_in = float(data.get("expires_in") or 7200)
            margin = min(self._refresh_margin, expires_in / 2)
            self._token = token
            self._expires_at = self._clock() + expires_in - margin
            log.info("wecom access token refreshed; valid for %.0fs", expires_in)
            return token

    # ------------------------------------------------------------------ transport

    async def _call(
        self,
        api: str,
        method: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        authed: bool = True,
    ) -> dict[str, Any]:
        """One API call with token handling and bounded, jittered retries."""
        token_retried = False
        attempt = 0
        while True:
            attempt += 1
            query = dict(params or {})
            token = None
            if authed:
                token = await self.access_token()
                query["access_token"] = token
            try:
                data = await self._exchange(api, method, query, body)
            except _Retryable as exc:
                if attempt >= self._max_attempts:
                    raise WeComApiError(
                        exc.errcode, f"{exc.errmsg} (gave up after {attempt} attempts)", api
                    ) from None
                await self._backoff(api, attempt, exc.errcode)
                continue
            errcode = _errcode(data)
            if errcode == 0:
                return data
            errmsg = str(data.get("errmsg", ""))[:200]
            if authed and errcode in TOKEN_ERRCODES and not token_retried:
                token_retried = True
                attempt -= 1  # a token refresh is not a failed attempt
                log.info("wecom %s: errcode %d, refreshing the access token once", api, errcode)
                await self._refresh(stale=token)
                continue
            if errcode in BUSY_ERRCODES and attempt < self._max_attempts:
                await self._backoff(api, attempt, errcode)
                continue
            raise WeComApiError(errcode, errmsg, api)

    async def _exchange(
        self, api: str, method: str, query: Mapping[str, str], body: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """One HTTP round trip; 429/5xx and network failures become _Retryable."""
        try:
            async with self._session.request(
                method, f"{self._base}/{api}", params=query, json=body, timeout=self._timeout
            ) as resp:
                if resp.status == 429 or resp.status >= 500:
                    raise _Retryable(-1, f"HTTP {resp.status}")
                if resp.status != 200:
                    raise WeComHttpError(resp.status, api)
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Only the exception type: aiohttp messages can contain the URL, and with it the token.
            raise _Retryable(-1, f"network error ({type(exc).__name__})") from None
        except ValueError:
            raise _Retryable(-1, "response was not JSON") from None
        if not isinstance(data, dict):
            raise _Retryable(-1, "response was not a JSON object")
        return data

    async def _backoff(self, api: str, attempt: int, errcode: int) -> None:
        """Exponential pause with jitter (half to all of the ceiling) before the next attempt."""
        ceiling = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        log.warning("wecom %s: errcode %d on attempt %d, retrying in %.2fs", api, errcode, attempt, delay)
        await self._sleep(delay)

    def _agent(self) -> int | str:
        if not self._agent_id:
            raise ValueError("this WeCom call needs WECOM_AGENT_ID")
        return int(self._agent_id) if self._agent_id.isdigit() else self._agent_id


def _errcode(data: Mapping[str, Any]) -> int:
    try:
        return int(data.get("errcode", 0))
    except (TypeError, ValueError):
        return -1


def _tag_name(name: str, what: str) -> str:
    """Trimmed, non-empty, at most 30 characters (WeCom's limit for tag and group names)."""
    cleaned = name.strip()
    if not cleaned:
        raise ValueError(f"{what} is empty")
    if len(cleaned) > TAG_NAME_MAX_CHARS:
        raise ValueError(
            f"{what} {cleaned!r} is {len(cleaned)} characters; WeCom allows at most {TAG_NAME_MAX_CHARS}"
        )
    return cleaned
