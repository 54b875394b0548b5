"""A small Zoho CRM (REST v2) and Zoho Accounts on 127.0.0.1, for tests.

It follows Zoho's documentation:
- records: https://www.zoho.com/crm/developer/docs/api/v2/get-records.html (`fields`, `page`, `per_page` ≤ 200,
  `sort_by=Modified_Time`, `If-Modified-Since`, `info.more_records`; 304 when nothing changed since then)
- deleted records: https://www.zoho.com/crm/developer/docs/api/v2/get-deleted-records.html
- tags: https://www.zoho.com/crm/developer/docs/api/v2/add-tags.html, …/remove-tags.html, …/get-tag-list.html
- fields: https://www.zoho.com/crm/developer/docs/api/v2/field-meta.html
- tokens: https://www.zoho.com/crm/developer/docs/api/v2/refresh.html (an invalid refresh token answers
  200 {"error": "invalid_code"}; an expired access token answers 401 {"code": "INVALID_TOKEN"})
- limits: https://www.zoho.com/crm/developer/docs/api/v2/api-limits.html (429 TOO_MANY_REQUESTS)
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

CLIENT_ID = "1000.FAKECLIENT"
CLIENT_SECRET = "fake-zoho-secret"
REFRESH_TOKEN = "1000.fake-refresh-token"
NAME_FIELD = {"Accounts": "Account_Name", "Contacts": "Full_Name"}
# Standard fields of the documented Accounts and Contacts modules that the attribute reads use.
STANDARD = {
    "Accounts": ("Industry", "Employees", "Annual_Revenue", "Billing_State"),
    "Contacts": ("Title", "Mailing_State"),
}


@dataclass
class FakeZoho:
    """Records per module, deleted records, tokens, and failure switches."""

    base: str = ""
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {m: {} for m in NAME_FIELD})
    deleted: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {m: [] for m in NAME_FIELD})
    fields: tuple[str, ...] = ("Industry",)
    tokens: set[str] = field(default_factory=set)
    refreshes: int = 0
    refresh_delay: float = 0.0
    throttle_next: int = 0
    html: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    clock: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    _ids: Any = field(default_factory=lambda: itertools.count(4150868000000224001))

    def tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.isoformat(timespec="seconds")

    def add(self, module: str, name: str, tags: list[str] = (), **values: Any) -> str:  # type: ignore[assignment]
        rid = str(next(self._ids))
        self.records[module][rid] = {
            "id": rid,
            NAME_FIELD[module]: name,
            "Tag": [{"name": t, "id": f"t{abs(hash(t)) % 10**9}"} for t in tags],
            "Industry": None,
            **values,
            "Modified_Time": self.tick(),
        }
        return rid

    def update(self, module: str, rid: str, **values: Any) -> None:
        self.records[module][rid].update(values)
        self.records[module][rid]["Modified_Time"] = self.tick()

    def delete(self, module: str, rid: str) -> None:
        row = self.records[module].pop(rid)
        self.deleted[module].append(
            {"id": rid, "display_name": row[NAME_FIELD[module]], "type": "recycle", "deleted_time": self.tick()}
        )

    def tags(self, module: str, rid: str) -> list[str]:
        return sorted(t["name"] for t in self.records[module][rid]["Tag"])


def _err(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(
        {"code": code, "details": details or {}, "message": message, "status": "error"}, status=status
    )


def build_app(fake: FakeZoho) -> web.Application:
    """Zoho Accounts' token endpoint and the CRM v2 API."""

    async def token(request: web.Request) -> web.Response:
        import asyncio

        q = request.query
        fake.refreshes += 1
        if fake.refresh_delay:
            await asyncio.sleep(fake.refresh_delay)
        if q.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type"})
        if q.get("client_id") != CLIENT_ID or q.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"})
        if q.get("refresh_token") != REFRESH_TOKEN:
            return web.json_response({"error": "invalid_code"})
        access = f"1000.{secrets.token_hex(8)}"
        fake.tokens.add(access)
        return web.json_response(
            {"access_token": access, "api_domain": fake.base, "token_type": "Bearer", "expires_in": 3600}
        )

    def guard(request: web.Request) -> web.Response | None:
        fake.requests.append((request.method, request.path_qs))
        if fake.html:
            return web.Response(text="<html><body>Zoho maintenance</body></html>", content_type="text/html")
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Zoho-oauthtoken ") not in fake.tokens:
            return _err(401, "INVALID_TOKEN", "invalid oauth token")
        if fake.throttle_next > 0:
            fake.throttle_next -= 1
            return _err(429, "TOO_MANY_REQUESTS", "concurrency limit exceeded")
        return None

    def module_of(request: web.Request) -> str | None:
        module = request.match_info["module"]
        return module if module in NAME_FIELD else None

    async def list_records(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        module = module_of(request)
        if module is None:
            return _err(400, "INVALID_MODULE", "the module name given seems to be invalid")
        q = request.query
        per_page = int(q.get("per_page", "200"))
        if per_page > 200:
            return _err(400, "INVALID_DATA", "per_page exceeds 200", {"param": "per_page"})
        wanted = q.get("fields", "").split(",") if q.get("fields") else None
        known = {"id", NAME_FIELD[module], "Modified_Time", "Tag", *fake.fields, *STANDARD[module]}
        for name in wanted or ():
            if name not in known:
                return _err(400, "INVALID_DATA", "invalid data", {"api_name": name})
        rows = sorted(fake.records[module].values(), key=lambda r: (r["Modified_Time"], r["id"]))
        since = request.headers.get("If-Modified-Since")
        if since:
            rows = [r for r in rows if r["Modified_Time"] >= since]
        page = int(q.get("page", "1"))
        chunk = rows[(page - 1) * per_page : page * per_page]
        if not chunk:
            return web.Response(status=304 if since else 204)
        data = [{k: r.get(k) for k in (wanted or known)} | {"id": r["id"]} for r in chunk]
        more = len(rows) > page * per_page
        return web.json_response(
            {"data": data, "info": {"per_page": per_page, "count": len(data), "page": page, "more_records": more}}
        )

    async def list_deleted(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        module = module_of(request) or "Accounts"
        since = request.headers.get("If-Modified-Since")
        rows = [r for r in fake.deleted[module] if not since or r["deleted_time"] >= since]
        if not rows:
            return web.Response(status=304 if since else 204)
        return web.json_response(
            {"data": rows, "info": {"per_page": 200, "count": len(rows), "page": 1, "more_records": False}}
        )

    async def one(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        module = module_of(request) or ""
        row = fake.records.get(module, {}).get(request.match_info["id"])
        if row is None:
            return _err(400, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
        return web.json_response({"data": [row]})

    async def tag_action(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        module, rid, action = module_of(request) or "", request.match_info["id"], request.match_info["action"]
        row = fake.records.get(module, {}).get(rid)
        if row is None:
            return web.json_response(
                {
                    "data": [
                        {
                            "code": "INVALID_DATA",
                            "details": {"id": rid},
                            "message": "record not deleted",
                            "status": "error",
                        }
                    ]
                }
            )
        names = [n for n in request.query.get("tag_names", "").split(",") if n]
        current = {t["name"] for t in row["Tag"]}
        current = current | set(names) if action == "add_tags" else current - set(names)
        fake.update(module, rid, Tag=[{"name": n, "id": f"t{abs(hash(n)) % 10**9}"} for n in sorted(current)])
        return web.json_response(
            {
                "data": [
                    {
                        "code": "SUCCESS",
                        "details": {"id": rid, "tags": sorted(current)},
                        "message": "tags updated successfully",
                        "status": "success",
                    }
                ]
            }
        )

    async def tag_list(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        module = request.query.get("module", "")
        names = sorted({t["name"] for r in fake.records.get(module, {}).values() for t in r["Tag"]})
        return web.json_response({"tags": [{"name": n, "id": f"t{abs(hash(n)) % 10**9}"} for n in names]})

    async def field_meta(request: web.Request) -> web.Response:
        blocked = guard(request)
        if blocked is not None:
            return blocked
        module = request.query.get("module", "")
        names = ["id", NAME_FIELD.get(module, ""), "Modified_Time", "Tag", *fake.fields, *STANDARD.get(module, ())]
        return web.json_response({"fields": [{"api_name": n} for n in names]})

    app = web.Application()
    app.router.add_post("/oauth/v2/token", token)
    app.router.add_get("/crm/v2/settings/tags", tag_list)
    app.router.add_get("/crm/v2/settings/fields", field_meta)
    app.router.add_get("/crm/v2/{module}/deleted", list_deleted)
    app.router.add_post("/crm/v2/{module}/{id}/actions/{action}", tag_action)
    app.router.add_get("/crm/v2/{module}/{id}", one)
    app.router.add_get("/crm/v2/{module}", list_records)
    return app
