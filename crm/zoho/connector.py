"""Zoho CRM REST v2 connector: Accounts and Contacts, Zoho's own tags, OAuth refresh-token flow.

Built on Zoho's documentation: Get Records with `If-Modified-Since`, `page`/`per_page` (at most 200) and
`info.more_records` (zoho.com/crm/developer/docs/api/v2/get-records.html), deleted records
(…/v2/get-deleted-records.html), add and remove tags on a record (…/v2/add-tags.html, …/v2/remove-tags.html),
the tag list of a module (…/v2/get-tag-list.html), field metadata (…/v2/field-meta.html), refreshing an
access token (…/v2/refresh.html; one refresh at a time however many requests see it expire), status codes
and 429 limits (…/v2/status-codes.html, …/v2/api-limits.html).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp

from core.crm.port import (
    AttributeField,
    CrmError,
    CrmPage,
    CrmRecord,
    CrmRecordGone,
    CrmRef,
    TagWrite,
    attribute_fields,
)

log = logging.getLogger(__name__)

NAME = "zoho"
MAX_PER_PAGE = 200
MAX_RETRIES = 5
TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15)
MODULES = (("Accounts", "Account_Name"), ("Contacts", "Full_Name"))
NAME_FIELD = dict(MODULES)
PHASES = ("records", "deleted")


@dataclass(frozen=True, slots=True)
class ZohoSettings:
    """The data centre's accounts and API hosts and the self-client's credentials (secrets never shown)."""

    accounts_url: str
    api_base: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    per_page: int = MAX_PER_PAGE
    ca_bundle: str | None = None
    attributes: tuple[AttributeField, ...] = ()  # basic attributes read into each customer (kind: module name)


class ZohoConnector:
    """core.crm.port.CrmConnector for Zoho CRM."""

    name = NAME

    def __init__(self, settings: ZohoSettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0
        self._attribute_map = {m: attribute_fields(settings.attributes, m) for m, _ in MODULES}
        self._present: dict[str, set[str]] = {}  # module -> its field API names (known after check)

    # ------------------------------------------------------------ port

    async def check(self, fields: Sequence[str]) -> None:
        """Sign in and check that every named field exists in Accounts or Contacts (a field such as
        Annual_Revenue exists in Accounts only; it is read where it exists)."""
        found: dict[str, set[str]] = {}
        for module, _ in MODULES:
            await self._call("GET", "/crm/v2/settings/tags", f"read the tag list of {module}", {"module": module})
            meta = await self._call(
                "GET", "/crm/v2/settings/fields", f"read the fields of {module}", {"module": module}
            )
            found[module] = {str(f.get("api_name")) for f in meta.get("fields") or [] if isinstance(f, Mapping)}
        api_names = "(Setup > Developer Space > APIs > API Names)"
        for name in fields:
            if not any(name in names for names in found.values()):
                raise CrmError(
                    NAME,
                    "read the fields of Accounts and Contacts",
                    f"field {name} does not exist",
                    f"fix crm_fields in the taxonomy to name a field API name {api_names}",
                )
        for wanted in self.settings.attributes:
            modules = [wanted.kind] if wanted.kind else [m for m, _ in MODULES]
            if not any(wanted.field in found.get(m, set()) for m in modules):
                raise CrmError(
                    NAME,
                    f"read the fields of {' and '.join(modules)}",
                    f"field {wanted.field} (attribute {wanted.attribute}) does not exist",
                    f"fix KEBIAO_CRM_ZOHO_ATTRIBUTES to name a field API name {api_names}",
                )
        self._present = found
        self._attribute_map = {
            m: {a: f for a, f in attribute_fields(self.settings.attributes, m).items() if f in found[m]}
            for m, _ in MODULES
        }

    async def changes(self, cursor: str | None, fields: Sequence[str]) -> CrmPage:
        state = _Cursor.load(cursor)
        module, name_field = MODULES[state.step // 2]
        phase = PHASES[state.step % 2]
        since = state.since.get(f"{module}.{phase}")
        headers = {"If-Modified-Since": since} if since else {}
        params = {"page": str(state.page), "per_page": str(min(self.settings.per_page, MAX_PER_PAGE))}
        if phase == "records":
            params |= {
                "fields": ",".join(
                    dict.fromkeys(
                        [
                            "id",
                            name_field,
                            "Modified_Time",
                            "Tag",
                            *self._mapped(module, fields),
                            *self._attributes(module).values(),
                        ]
                    )
                ),
                "sort_by": "Modified_Time",
                "sort_order": "asc",
            }
            path = f"/crm/v2/{module}"
        else:
            params |= {"type": "all"}
            path = f"/crm/v2/{module}/deleted"
        body = await self._call(
            "GET", path, f"read changed {module}" if phase == "records" else f"read deleted {module}", params, headers
        )
        rows = body.get("data") or []
        if not isinstance(rows, list):
            raise _garbage(f"read {module}", "'data' is not a list")
        stamp = "Modified_Time" if phase == "records" else "deleted_time"
        records = tuple(self._record(module, row, fields, deleted=phase == "deleted") for row in rows)
        high = max([state.high or "", *(str(r.get(stamp) or "") for r in rows if isinstance(r, Mapping))]) or None
        if (body.get("info") or {}).get("more_records"):
            return CrmPage(records, _Cursor(state.step, state.since, state.page + 1, high).dump(), False)
        since_map = {**state.since, f"{module}.{phase}": high} if high else dict(state.since)
        last = state.step + 1 >= len(MODULES) * len(PHASES)
        return CrmPage(records, _Cursor(0 if last else state.step + 1, since_map, 1, None).dump(), last)

    async def get(self, ref: CrmRef) -> CrmRecord | None:
        try:
            body = await self._call("GET", f"/crm/v2/{ref.kind}/{ref.crm_id}", f"read {ref.kind} {ref.crm_id}")
        except CrmRecordGone:
            return None
        rows = body.get("data") or []
        return self._record(ref.kind, rows[0], ()) if rows else None

    async def write_tags(self, ref: CrmRef, add: Sequence[str], remove: Sequence[str]) -> None:
        for action, names in (("add_tags", add), ("remove_tags", remove)):
            if not names:
                continue
            call = f"{action.replace('_', ' ')} on {ref.kind} {ref.crm_id}"
            body = await self._call(
                "POST", f"/crm/v2/{ref.kind}/{ref.crm_id}/actions/{action}", call, {"tag_names": ",".join(names)}
            )
            for item in body.get("data") or []:
                if isinstance(item, Mapping) and item.get("status") == "error":
                    if item.get("code") == "INVALID_DATA" and "id" in str(item.get("details", "")):
                        raise CrmRecordGone(NAME, call, ref.crm_id)
                    raise CrmError(
                        NAME, call, f"{item.get('code')}: {item.get('message')}", "check the tag names and the record"
                    )

    async def write_many(self, writes: Sequence[TagWrite]) -> list[CrmError | None]:
        """One record at a time (Zoho's tag actions act on one record); stops early when Zoho is unreachable."""
        out: list[CrmError | None] = []
        for write in writes:
            if out and out[-1] is not None and out[-1].retryable:
                out.append(out[-1])
                continue
            try:
                await self.write_tags(write.record.ref, write.add, write.remove)
                out.append(None)
            except CrmError as exc:
                out.append(exc)
        return out

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------ records

    def _record(self, module: str, row: Any, fields: Sequence[str], deleted: bool = False) -> CrmRecord:
        if not isinstance(row, Mapping) or not row.get("id"):
            raise _garbage(f"read {module}", "a record without 'id'")
        tags = tuple(str(t.get("name")) for t in row.get("Tag") or [] if isinstance(t, Mapping) and t.get("name"))
        stamp = row.get("Modified_Time") or row.get("deleted_time")
        return CrmRecord(
            ref=CrmRef(str(row["id"]), module),
            name=str(row.get(NAME_FIELD[module]) or row.get("display_name") or ""),
            modified_at=datetime.fromisoformat(str(stamp)) if stamp else None,
            tags=tags,
            fields={f: _text(row.get(f)) for f in fields},
            deleted=deleted,
            attributes={} if deleted else {a: _text(row.get(f)) for a, f in self._attributes(module).items()},
        )

    def _mapped(self, module: str, fields: Sequence[str]) -> list[str]:
        """The mapped fields this module has (a field it lacks reads as "")."""
        present = self._present.get(module)
        return [f for f in fields if present is None or f in present]

    def _attributes(self, module: str) -> dict[str, str]:
        return self._attribute_map[module]

    # ------------------------------------------------------------ HTTP

    async def _call(
        self,
        method: str,
        path: str,
        call: str,
        params: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        url = self.settings.api_base.rstrip("/") + path
        session = await self._client()
        refreshed = False
        for _attempt in range(MAX_RETRIES + 1):
            token = await self._access_token()
            headers = {"Authorization": f"Zoho-oauthtoken {token}", **(extra or {})}
            try:
                async with session.request(method, url, params=params, headers=headers) as resp:
                    status, text = resp.status, await resp.text()
                    ctype, retry_after = resp.headers.get("Content-Type", ""), resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise CrmError(
                    NAME,
                    call,
                    f"cannot reach {self.settings.api_base} ({exc.__class__.__name__})",
                    "check KEBIAO_CRM_ZOHO_API_BASE and the network; pending writes are kept",
                    retryable=True,
                ) from None
            if status in (204, 304):
                return {}
            if status == 401 and not refreshed and "INVALID_TOKEN" in text:
                await self._refresh(stale=token)
                refreshed = True
                continue
            if status == 429:
                await asyncio.sleep(_seconds(retry_after))
                continue
            return _answer(call, status, text, ctype)
        raise CrmError(NAME, call, "still throttled after retries (429)", "try again later", retryable=True)

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context(cafile=self.settings.ca_bundle) if self.settings.ca_bundle else None
            connector = aiohttp.TCPConnector(ssl=context) if context else None
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)
        return self._session

    async def _access_token(self) -> str:
        if self._token is None or time.monotonic() >= self._expires:
            await self._refresh(stale=self._token)
        assert self._token is not None
        return self._token

    async def _refresh(self, stale: str | None) -> None:
        """Single flight: the first caller refreshes; the others wait and reuse its token."""
        async with self._lock:
            if self._token is not None and self._token != stale and time.monotonic() < self._expires:
                return
            self.refreshes += 1
            s = self.settings
            form = {
                "refresh_token": s.refresh_token,
                "client_id": s.client_id,
                "client_secret": s.client_secret,
                "grant_type": "refresh_token",
            }
            session = await self._client()
            try:
                async with session.post(f"{s.accounts_url}/oauth/v2/token?{urlencode(form)}") as resp:
                    status, text, ctype = resp.status, await resp.text(), resp.headers.get("Content-Type", "")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise CrmError(
                    NAME,
                    "token refresh",
                    f"cannot reach {s.accounts_url} ({exc.__class__.__name__})",
                    "check KEBIAO_CRM_ZOHO_ACCOUNTS_URL (your data centre) and the network",
                    retryable=True,
                ) from None
            data = _json(text, ctype)
            if data is None:
                raise CrmError(
                    NAME,
                    "token refresh",
                    f"unexpected answer (HTTP {status}, not JSON)",
                    "check KEBIAO_CRM_ZOHO_ACCOUNTS_URL, e.g. https://accounts.zoho.com",
                )
            if not data.get("access_token"):
                code = str(data.get("error") or f"HTTP {status}")
                fix = {
                    "invalid_code": "the refresh token is expired or revoked: generate a new one and set "
                    "KEBIAO_CRM_ZOHO_REFRESH_TOKEN",
                    "invalid_client": "check KEBIAO_CRM_ZOHO_CLIENT_ID and KEBIAO_CRM_ZOHO_CLIENT_SECRET",
                }.get(code, "check the Zoho self-client credentials")
                raise CrmError(NAME, "token refresh", code, fix)
            self._token = str(data["access_token"])
            self._expires = time.monotonic() + max(int(data.get("expires_in") or 3600) - 60, 30)


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Step (module x records/deleted), the Modified-Since watermark of each, and the page in progress."""

    step: int = 0
    since: Mapping[str, str] = field(default_factory=dict)
    page: int = 1
    high: str | None = None

    @classmethod
    def load(cls, text: str | None) -> _Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            int(data.get("step", 0)) % (len(MODULES) * len(PHASES)),
            dict(data.get("since") or {}),
            int(data.get("page", 1)),
            data.get("high"),
        )

    def dump(self) -> str:
        return json.dumps({"step": self.step, "since": dict(self.since), "page": self.page, "high": self.high})


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("name") or "")
    return "" if value is None else str(value)


def _seconds(raw: str | None) -> float:
    try:
        return min(max(float(raw or 1), 0.0), 300.0)
    except ValueError:
        return 1.0


def _json(text: str, ctype: str) -> dict[str, Any] | None:
    if "json" not in ctype:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _garbage(call: str, what: str) -> CrmError:
    return CrmError(
        NAME, call, f"unexpected answer ({what})", "check KEBIAO_CRM_ZOHO_API_BASE, e.g. https://www.zohoapis.com"
    )


def _answer(call: str, status: int, text: str, ctype: str) -> dict[str, Any]:
    """The JSON body of a good answer, or a one-line CrmError saying what went wrong and what to do."""
    data = _json(text, ctype)
    if data is None:
        kind = "HTML" if "<html" in text[:500].lower() else "not JSON"
        raise _garbage(call, f"HTTP {status}, {kind}")
    if status < 400:
        return data
    code = str(data.get("code") or "")
    if status == 404 or code == "INVALID_URL_PATTERN" or (code == "INVALID_DATA" and "id" in str(data.get("details"))):
        raise CrmRecordGone(NAME, call, call.rsplit(" ", 1)[-1])
    if status in (401, 403):
        raise CrmError(
            NAME,
            call,
            f"{code or 'access denied'} (HTTP {status})",
            "give the self-client the scopes ZohoCRM.modules.ALL and ZohoCRM.settings.ALL and a new refresh token",
        )
    retry = status >= 500
    raise CrmError(
        NAME,
        call,
        f"HTTP {status} {code} {data.get('message', '')}".strip(),
        "try again later" if retry else "check the request and the field mapping",
        retryable=retry,
    )
