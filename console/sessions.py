"""Signed session cookies: who signed in, how, until when, and the CSRF token of the session.

The cookie holds a small JSON document and its HMAC-SHA256 under the console secret; nothing in it is
secret (the CSRF token is bound to the cookie, so a page of another site cannot read or forge it). The
user's role is read from the database on every request, so a demotion takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace

COOKIE = "kebiao_console"


@dataclass(frozen=True, slots=True)
class Session:
    """`user_id` empty: not signed in yet (the session still carries a CSRF token for the sign-in forms)."""

    csrf: str
    expires: int
    user_id: str = ""
    via: str = ""  # token | teams | wecom
    name: str = ""

    @property
    def signed_in(self) -> bool:
        return bool(self.user_id)

    def signed_in_as(self, user_id: str, via: str, name: str, expires: int) -> Session:
        """A new session for the user: a fresh CSRF token, so a token seen before sign-in is useless after."""
        return replace(self, csrf=new_token(), user_id=user_id, via=via, name=name, expires=expires)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def anonymous(now: int, lifetime: int) -> Session:
    return Session(csrf=new_token(), expires=now + lifetime)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(session: Session, key: bytes) -> str:
    body = _b64(
        json.dumps(
            {"c": session.csrf, "e": session.expires, "u": session.user_id, "v": session.via, "n": session.name},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
    )
    return f"{body}.{_b64(hmac.new(key, body.encode('ascii'), hashlib.sha256).digest())}"


def decode(value: str, key: bytes, now: int) -> Session | None:
    """The session in a cookie value; None when it is malformed, forged or expired (fail closed)."""
    body, _, mac = value.partition(".")
    if not body or not mac or len(value) > 4096:
        return None
    try:
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = json.loads(_unb64(body))
        session = Session(
            csrf=str(data["c"]), expires=int(data["e"]), user_id=str(data["u"]), via=str(data["v"]), name=str(data["n"])
        )
    except (ValueError, KeyError, TypeError, UnicodeError):
        return None
    return session if session.expires > now and session.csrf else None


def same_token(given: str, session: Session) -> bool:
    """Constant-time comparison of a submitted CSRF token with the session's."""
    return bool(given) and hmac.compare_digest(given.encode("utf-8"), session.csrf.encode("utf-8"))
