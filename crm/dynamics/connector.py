"""Dataverse Web API (OData v4) connector: accounts and contacts, tags in a multi-select choice column.

Requests follow Microsoft's documentation: paging with `Prefer: odata.maxpagesize` and `@odata.nextLink`
(learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results), updates with PATCH and
`If-Match: *` so a missing record is a 404, never an upsert
(…/webapi/update-delete-entities-using-web-api), choices columns read and written as comma-separated option
values (…/data-platform/multi-select-picklist), service protection 429 with Retry-After
(…/data-platform/api-limits), OAuth 2.0 client credentials through MSAL
(learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow), several writes in one `$batch`
change set (…/webapi/execute-batch-operations-using-web-api; see batch.py), choice labels from the
FormattedValue annotation (…/webapi/query/select-columns), and, for tags kept as rows of a related table,
`$expand` of the record's collection-valued navigation property (…/webapi/query/join-tables), rows created with
`POST` and `@odata.bind` to the record (…/webapi/associate-disassociate-entities-using-web-api), removed
with `DELETE`, and records whose tag rows changed re-read with the `In` query function (…/webapi/reference/in).
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
from crm.dynamics.batch import MAX_REQUESTS, Operation, decode, encode
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
class TagTable:
    """Tags as rows of a related table, one row per tag: its entity set, key and tag-name columns, and per record
    kind (account, contact) the row's lookup to the record and the record's collection of tag rows."""

    set_name: str
    key: str
    name: str
    links: Mapping[str, tuple[str, str]]  # kind -> (lookup navigation property, collection navigation property)


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
    tags_table: TagTable | None = None  # tags in a related table instead of the choice column `tags_field`


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
        self.batch_fallbacks = 0  # batches that failed and were written one request at a time
        self._attribute_map = {e.logical: attribute_fields(settings.attributes, e.logical) for e in ENTITIES}
        self._present: dict[str, set[str]] = {}  # entity logical name -> its columns (known after check)

    # ------------------------------------------------------------ port

    async def check(self, fields: Sequence[str]) -> None:
        """Sign in, read each table once, and check that every named column exists on account or contact (a
        column such as revenue or industrycode exists on accounts only; it is read where it exists)."""
        table = self.settings.tags_table
        if table is not None:
            await self._check_table(table)
        found: dict[str, set[str]] = {}
        for entity in ENTITIES:
            url = f"{API}/{entity.set_name}?$select={entity.key}&$top=1{self._expand(entity)}"
            await self._get(url, f"read {entity.set_name}", self._collection(entity))
            found[entity.logical] = await self._columns(entity)
            if table is None:
                await self._load_options(entity)
        call = "read the columns of account and contact"
        for name in fields:
            if not any(name in columns for columns in found.values()):
                raise CrmError(NAME, call, f"field {name} does not exist", FIX_FIELDS)
        for wanted in self.settings.attributes:
            kinds = [wanted.kind] if wanted.kind else [e.logical for e in ENTITIES]
            if not any(wanted.field in found[k] for k in kinds):
                raise CrmError(
                    NAME,
                    f"read the columns of {' and '.join(kinds)}",
                    f"field {wanted.field} (attribute {wanted.attribute}) does not exist",
                    "fix KEBIAO_CRM_DYNAMICS_ATTRIBUTES to name an existing column",
                )
        self._present = found
        self._attribute_map = {
            e.logical: {
                a: c for a, c in attribute_fields(self.settings.attributes, e.logical).items() if c in found[e.logical]
            }
            for e in ENTITIES
        }

    async def _columns(self, entity: Entity) -> set[str]:
        """The logical names of a table's columns, from its attribute metadata."""
        url = f"{API}/EntityDefinitions(LogicalName='{entity.logical}')/Attributes?$select=LogicalName"
        body = await self._get(url, f"read the columns of {entity.logical}", ())
        rows = body.get("value")
        if not isinstance(rows, list):
            raise _garbage(f"read the columns of {entity.logical}", "no 'value' list")
        return {str(r["LogicalName"]) for r in rows if isinstance(r, Mapping) and r.get("LogicalName")}

    async def changes(self, cursor: str | None, fields: Sequence[str]) -> CrmPage:
        phases = len(ENTITIES) + (1 if self.settings.tags_table else 0)
        state = _Cursor.load(cursor, phases)
        if state.entity == len(ENTITIES):
            records, body, high, key = await self._tag_row_changes(state, fields)
        else:
            entity = ENTITIES[state.entity]
            key = entity.set_name
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
        since = {**state.since, key: high} if high else dict(state.since)
        last = state.entity + 1 >= phases
        nxt = _Cursor(0 if last else state.entity + 1, since, None, None)
        return CrmPage(records, nxt.dump(), last)

    async def _tag_row_changes(
        self, state: _Cursor, fields: Sequence[str]
    ) -> tuple[tuple[CrmRecord, ...], dict[str, Any], str | None, str]:
        """Records whose tag rows changed since the watermark (a new or edited tag row does not change its
        record's modifiedon). Without a watermark (a first or full sync, which read every record already) only
        the newest modifiedon is taken, so the next incremental sync starts there."""
        table = self.settings.tags_table
        assert table is not None
        call = f"read changed {table.set_name}"
        since = state.since.get(table.set_name)
        if since is None and state.next is None:
            url = f"{API}/{table.set_name}?$select=modifiedon&$orderby=modifiedon desc&$top=1"
            rows = (await self._get(url, call, ())).get("value") or []
            newest = str(rows[0].get("modifiedon") or "") if rows and isinstance(rows[0], Mapping) else ""
            return (), {}, newest or None, table.set_name
        lookups = {kind: f"_{lookup}_value" for kind, (lookup, _) in table.links.items()}
        url = state.next or (
            f"{API}/{table.set_name}?$select={table.key},{','.join(lookups.values())},modifiedon"
            f"&$filter=modifiedon ge {since}&$orderby=modifiedon asc,{table.key} asc"
        )
        body = await self._get(url, call, (), paged=True)
        rows = body.get("value")
        if not isinstance(rows, list):
            raise _garbage(call, "no 'value' list")
        parents: dict[str, set[str]] = {kind: set() for kind in lookups}
        for row in rows:
            for kind, column in lookups.items():
                if isinstance(row, Mapping) and row.get(column):
                    parents[kind].add(str(row[column]))
        records: list[CrmRecord] = []
        for kind, ids in parents.items():
            records += await self._records_by_id(BY_KIND[kind], sorted(ids), fields)
        high = max([state.high or "", *(str(r.get("modifiedon") or "") for r in rows if isinstance(r, Mapping))])
        return tuple(records), body, high or None, table.set_name

    async def _records_by_id(self, entity: Entity, ids: Sequence[str], fields: Sequence[str]) -> list[CrmRecord]:
        """Records by id, up to 100 a request with the `Microsoft.Dynamics.CRM.In` query function."""
        out: list[CrmRecord] = []
        for i in range(0, len(ids), 100):
            values = ",".join(f"'{rid}'" for rid in ids[i : i + 100])
            where = f"&$filter=Microsoft.Dynamics.CRM.In(PropertyName='{entity.key}',PropertyValues=[{values}])"
            url = f"{API}/{entity.set_name}?$select={self._select(entity, fields)}{self._expand(entity)}{where}"
            body = await self._get(url, f"read {entity.set_name} with changed tags", fields)
            out += [self._record(entity, row, fields) for row in body.get("value") or []]
        return out

    async def get(self, ref: CrmRef) -> CrmRecord | None:
        entity = BY_KIND[ref.kind]
        url = f"{API}/{entity.set_name}({ref.crm_id})?$select={self._select(entity, ())}{self._expand(entity)}"
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
        call = f"write tags on {entity.logical} {ref.crm_id}"
        for op in self._operations(TagWrite(current, tuple(add), tuple(remove))):
            await self._send(op.method, op.url, call, op.body)

    async def write_many(self, writes: Sequence[TagWrite]) -> list[CrmError | None]:
        """Two or more writes go in `$batch` change sets; a failed batch falls back to one request at a time,
        so each write keeps its own error."""
        plans = [self._operations(w) for w in writes]
        out: list[CrmError | None] = [None] * len(writes)
        chunk: list[int] = []
        size = 0
        for index, ops in enumerate(plans):
            if chunk and size + len(ops) > MAX_REQUESTS:
                await self._write_chunk(chunk, plans, out)
                chunk, size = [], 0
            if ops:
                chunk.append(index)
                size += len(ops)
        if chunk:
            await self._write_chunk(chunk, plans, out)
        return out

    async def _write_chunk(self, chunk: list[int], plans: list[list[Operation]], out: list[CrmError | None]) -> None:
        if len(chunk) > 1:
            try:
                await self._batch([op for i in chunk for op in plans[i]])
                return
            except CrmError as exc:
                self.batch_fallbacks += 1
                log.warning("dynamics: $batch of %d writes failed (%s); writing them one by one", len(chunk), exc)
        down: CrmError | None = None
        for index in chunk:
            if down is not None:
                out[index] = down
                continue
            try:
                for op in plans[index]:
                    await self._send(op.method, op.url, f"{op.method} {_short(op.url)}", op.body)
            except CrmError as exc:
                out[index] = exc
                down = exc if exc.retryable else None

    def _operations(self, write: TagWrite) -> list[Operation]:
        """The requests that give one record its new tags: a PATCH of the choice column, or rows to add/delete."""
        record = write.record
        entity = BY_KIND[record.ref.kind]
        root = self.settings.url.rstrip("/") + API
        table = self.settings.tags_table
        if table is None:
            wanted = [t for t in record.tags if t not in set(write.remove)]
            wanted += [t for t in write.add if t not in record.tags]
            values = self._option_values(entity, wanted)
            body = {self.settings.tags_field: ",".join(str(v) for v in values) or None}
            url = f"{root}/{entity.set_name}({record.ref.crm_id})"
            return [Operation("PATCH", url, body, {"If-Match": "*"})]
        lookup = table.links[entity.logical][0]
        bind = {f"{lookup}@odata.bind": f"/{entity.set_name}({record.ref.crm_id})"}
        adds = [Operation("POST", f"{root}/{table.set_name}", {table.name: t, **bind}) for t in write.add]
        gone = [record.tag_ids[t] for t in write.remove if t in record.tag_ids]
        return [*adds, *(Operation("DELETE", f"{root}/{table.set_name}({rid})") for rid in gone)]

    async def _batch(self, operations: Sequence[Operation]) -> None:
        """One `$batch` with every operation in one change set; raises CrmError unless all of them succeeded."""
        ctype, body = encode(operations)
        call = f"$batch of {len(operations)} writes"
        status, text, answer_type = await self._exchange("POST", f"{API}/$batch", call, data=body, ctype=ctype)
        if "multipart/mixed" not in answer_type:
            _answer(call, status, text, answer_type, (), f"{API}/$batch")
            raise _garbage(call, f"HTTP {status}, not multipart/mixed")
        try:
            answers = decode(answer_type, text)
        except ValueError as exc:
            raise _garbage(call, str(exc)) from None
        failed = [a for a in answers if a.status >= 300]
        if failed or len(answers) != len(operations):
            first = failed[0] if failed else None
            detail = f"request {first.content_id or '?'} answered HTTP {first.status}" if first else "answers missing"
            raise CrmError(NAME, call, f"change set rolled back: {detail}", "each write is retried on its own")

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------ records

    def _attributes(self, entity: Entity) -> dict[str, str]:
        return self._attribute_map[entity.logical]

    def _select(self, entity: Entity, fields: Sequence[str]) -> str:
        own = [entity.key, entity.name, "modifiedon", "merged", "_masterid_value"]
        carrier = [] if self.settings.tags_table else [self.settings.tags_field]
        present = self._present.get(entity.logical)
        mapped = [f for f in fields if present is None or f in present]  # a column the table lacks reads as ""
        return ",".join(dict.fromkeys([*own, *carrier, *mapped, *self._attributes(entity).values()]))

    def _collection(self, entity: Entity) -> list[str]:
        table = self.settings.tags_table
        return [table.links[entity.logical][1]] if table is not None else []

    def _expand(self, entity: Entity) -> str:
        """`&$expand=<collection>($select=key,name)` when tags are rows of a related table."""
        table = self.settings.tags_table
        if table is None:
            return ""
        return f"&$expand={table.links[entity.logical][1]}($select={table.key},{table.name})"

    def _query(self, entity: Entity, fields: Sequence[str], since: str | None) -> str:
        where = f"&$filter=modifiedon ge {since}" if since else ""
        order = f"&$orderby=modifiedon asc,{entity.key} asc"
        return f"{API}/{entity.set_name}?$select={self._select(entity, fields)}{self._expand(entity)}{where}{order}"

    async def _check_table(self, table: TagTable) -> None:
        """The related tags table exists with its key and name columns."""
        call = f"read the tags table {table.set_name}"
        url = f"{API}/{table.set_name}?$select={table.key},{table.name}&$top=1"
        try:
            await self._get(url, call, (table.key, table.name))
        except CrmRecordGone:
            raise CrmError(
                NAME,
                call,
                f"no table with entity set {table.set_name}",
                "set KEBIAO_CRM_DYNAMICS_TAGS_TABLE to the entity set name of the related tags table",
            ) from None

    def _record(self, entity: Entity, row: Any, fields: Sequence[str]) -> CrmRecord:
        if not isinstance(row, Mapping) or not row.get(entity.key):
            raise _garbage(f"read {entity.set_name}", f"a row without '{entity.key}'")
        tags, tag_ids = self._tags_of(entity, row)
        modified = row.get("modifiedon")
        return CrmRecord(
            ref=CrmRef(str(row[entity.key]), entity.logical),
            name=str(row.get(entity.name) or ""),
            modified_at=datetime.fromisoformat(str(modified).replace("Z", "+00:00")) if modified else None,
            tags=tags,
            fields={f: _value(row, f) for f in fields},
            merged_into=str(row["_masterid_value"]) if row.get("merged") and row.get("_masterid_value") else None,
            attributes={a: _value(row, col) for a, col in self._attributes(entity).items()},
            tag_ids=tag_ids,
        )

    def _tags_of(self, entity: Entity, row: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, str]]:
        """The record's tag names (and each tag row's id when tags are rows of a related table)."""
        table = self.settings.tags_table
        if table is None:
            labels = self._options.get(entity.logical, {})
            raw = row.get(self.settings.tags_field) or ""
            return tuple(labels[int(v)] for v in str(raw).split(",") if v.strip().isdigit() and int(v) in labels), {}
        rows = row.get(table.links[entity.logical][1])
        if not isinstance(rows, list):
            raise _garbage(f"read {entity.set_name}", f"no expanded '{table.links[entity.logical][1]}' list")
        ids = {str(r[table.name]): str(r[table.key]) for r in rows if isinstance(r, Mapping) and r.get(table.name)}
        return tuple(ids), ids

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
        status, text, ctype = await self._exchange(method, url, call, body=body, extra=extra)
        return _answer(call, status, text, ctype, fields, url)

    async def _exchange(
        self,
        method: str,
        url: str,
        call: str,
        *,
        body: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        ctype: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """One request with sign-in renewal on 401 and waits on 429: (status, body text, Content-Type)."""
        full = url if url.startswith("http") else self.settings.url.rstrip("/") + url
        session = await self._client()
        for attempt in range(MAX_RETRIES + 1):
            headers = {
                "Authorization": f"Bearer {await self._bearer()}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                **(extra or {}),
                **({"Content-Type": ctype} if ctype else {}),
            }
            if method == "PATCH":
                headers["If-Match"] = "*"  # update only: a deleted record answers 404 instead of being created
            payload: dict[str, Any] = {"data": data} if data is not None else {"json": body}
            try:
                async with session.request(method, full, headers=headers, **payload) as resp:
                    text = await resp.text()
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
                    answer_type = resp.headers.get("Content-Type", "")
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
            return status, text, answer_type
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
    def load(cls, text: str | None, phases: int = len(ENTITIES)) -> _Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            int(data.get("entity", 0)) % phases,
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


FIX_FIELDS = (
    "fix crm_fields in the taxonomy, KEBIAO_CRM_DYNAMICS_ATTRIBUTES or KEBIAO_CRM_DYNAMICS_TAGS_FIELD "
    "to name an existing column"
)


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


def _short(url: str) -> str:
    """The part of a request URL after the service root, for error lines."""
    return url.split(API, 1)[-1].lstrip("/")


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
    if status >= 500 and not isinstance(data, dict):  # a gateway or the service itself is down: try again later
        raise CrmError(NAME, call, f"HTTP {status} (service unavailable)", "try again later", retryable=True)
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
            FIX_FIELDS,
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
