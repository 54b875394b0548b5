"""Dataverse Web API (OData v4) connector: accounts and contacts, tags in a multi-select choice column.

Requests follow Microsoft's documentation: paging with `Prefer: odata.maxpagesize` and `@odata.nextLink`
(learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results), updates with PATCH and
`If-Match: *` so a missing record is a 404, never an upsert
(…/webapi/update-delete-entities-using-web-api), choices columns read and written as comma-separated option
values (…/data-platform/multi-select-picklist), service protection 429 with Retry-After
(…/data-platform/api-limits), and OAuth 2.0 client credentials through MSAL
(learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import msal
import requests

from core.crm.port import AttributeField, CrmError, CrmPage, CrmRecord, CrmRecordGone, CrmRef, attribute_fields
from tagging.field_rules import crm_number

log = logging.getLogger(__name__)

NAME = "dynamics"
API = "/api/data/v9.2"
MAX_RETRIES = 5
TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=15)
FORMATTED = "OData.Community.Display.V1.FormattedValue"
ANNOTATIONS = f'odata.include-annotations="{FORMATTED}"'


@dataclass(frozen=True, slots=True)
class Entity:
    """One table the sync reads: entity set, logical name, key and name columns."""

    set_name: str
    logical: str
    key: str
    name: str


ENTITIES = (Entity("accounts", "account", "accountid", "name"), Entity("contacts", "contact", "contactid", "fullname"))
BY_KIND = {e.logical: e for e in ENTITIES}


@dataclass(frozen=True, slots=True)
class DynamicsSettings:
    """Where the environment is and how to sign in; the secret is never shown."""

    url: str
    tenant_authority: str
    client_id: str
    client_secret: str = field(repr=False)
    tags_field: str
    page_size: int = 5000
    ca_bundle: str | None = None
    attributes: tuple[AttributeField, ...] = ()  # basic attributes read into each customer (kind: account|contact)


class DynamicsConnector:
    """core.crm.port.CrmConnector for Dataverse."""

    name = NAME

    def __init__(self, settings: DynamicsSettings, session: aiohttp.ClientSession | None = None) -> None:
        self.settings = settings
        self._session = session
        self._own_session = session is None
        self._app: msal.ConfidentialClientApplication | None = None
        self._token: str | None = None
        self._options: dict[str, dict[int, str]] = {}  # entity logical name -> option value -> label

    # ------------------------------------------------------------ port

    async def check(self, fields: Sequence[str]) -> None:
        for entity in ENTITIES:
            named = [*fields, *self._attributes(entity).values()]
            columns = ",".join(dict.fromkeys([entity.key, *named]))
            await self._get(f"{API}/{entity.set_name}?$select={columns}&$top=1", f"read {entity.set_name}", named)
            await self._load_options(entity)

    async def changes(self, cursor: str | None, fields: Sequence[str]) -> CrmPage:
        state = _Cursor.load(cursor)
        entity = ENTITIES[state.entity]
        url = state.next or self._query(entity, fields, state.since.get(entity.set_name))
        body = await self._get(url, f"read changed {entity.set_name}", fields, paged=True)
        rows = body.get("value")
        if not isinstance(rows, list):
            raise _garbage(f"read changed {entity.set_name}", "no 'value' list")
        records = tuple(self._record(entity, row, fields) for row in rows)
        high = max([state.high or "", *(str(r.get("modifiedon") or "") for r in rows)]) or None
        link = body.get("@odata.nextLink")
        if isinstance(link, str) and link:
            return CrmPage(records, _Cursor(state.entity, state.since, link, high).dump(), False)
        since = {**state.since, entity.set_name: high} if high else dict(state.since)
        last = state.entity + 1 >= len(ENTITIES)
        nxt = _Cursor(0 if last else state.entity + 1, since, None, None)
        return CrmPage(records, nxt.dump(), last)

    async def get(self, ref: CrmRef) -> CrmRecord | None:
        entity = BY_KIND[ref.kind]
        url = f"{API}/{entity.set_name}({ref.crm_id})?$select={self._select(entity, ())}"
        try:
            row = await self._get(url, f"read {entity.logical} {ref.crm_id}", ())
        except CrmRecordGone:
            return None
        return self._record(entity, row, ())

    async def write_tags(self, ref: CrmRef, add: Sequence[str], remove: Sequence[str]) -> None:
        entity = BY_KIND[ref.kind]
        current = await self.get(ref)
        if current is None:
            raise CrmRecordGone(NAME, f"write tags on {entity.logical}", ref.crm_id)
        wanted = [t for t in current.tags if t not in set(remove)] + [t for t in add if t not in current.tags]
        values = self._option_values(entity, wanted)
        body = {self.settings.tags_field: ",".join(str(v) for v in values) or None}
        call = f"write tags on {entity.logical} {ref.crm_id}"
        await self._send("PATCH", f"{API}/{entity.set_name}({ref.crm_id})", call, body)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------ records

    def _attributes(self, entity: Entity) -> dict[str, str]:
        return attribute_fields(self.settings.attributes, entity.logical)

    def _select(self, entity: Entity, fields: Sequence[str]) -> str:
        own = [entity.key, entity.name, "modifiedon", "merged", "_masterid_value", self.settings.tags_field]
        return ",".join(dict.fromkeys([*own, *fields, *self._attributes(entity).values()]))

    def _query(self, entity: Entity, fields: Sequence[str], since: str | None) -> str:
        where = f"&$filter=modifiedon ge {since}" if since else ""
        order = f"&$orderby=modifiedon asc,{entity.key} asc"
        return f"{API}/{entity.set_name}?$select={self._select(entity, fields)}{where}{order}"

    def _record(self, entity: Entity, row: Any, fields: Sequence[str]) -> CrmRecord:
        if not isinstance(row, Mapping) or not row.get(entity.key):
            raise _garbage(f"read {entity.set_name}", f"a row without '{entity.key}'")
        labels = self._options.get(entity.logical, {})
        raw = row.get(self.settings.tags_field) or ""
        tags = tuple(labels[int(v)] for v in str(raw).split(",") if v.strip().isdigit() and int(v) in labels)
        modified = row.get("modifiedon")
        return CrmRecord(
            ref=CrmRef(str(row[entity.key]), entity.logical),
            name=str(row.get(entity.name) or ""),
            modified_at=datetime.fromisoformat(str(modified).replace("Z", "+00:00")) if modified else None,
            tags=tags,
            fields={f: _value(row, f) for f in fields},
            merged_into=str(row["_masterid_value"]) if row.get("merged") and row.get("_masterid_value") else None,
            attributes={a: _value(row, col) for a, col in self._attributes(entity).items()},
        )

    def _option_values(self, entity: Entity, labels: Sequence[str]) -> list[int]:
        by_label = {v: k for k, v in self._options.get(entity.logical, {}).items()}
        missing = [t for t in labels if t not in by_label]
        if missing:
            log.warning(
                "dynamics: no option for %s in %s.%s; add the option in Dataverse to sync it",
                ", ".join(missing),
                entity.logical,
                self.settings.tags_field,
            )
        return sorted(by_label[t] for t in labels if t in by_label)

    async def _load_options(self, entity: Entity) -> None:
        """The tags column's options (value -> label) from the table's attribute metadata."""
        url = (
            f"{API}/EntityDefinitions(LogicalName='{entity.logical}')/Attributes(LogicalName="
            f"'{quote(self.settings.tags_field)}')/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata"
            "?$select=LogicalName&$expand=OptionSet($select=Options)"
        )
        call = f"read the choices of {entity.logical}.{self.settings.tags_field}"
        try:
            body = await self._get(url, call, (self.settings.tags_field,))
        except CrmRecordGone:
            raise CrmError(
                NAME,
                call,
                f"no choices column {self.settings.tags_field} on {entity.logical}",
                "set KEBIAO_CRM_DYNAMICS_TAGS_FIELD to a multi-select choice column of accounts and contacts",
            ) from None
        options = (body.get("OptionSet") or {}).get("Options") or []
        found: dict[int, str] = {}
        for option in options:
            label = ((option.get("Label") or {}).get("UserLocalizedLabel") or {}).get("Label")
            if isinstance(option.get("Value"), int) and isinstance(label, str):
                found[option["Value"]] = label
        self._options[entity.logical] = found

    # ------------------------------------------------------------ HTTP

    async def _get(self, url: str, call: str, fields: Sequence[str], paged: bool = False) -> dict[str, Any]:
        prefer = f"odata.maxpagesize={self.settings.page_size},{ANNOTATIONS}" if paged else ANNOTATIONS
        headers = {"Prefer": prefer}
        return await self._send("GET", url, call, None, headers, fields)

    async def _send(
        self,
        method: str,
        url: str,
        call: str,
        body: Mapping[str, Any] | None,
        extra: Mapping[str, str] | None = None,
        fields: Sequence[str] = (),
    ) -> dict[str, Any]:
        full = url if url.startswith("http") else self.settings.url.rstrip("/") + url
        session = await self._client()
        for attempt in range(MAX_RETRIES + 1):
            headers = {
                "Authorization": f"Bearer {await self._bearer()}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                **(extra or {}),
            }
            if method == "PATCH":
                headers["If-Match"] = "*"  # update only: a deleted record answers 404 instead of being created
            try:
                async with session.request(method, full, json=body, headers=headers) as resp:
                    text = await resp.text()
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
                    ctype = resp.headers.get("Content-Type", "")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise CrmError(
                    NAME,
                    call,
                    f"cannot reach {self.settings.url} ({exc.__class__.__name__})",
                    "check KEBIAO_CRM_DYNAMICS_URL and the network; pending writes are kept",
                    retryable=True,
                ) from None
            if status == 401 and attempt == 0:
                self._token = None
                self._forget_token()
                continue
            if status == 429 and attempt < MAX_RETRIES:
                await asyncio.sleep(_seconds(retry_after))
                continue
            return _answer(call, status, text, ctype, fields, url)
        raise CrmError(NAME, call, "still throttled after retries (429)", "try again later", retryable=True)

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context(cafile=self.settings.ca_bundle) if self.settings.ca_bundle else None
            connector = aiohttp.TCPConnector(ssl=context) if context else None
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)
        return self._session

    async def _bearer(self) -> str:
        if self._token is None:
            self._token = await asyncio.to_thread(self._acquire)
        return self._token

    def _msal(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.settings.client_id,
                    client_credential=self.settings.client_secret,
                    authority=self.settings.tenant_authority,
                    validate_authority=False,
                    instance_discovery=False,
                    http_client=_http_client(self.settings.ca_bundle),
                )
            except ValueError as exc:
                raise CrmError(
                    NAME,
                    "sign-in",
                    f"authority unusable ({str(exc)[:120]})",
                    "set KEBIAO_CRM_DYNAMICS_AUTHORITY to https://login.microsoftonline.com/<tenant id>",
                ) from None
            except Exception as exc:
                raise CrmError(
                    NAME,
                    "sign-in",
                    f"cannot reach the authority ({exc.__class__.__name__})",
                    "check KEBIAO_CRM_DYNAMICS_AUTHORITY and the network",
                    retryable=True,
                ) from None
        return self._app

    def _acquire(self) -> str:
        scope = self.settings.url.rstrip("/") + "/.default"
        try:
            result = self._msal().acquire_token_for_client(scopes=[scope])
        except CrmError:
            raise
        except Exception as exc:
            raise CrmError(
                NAME,
                "sign-in",
                f"token request failed ({exc.__class__.__name__})",
                "check KEBIAO_CRM_DYNAMICS_AUTHORITY and the network",
                retryable=True,
            ) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            code = (result or {}).get("error", "unknown error")
            detail = str((result or {}).get("error_description", "")).splitlines()[0][:160]
            raise CrmError(
                NAME,
                "sign-in",
                f"{code}: {detail}",
                "check KEBIAO_CRM_DYNAMICS_CLIENT_ID and KEBIAO_CRM_DYNAMICS_CLIENT_SECRET (app registration)",
            )
        return str(token)

    def _forget_token(self) -> None:
        if self._app is not None:
            self._app.remove_tokens_for_client()


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Which table, each table's modifiedon watermark, and the next page link of a read in progress."""

    entity: int = 0
    since: Mapping[str, str] = field(default_factory=dict)
    next: str | None = None
    high: str | None = None

    @classmethod
    def load(cls, text: str | None) -> _Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            int(data.get("entity", 0)) % len(ENTITIES),
            dict(data.get("since") or {}),
            data.get("next"),
            data.get("high"),
        )

    def dump(self) -> str:
        return json.dumps({"entity": self.entity, "since": dict(self.since), "next": self.next, "high": self.high})


def _http_client(ca_bundle: str | None) -> requests.Session | None:
    """MSAL's HTTP client: the default, or one that trusts only `ca_bundle` (REQUESTS_CA_BUNDLE would win
    over a plain `verify=` setting, so the environment is ignored here)."""
    if not ca_bundle:
        return None
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    return session


def _value(row: Mapping[str, Any], column: str) -> str:
    """A column as text: a choice, yes/no or lookup as its label (the FormattedValue annotation), other values raw
    (a number's formatted value, `1,000` or `¥10,000.00`, is the same number and stays raw for ranges)."""
    raw = row.get(column)
    if raw is None:
        return ""
    label = row.get(f"{column}@{FORMATTED}")
    if isinstance(label, str) and label:
        lookup = column.startswith("_") and column.endswith("_value")
        if lookup or isinstance(raw, bool) or (isinstance(raw, int) and crm_number(label) != raw):
            return label
    return str(raw)


def _seconds(raw: str | None) -> float:
    try:
        return min(max(float(raw or 1), 0.0), 300.0)
    except ValueError:
        return 1.0


def _garbage(call: str, what: str) -> CrmError:
    return CrmError(
        NAME,
        call,
        f"unexpected answer ({what})",
        "check KEBIAO_CRM_DYNAMICS_URL points at the Dataverse environment (https://<org>.crm.dynamics.com)",
    )


def _answer(call: str, status: int, text: str, ctype: str, fields: Sequence[str], url: str) -> dict[str, Any]:
    """The JSON body of a good answer, or a one-line CrmError saying what went wrong and what to do."""
    if status == 204:
        return {}
    data: Any = None
    if "json" in ctype:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if data is None or not isinstance(data, dict):
        kind = "HTML" if "<html" in text[:500].lower() else "not JSON"
        raise _garbage(call, f"HTTP {status}, {kind}")
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    if status < 400 and error is None:
        return data
    message = str((error or {}).get("message", "")).splitlines()[0][:200] if error else ""
    if status == 404:
        raise CrmRecordGone(NAME, call, url.rsplit("(", 1)[-1].split(")")[0])
    if status == 400 and "could not find a property" in message.lower():
        named = next((f for f in fields if f"'{f}'" in message), message)
        raise CrmError(
            NAME,
            call,
            f"field {named} does not exist",
            "fix crm_fields in the taxonomy, KEBIAO_CRM_DYNAMICS_ATTRIBUTES or KEBIAO_CRM_DYNAMICS_TAGS_FIELD "
            "to name an existing column",
        )
    if status in (401, 403):
        raise CrmError(
            NAME,
            call,
            f"access denied (HTTP {status}) {message}".strip(),
            "give the app user a security role that reads and writes accounts and contacts",
        )
    retry = status >= 500
    raise CrmError(
        NAME,
        call,
        f"HTTP {status} {message}".strip(),
        "try again later" if retry else "check the request and the field mapping",
        retryable=retry,
    )
