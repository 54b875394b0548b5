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
- throttling: https://learn.microsoft.com/power-apps/developer/data-platform/api-limits (429 + Retry-After)
- tokens: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow and the
  OpenID configuration at /{tenant}/v2.0/.well-known/openid-configuration (invalid_client → 401 AADSTS7000215)
"""

from __future__ import annotations

import itertools
import json
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

    async def collection(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        entity_set = request.match_info["set"]
        if entity_set not in ENTITIES:
            return _error(404, "0x8006088a", f"Resource not found for the segment '{entity_set}'.")
        q = request.query
        cols = select(entity_set, q.get("$select", ""))
        if isinstance(cols, web.Response):
            return cols
        key = ENTITIES[entity_set][1]
        rows = sorted(fake.rows[entity_set].values(), key=lambda r: (r["modifiedon"], r[key]))
        flt = q.get("$filter", "")
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
            "value": [{"@odata.etag": 'W/"1"', **formatted(r, cols, request)} for r in page],
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
            body = await request.json()
            for col in body:
                if col not in columns_of(entity_set):
                    return _error(400, "0x80060888", f"Could not find a property named '{col}'.")
            fake.update(entity_set, rid, **body)
            return web.Response(status=204)
        cols = select(entity_set, request.query.get("$select", ""))
        if isinstance(cols, web.Response):
            return cols
        return web.json_response(formatted(row, cols, request))

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
    app.router.add_get("/api/data/v9.2/{set}({id})", single)
    app.router.add_patch("/api/data/v9.2/{set}({id})", single)
    app.router.add_get("/api/data/v9.2/{set}", collection)
    return app
