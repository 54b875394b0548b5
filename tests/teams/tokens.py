"""Locally minted RSA keys, a fake OpenID metadata + JWKS server on 127.0.0.1, and a token minter.

The SDK fetches signing keys with blocking `requests` on the event loop, so this server runs in its own
thread (an aiohttp server on the test loop would deadlock).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from botframework.connector.auth import (
    AppCredentials,
    PasswordServiceClientCredentialFactory,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"


@cache
def _rsa_key(name: str) -> rsa.RSAPrivateKey:
    """One 2048-bit key per name per test session (key generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class SigningKey:
    """A private key with its `kid` and the channel endorsements published beside it."""

    kid: str
    endorsements: tuple[str, ...] = ("msteams",)
    name: str = "main"

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return _rsa_key(self.name)

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        data.update(kid=self.kid, use="sig", endorsements=list(self.endorsements))
        return data


@dataclass
class OpenIdServer:
    """Serves /.well-known/openidconfiguration and /keys for the published keys."""

    keys: list[SigningKey] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    def start(self) -> OpenIdServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/v1/.well-known/openidconfiguration":
                    body: dict[str, Any] = {
                        "issuer": ISSUER,
                        "jwks_uri": f"{owner.base_url}/keys",
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    }
                elif self.path == "/keys":
                    body = {"keys": [key.jwk() for key in owner.keys]}
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def mint_token(
    key: SigningKey,
    *,
    audience: str,
    service_url: str,
    issuer: str = ISSUER,
    expires_in: int = 3600,
    kid: str | None = None,
    signing_key: SigningKey | None = None,
) -> str:
    """A channel->bot token as the Bot Connector issues it (RS256, `kid` header, serviceurl claim)."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "serviceurl": service_url,
        "nbf": now - 60,
        "iat": now - 60,
        "exp": now + expires_in,
    }
    signer = (signing_key or key).private_key
    return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": kid or key.kid})


BOT_TOKEN = "test-bot-token-kebiao-7f3a"


class StaticTokenCredentials(AppCredentials):
    """Outbound credentials returning a fixed bearer token instead of asking login.microsoftonline.com."""

    def __init__(self, app_id: str, token: str) -> None:
        super().__init__(app_id=app_id)
        self._token = token

    def get_access_token(self, force_refresh: bool = False) -> str:
        return self._token


class LocalCredentialFactory(PasswordServiceClientCredentialFactory):
    """The real password factory (app id checks included) that hands out a static token."""

    def __init__(self, app_id: str, password: str, token: str = BOT_TOKEN) -> None:
        super().__init__(app_id, password)
        self._token = token

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> AppCredentials:
        if not await self.is_valid_app_id(app_id):
            raise PermissionError(f"unexpected outbound app id {app_id!r}")
        return StaticTokenCredentials(app_id, self._token)
