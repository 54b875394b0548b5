"""Teams tab single sign-on: validate the Entra ID (AAD) v2 access token the Teams JS library hands the page.

Checked, failing closed: RS256 signature by a key from the tenant's published JWKS (fetched from a
configurable URL, cached, re-fetched at most once a minute for an unknown `kid`), issuer
`https://login.microsoftonline.com/{tid}/v2.0`, audience `api://<host>/<app id>`, expiry and not-before, an
allowed tenant when tenants are configured, and an object id (`oid`) to map to a Kebiao user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from jwt.algorithms import RSAAlgorithm

from core.console.ports import SignInError

log = logging.getLogger(__name__)

ISSUER = "https://login.microsoftonline.com/{tid}/v2.0"
KEYS_TTL = 3600.0
REFETCH_GAP = 60.0
LEEWAY = 60
MAX_TOKEN = 16 * 1024


@dataclass(frozen=True, slots=True)
class TeamsIdentity:
    object_id: str
    tenant_id: str
    name: str


class AadTokenValidator:
    """Validates Teams SSO tokens against one audience; keys cached per process."""

    def __init__(
        self,
        jwks_url: str,
        audience: str,
        tenants: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = jwks_url
        self._audience = audience
        self._tenants = frozenset(tenants)
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    @property
    def configured(self) -> bool:
        return bool(self._audience)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def validate(self, token: str) -> TeamsIdentity:
        """The signed-in member; raises SignInError for anything not exactly right."""
        if not self._audience:
            raise SignInError("Teams sign-in is not configured (set KEBIAO_PUBLIC_HOST and MICROSOFT_APP_ID)")
        if not token or len(token) > MAX_TOKEN:
            raise SignInError("no Teams token, or one too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise SignInError("the Teams token is malformed") from exc
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise SignInError("the Teams token is not signed with RS256 and a key id")
        key = await self._key(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audience,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "tid", "oid"]},
            )
        except jwt.PyJWTError as exc:
            raise SignInError(f"the Teams token was refused: {exc}") from exc
        tid = str(claims["tid"]).lower()
        if claims["iss"] != ISSUER.format(tid=claims["tid"]):
            raise SignInError("the Teams token's issuer is not its tenant's Entra ID v2.0 issuer")
        if self._tenants and tid not in self._tenants:
            raise SignInError("the Teams token comes from a tenant this Kebiao does not serve")
        name = str(claims.get("name") or claims.get("preferred_username") or "")[:200]
        return TeamsIdentity(str(claims["oid"]), tid, name)

    async def _key(self, kid: str) -> Any:
        now = self._clock()
        if kid not in self._keys or now - self._fetched > KEYS_TTL:
            async with self._lock:
                stale = now - self._fetched > KEYS_TTL
                if (kid not in self._keys and now - self._fetched > REFETCH_GAP) or stale:
                    await self._fetch()
        key = self._keys.get(kid)
        if key is None:
            raise SignInError("the Teams token is signed by a key the tenant does not publish")
        return key

    async def _fetch(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with self._session.get(self._url, timeout=timeout) as resp:
                if resp.status != 200:
                    raise SignInError(f"the signing keys could not be fetched (HTTP {resp.status})")
                data = json.loads(await resp.text())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("console: fetching Entra ID signing keys failed: %s", type(exc).__name__)
            raise SignInError("the signing keys could not be fetched") from exc
        keys: dict[str, Any] = {}
        for jwk in data.get("keys", []) if isinstance(data, dict) else []:
            try:
                if jwk.get("kty") == "RSA" and isinstance(jwk.get("kid"), str):
                    keys[jwk["kid"]] = RSAAlgorithm.from_jwk(json.dumps(jwk))
            except (ValueError, TypeError, jwt.PyJWTError):
                continue
        self._keys = keys
        self._fetched = self._clock()
