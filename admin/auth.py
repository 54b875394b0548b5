"""Bearer-token check for the admin API: constant-time compare, the token never logged or echoed."""

from __future__ import annotations

import hmac

from aiohttp import web

from admin.errors import AdminError

_SCHEME = "bearer"


def check_bearer(request: web.Request, token: str) -> None:
    """Raise a 401 AdminError unless the request carries `Authorization: Bearer <token>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not header:
        raise AdminError(401, "missing Authorization header; send 'Authorization: Bearer <KEBIAO_ADMIN_TOKEN>'")
    if scheme.lower() != _SCHEME or not given.strip():
        raise AdminError(401, "the Authorization header must be 'Bearer <KEBIAO_ADMIN_TOKEN>'")
    # compare_digest on bytes: timing does not reveal how much of the token matched
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise AdminError(401, "wrong admin token")
