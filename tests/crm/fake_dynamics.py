"""A small Dataverse Web API and Microsoft identity platform on 127.0.0.1 (HTTPS, self-signed), for tests.

It follows the documented requests and answers:
- paging: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/page-results
  (`Prefer: odata.maxpagesize` at most 5000, `Preference-Applied`, `@odata.nextLink` with a $skiptoken)
- filter/order/select: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-data-web-api
  (an unknown $select column is 400 "Could not find a property named '…' on type 'Microsoft.Dynamics.CRM.…'")
- update: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/update-delete-entities-using-web-api
  (PATCH with `If-Match: *` answers 204, or 404 when the row does not exist)
- choices columns: https://learn.microsoft.com/power-apps/developer/data-platform/multi-select-picklist
  (values are comma-separated option numbers; options from MultiSelectPicklistAttributeMetadata)
- formatted values: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/select-columns
  (`Prefer: odata.include-annotations="OData.Community.Display.V1.FormattedValue"` adds `<column>@…FormattedValue`:
  a choice's label, a number or money amount formatted for the user)
- batches: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api
  (`POST $batch`, `multipart/mixed; boundary=batch_…` holding a change set `changeset_…` of `application/http`
  parts with Content-ID; answered `multipart/mixed; boundary=batchresponse_…` with a `changesetresponse_…` of
  `HTTP/1.1 204 No Content` parts; a failing request rolls the change set back and is answered alone, HTTP 400)
- related tables: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query/join-tables
  (`$expand=<collection>($select=…)` on accounts and contacts) and
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api
  (`POST` a row with `<lookup>@odata.bind: "/accounts(<id>)"`, answered 204 with `OData-EntityId`; `DELETE` a row)
- records by id: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/in
  (`$filter=Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['…','…'])`)
- table columns: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api
  (`EntityDefinitions(LogicalName='account')/Attributes?$select=LogicalName`)
- throttling: https://learn.microsoft.com/power-apps/developer/data-platform/api-limits (429 + Retry-After)
- tokens: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow and the
  OpenID configuration at /{tenant}/v2.0/.well-known/openid-configuration (invalid_client → 401 AADSTS7000215)
"""

from __future__ import annotations

import copy
import email
import email.policy
import itertools
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

TENANT = "00000000-0000-0000-0000-00000000tena"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "fake-dynamics-secret"
TAGS_FIELD = "kb_tags"
ENTITIES = {"accounts": ("account", "accountid", "name"), "contacts": ("contact", "contactid", "fullname")}
MAX_PAGE = 5000
FORMATTED = "OData.Community.Display.V1.FormattedValue"
# Standard columns of the documented account and contact tables that the attribute reads use.
STANDARD = {
    "accounts": ("industrycode", "numberofemployees", "revenue", "address1_stateorprovince"),
    "contacts": ("accountrolecode", "jobtitle", "address1_stateorprovince"),
}
# The related tags table (one row per tag, linked to an account or a contact), as a solution would define it.
TAG_SET, TAG_KEY, TAG_NAME = "kb_customertags", "kb_customertagid", "kb_name"
TAG_LINKS = {"accounts": ("kb_accountid", "kb_account_tags"), "contacts": ("kb_contactid", "kb_contact_tags")}
CHOICES = {
    "industrycode": {1: "Accounting", 12: "Manufacturing", 27: "Retail"},
    "accountrolecode": {1: "Decision Maker", 2: "Employee", 3: "Influencer"},
}


@dataclass
class FakeDataverse:
    """State of the fake: rows per entity set, options, tokens, and switches for failures."""

    base: str = ""
    options: dict[int, str] = field(default_factory=dict)
    rows: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {k: {} for k in ENTITIES})
    extra_columns: tuple[str, ...] = ("kb_industry",)
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    throttle_next: int = 0
    down: bool = False
    html: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    tag_rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # the related tags table, by row id
    batches: list[int] = field(default_factory=list)  # requests in each $batch received
    reject_batches: bool = False  # answer every $batch with a service error (the client must fall back)
    clock: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def add(self, entity_set: str, name: str, tags: list[str] = (), **columns: Any) -> str:  # type: ignore[assignment]
        _logical, key, name_col = ENTITIES[entity_set]
        rid = f"{next(self._ids):08x}-0000-0000-0000-000000000000"
        row = {key: rid, name_col: name, "merged": False, "_masterid_value": None, "kb_industry": None}
        row[TAGS_FIELD] = self.values(tags)
        row.update(columns)
        row["modifiedon"] = self.tick()
        self.rows[entity_set][rid] = row
        return rid

    def update(self, entity_set: str, rid: str, **columns: Any) -> None:
        self.rows[entity_set][rid].update(columns)
        self.rows[entity_set][rid]["modifiedon"] = self.tick()

    def values(self, labels: Any) -> str | None:
        by_label = {v: k for k, v in self.options.items()}
        return ",".join(str(by_label[t]) for t in labels) or None

    def labels(self, entity_set: str, rid: str) -> list[str]:
        raw = self.rows[entity_set][rid].get(TAGS_FIELD) or ""
        return [self.options[int(v)] for v in raw.split(",") if v.strip()]

    def add_tag_row(self, entity_set: str, rid: str, name: str) -> str:
        """A row of the related tags table linked to one account or contact (its parent is not modified)."""
        row_id = f"{next(self._ids):08x}-0000-0000-0000-0000000000aa"
        lookup = f"_{TAG_LINKS[entity_set][0]}_value"
        row = {TAG_KEY: row_id, TAG_NAME: name, "modifiedon": self.tick(), lookup: rid}
        self.tag_rows[row_id] = row
        return row_id

    def table_labels(self, entity_set: str, rid: str) -> list[str]:
        lookup = f"_{TAG_LINKS[entity_set][0]}_value"
        return sorted(r[TAG_NAME] for r in self.tag_rows.values() if r.get(lookup) == rid)

    def expire_tokens(self) -> None:
        self.tokens.clear()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def build_app(fake: FakeDataverse) -> web.Application:
    """The fake's aiohttp application: identity endpoints and /api/data/v9.2."""

    async def openid(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        root = f"{fake.base}/{tenant}"
        return web.json_response(
            {
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "issuer": f"{root}/v2.0",
            }
        )

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        fake.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                    "sent in the request is the client secret value, not the client secret ID.",
                },
                status=401,
            )
        access = secrets.token_urlsafe(16)
        fake.tokens.add(access)
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": access})

    def guard(request: web.Request) -> web.Response | None:
        fake.requests.append((request.method, request.path_qs))
        if fake.down:
            return web.Response(status=503, text="Service Unavailable")
        if fake.html:
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in fake.tokens:
            return _error(401, "0x80072560", "The user is not a member of the organization.")
        if fake.throttle_next > 0:
            fake.throttle_next -= 1
            return web.json_response(
                {"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit of 6000"}},
                status=429,
                headers={"Retry-After": "0"},
            )
        return None

    def columns_of(entity_set: str) -> set[str]:
        _, key, name = ENTITIES[entity_set]
        standard = STANDARD[entity_set]
        return {key, name, "modifiedon", "merged", "_masterid_value", TAGS_FIELD, *fake.extra_columns, *standard}

    def formatted(row: dict[str, Any], cols: list[str], request: web.Request) -> dict[str, Any]:
        """The row's selected columns, with FormattedValue annotations when the client asked for them."""
        out = {c: row.get(c) for c in cols}
        prefer = request.headers.get("Prefer", "")
        if FORMATTED not in prefer and 'odata.include-annotations="*"' not in prefer:
            return out
        for col in cols:
            value = row.get(col)
            if value is None or isinstance(value, str):
                continue
            if col in CHOICES:
                out[f"{col}@{FORMATTED}"] = CHOICES[col].get(value, str(value))
            elif col == "revenue":
                out[f"{col}@{FORMATTED}"] = f"¥{value:,.2f}"
            elif isinstance(value, int) and not isinstance(value, bool):
                out[f"{col}@{FORMATTED}"] = f"{value:,}"
        return out

    def select(entity_set: str, raw: str) -> list[str] | web.Response:
        cols = [c for c in raw.split(",") if c] if raw else sorted(columns_of(entity_set))
        for col in cols:
            if col not in columns_of(entity_set):
                logical = ENTITIES[entity_set][0]
                return _error(
                    400,
                    "0x80060888",
                    f"Could not find a property named '{col}' on type 'Microsoft.Dynamics.CRM.{logical}'.",
                )
        return cols

    def expand(entity_set: str, raw: str) -> tuple[str, list[str]] | web.Response | None:
        """`$expand=<collection>($select=a,b)`: the collection of tag rows and the columns to give."""
        if not raw:
            return None
        name, _, rest = raw.partition("(")
        if name != TAG_LINKS[entity_set][1]:
            logical = ENTITIES[entity_set][0]
            return _error(
                400,
                "0x80060888",
                f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'.",
            )
        cols = rest.rstrip(")").removeprefix("$select=").split(",") if rest else [TAG_KEY, TAG_NAME]
        return name, [c for c in cols if c]

    def with_tags(
        entity_set: str, row: dict[str, Any], out: dict[str, Any], wanted: tuple[str, list[str]] | None
    ) -> dict[str, Any]:
        if wanted is not None:
            lookup = f"_{TAG_LINKS[entity_set][0]}_value"
            key = ENTITIES[entity_set][1]
            mine = [r for r in fake.tag_rows.values() if r.get(lookup) == row[key]]
            out[wanted[0]] = [{c: r.get(c) for c in wanted[1]} for r in mine]
        return out

    def tag_table(request: web.Request) -> web.Response:
        q = request.query
        cols = [c for c in q.get("$select", "").split(",") if c] or [TAG_KEY, TAG_NAME]
        known = {TAG_KEY, TAG_NAME, "modifiedon", *(f"_{lookup}_value" for lookup, _ in TAG_LINKS.values())}
        for col in cols:
            if col not in known:
                message = f"Could not find a property named '{col}' on type 'Microsoft.Dynamics.CRM.kb_customertag'."
                return _error(400, "0x80060888", message)
        rows = sorted(fake.tag_rows.values(), key=lambda r: (r["modifiedon"], r[TAG_KEY]))
        if "modifiedon desc" in q.get("$orderby", ""):
            rows.reverse()
        if q.get("$filter", "").startswith("modifiedon ge "):
            rows = [r for r in rows if r["modifiedon"] >= q["$filter"].removeprefix("modifiedon ge ")]
        if "$skiptoken" in q:
            last = json.loads(q["$skiptoken"])
            rows = [r for r in rows if (r["modifiedon"], r[TAG_KEY]) > (last[0], last[1])]
        rows = rows[: int(q.get("$top", "100000"))]
        prefer = request.headers.get("Prefer", "")
        size = MAX_PAGE
        if "odata.maxpagesize=" in prefer:
            size = min(int(prefer.split("odata.maxpagesize=")[1].split(",")[0]), MAX_PAGE)
        body: dict[str, Any] = {"value": [{c: r.get(c) for c in cols} for r in rows[:size]]}
        if len(rows) > size:
            params = {k: v for k, v in q.items() if k != "$skiptoken"}
            params["$skiptoken"] = json.dumps([rows[size - 1]["modifiedon"], rows[size - 1][TAG_KEY]])
            body["@odata.nextLink"] = f"{fake.base}/api/data/v9.2/{TAG_SET}?{urlencode(params)}"
        return web.json_response(body)

    def patch(entity_set: str, rid: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        row = fake.rows.get(entity_set, {}).get(rid)
        if row is None:
            logical = ENTITIES.get(entity_set, ("record",))[0]
            return 404, {"error": {"code": "0x80040217", "message": f"{logical} With Id = {rid} Does Not Exist"}}
        for col in body:
            if col not in columns_of(entity_set):
                return 400, {"error": {"code": "0x80060888", "message": f"Could not find a property named '{col}'."}}
        fake.update(entity_set, rid, **body)
        return 204, None

    def create_tag_row(body: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str]:
        binds = {k.removesuffix("@odata.bind"): v for k, v in body.items() if k.endswith("@odata.bind")}
        name = body.get(TAG_NAME)
        for entity_set, (lookup, _) in TAG_LINKS.items():
            target = binds.get(lookup)
            if target is None:
                continue
            rid = str(target).removeprefix(f"/{entity_set}(").removesuffix(")")
            if rid not in fake.rows[entity_set]:
                logical = ENTITIES[entity_set][0]
                return (
                    404,
                    {"error": {"code": "0x80040217", "message": f"{logical} With Id = {rid} Does Not Exist"}},
                    "",
                )
            if not isinstance(name, str) or not name:
                return 400, {"error": {"code": "0x80040203", "message": f"{TAG_NAME} is required"}}, ""
            row_id = fake.add_tag_row(entity_set, rid, name)
            return 204, None, f"{fake.base}/api/data/v9.2/{TAG_SET}({row_id})"
        return 400, {"error": {"code": "0x80040203", "message": "the row must be bound to an account or contact"}}, ""

    def delete_tag_row(row_id: str) -> tuple[int, dict[str, Any] | None]:
        if fake.tag_rows.pop(row_id, None) is None:
            return 404, {
                "error": {"code": "0x80040217", "message": f"kb_customertag With Id = {row_id} Does Not Exist"}
            }
        return 204, None

    def run(method: str, url: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any] | None, str]:
        """One write inside a batch, by method and absolute URL."""
        path = url.split("/api/data/v9.2/", 1)[-1]
        target, _, rid = path.rstrip(")").partition("(")
        if method == "PATCH" and target in ENTITIES and rid:
            status, payload = patch(target, rid, body or {})
            return status, payload, f"{fake.base}/api/data/v9.2/{target}({rid})"
        if method == "POST" and target == TAG_SET and not rid:
            return create_tag_row(body or {})
        if method == "DELETE" and target == TAG_SET and rid:
            status, payload = delete_tag_row(rid)
            return status, payload, ""
        return 405, {"error": {"code": "0x80060888", "message": f"{method} {path} is not supported here"}}, ""

    async def batch(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        ctype = request.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/mixed") or "boundary=" not in ctype:
            return _error(
                400, "0x80048d19", "The batch request must have a multipart/mixed Content-Type with a boundary."
            )
        if fake.reject_batches:
            return _error(500, "0x80040216", "An unexpected error occurred.")
        raw = f"Content-Type: {ctype}\r\n\r\n".encode() + await request.read()
        message = email.message_from_bytes(raw, policy=email.policy.HTTP)
        requests: list[tuple[str, str, dict[str, Any] | None, str]] = []
        for mime in message.iter_parts():  # type: ignore[attr-defined]
            items = mime.iter_parts() if mime.is_multipart() else [mime]
            for item in items:
                raw_part: Any = item.get_payload(decode=True)
                text = bytes(raw_part).decode("utf-8").replace("\r\n", "\n")
                head, _, content = text.partition("\n\n")
                method, url, _version = head.splitlines()[0].split(" ", 2)
                requests.append(
                    (method, url, json.loads(content) if content.strip() else None, item["Content-ID"] or "")
                )
        fake.batches.append(len(requests))
        if len(requests) > 1000:
            return _error(400, "0x80048d19", "A batch can hold at most 1000 requests.")
        saved = (copy.deepcopy(fake.rows), copy.deepcopy(fake.tag_rows))
        answers: list[str] = []
        for method, url, body, content_id in requests:
            fake.requests.append((f"{method} (batch)", url))
            status, payload, entity_id = run(method, url, body)
            if status >= 300:  # the change set is rolled back; the failing request is answered alone
                fake.rows, fake.tag_rows = saved
                alone = _http_part(status, payload, content_id, "")
                return _multipart(f"batchresponse_{secrets.token_hex(8)}", [alone], status=400)
            answers.append(_http_part(status, payload, content_id, entity_id))
        changeset = f"changesetresponse_{secrets.token_hex(8)}"
        inner = "\r\n".join([*(f"--{changeset}\r\n{a}" for a in answers), f"--{changeset}--", ""])
        part = f"Content-Type: multipart/mixed; boundary={changeset}\r\n\r\n{inner}"
        return _multipart(f"batchresponse_{secrets.token_hex(8)}", [part], status=200)

    async def create(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        if request.match_info["set"] != TAG_SET:
            return _error(405, "0x80060888", "creating rows of this table is not supported here")
        status, payload, entity_id = create_tag_row(await request.json())
        if payload is not None:
            return web.json_response(payload, status=status)
        return web.Response(status=status, headers={"OData-EntityId": entity_id})

    async def remove(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        if request.match_info["set"] != TAG_SET:
            return _error(405, "0x80060888", "deleting rows of this table is not supported here")
        status, payload = delete_tag_row(request.match_info["id"])
        return web.json_response(payload, status=status) if payload is not None else web.Response(status=status)

    async def collection(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        entity_set = request.match_info["set"]
        if entity_set == TAG_SET:
            return tag_table(request)
        if entity_set not in ENTITIES:
            return _error(404, "0x8006088a", f"Resource not found for the segment '{entity_set}'.")
        q = request.query
        cols = select(entity_set, q.get("$select", ""))
        if isinstance(cols, web.Response):
            return cols
        wanted = expand(entity_set, q.get("$expand", ""))
        if isinstance(wanted, web.Response):
            return wanted
        key = ENTITIES[entity_set][1]
        rows = sorted(fake.rows[entity_set].values(), key=lambda r: (r["modifiedon"], r[key]))
        flt = q.get("$filter", "")
        among = re.fullmatch(r"Microsoft\.Dynamics\.CRM\.In\(PropertyName='(\w+)',PropertyValues=\[(.*)\]\)", flt)
        if among is not None:  # the documented query function: the column is one of the listed values
            wanted_ids = {v.strip().strip("'") for v in among.group(2).split(",")}
            rows = [r for r in rows if str(r.get(among.group(1))) in wanted_ids]
            flt = ""
        if flt:
            field_, op, value = flt.split(" ", 2)
            if field_ != "modifiedon" or op not in ("ge", "gt"):
                return _error(400, "0x80060888", f"unsupported filter {flt}")
            rows = [r for r in rows if (r["modifiedon"] >= value if op == "ge" else r["modifiedon"] > value)]
        if "$skiptoken" in q:
            last = json.loads(q["$skiptoken"])
            rows = [r for r in rows if (r["modifiedon"], r[key]) > (last[0], last[1])]
        if "$top" in q:
            rows = rows[: int(q["$top"])]
        prefer = request.headers.get("Prefer", "")
        size = MAX_PAGE
        if "odata.maxpagesize=" in prefer:
            size = min(int(prefer.split("odata.maxpagesize=")[1].split(",")[0]), MAX_PAGE)
        page, more = rows[:size], len(rows) > size
        body: dict[str, Any] = {
            "@odata.context": f"{fake.base}/api/data/v9.2/$metadata#{entity_set}",
            "value": [
                with_tags(entity_set, r, {"@odata.etag": 'W/"1"', **formatted(r, cols, request)}, wanted) for r in page
            ],
        }
        if more:
            params = {k: v for k, v in q.items() if k != "$skiptoken"}
            params["$skiptoken"] = json.dumps([page[-1]["modifiedon"], page[-1][key]])
            body["@odata.nextLink"] = f"{fake.base}/api/data/v9.2/{entity_set}?{urlencode(params)}"
        return web.json_response(body, headers={"Preference-Applied": f"odata.maxpagesize={size}"})

    async def single(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        entity_set, rid = request.match_info["set"], request.match_info["id"]
        row = fake.rows.get(entity_set, {}).get(rid)
        if row is None:
            logical = ENTITIES.get(entity_set, ("record",))[0]
            return _error(404, "0x80040217", f"{logical} With Id = {rid} Does Not Exist")
        if request.method == "PATCH":
            status, payload = patch(entity_set, rid, await request.json())
            return web.json_response(payload, status=status) if payload is not None else web.Response(status=status)
        cols = select(entity_set, request.query.get("$select", ""))
        if isinstance(cols, web.Response):
            return cols
        wanted = expand(entity_set, request.query.get("$expand", ""))
        if isinstance(wanted, web.Response):
            return wanted
        return web.json_response(with_tags(entity_set, row, formatted(row, cols, request), wanted))

    async def attributes(request: web.Request) -> web.Response:
        """A table's attribute metadata (query-metadata-web-api): every column's LogicalName."""
        blocked = guard(request)
        if blocked is not None:
            return blocked
        logical = request.match_info["logical"]
        entity_set = next((k for k, v in ENTITIES.items() if v[0] == logical), None)
        if entity_set is None:
            return _error(404, "0x80040217", f"Could not find an entity with name {logical}")
        return web.json_response({"value": [{"LogicalName": c} for c in sorted(columns_of(entity_set))]})

    async def attribute(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        if request.match_info["attr"] != TAGS_FIELD:
            return _error(404, "0x80040217", "Could not find attribute")
        options = [{"Value": v, "Label": {"UserLocalizedLabel": {"Label": label}}} for v, label in fake.options.items()]
        return web.json_response({"LogicalName": TAGS_FIELD, "OptionSet": {"Options": options}})

    app = web.Application()
    app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", openid)
    app.router.add_post("/{tenant}/oauth2/v2.0/token", token)
    app.router.add_get(
        "/api/data/v9.2/EntityDefinitions(LogicalName='{logical}')/Attributes(LogicalName='{attr}')"
        "/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata",
        attribute,
    )
    app.router.add_get("/api/data/v9.2/EntityDefinitions(LogicalName='{logical}')/Attributes", attributes)
    app.router.add_post("/api/data/v9.2/$batch", batch)
    app.router.add_get("/api/data/v9.2/{set}({id})", single)
    app.router.add_patch("/api/data/v9.2/{set}({id})", single)
    app.router.add_delete("/api/data/v9.2/{set}({id})", remove)
    app.router.add_get("/api/data/v9.2/{set}", collection)
    app.router.add_post("/api/data/v9.2/{set}", create)
    return app


def _http_part(status: int, payload: dict[str, Any] | None, content_id: str, entity_id: str) -> str:
    """One `application/http` answer inside a batch response."""
    reason = {204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(status, "")
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    lines += [f"Content-ID: {content_id}"] if content_id else []
    lines += ["", f"HTTP/1.1 {status} {reason}".rstrip(), "OData-Version: 4.0"]
    if entity_id:
        lines.append(f"OData-EntityId: {entity_id}")
    if payload is not None:
        lines += ["Content-Type: application/json; odata.metadata=minimal", "", json.dumps(payload)]
    else:
        lines += ["", ""]
    return "\r\n".join(lines) + "\r\n"


def _multipart(boundary: str, parts: list[str], status: int) -> web.Response:
    body = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts) + f"--{boundary}--\r\n"
    return web.Response(
        status=status,
        body=body.encode("utf-8"),
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"},
    )
