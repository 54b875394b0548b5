"""`GET/POST /wecom/callback`: verify, decrypt, parse, store in the inbox, acknowledge, work in the background.

Order of checks on POST: query parameters, a size cap on the body (at most MAX_BODY_BYTES + 1 bytes are
ever read; a larger body gets 413 and the connection is closed unread), the outer envelope with
defusedxml, the signature (before any decryption), decryption (padding, length, corp id), the inner
XML. Every refusal is a quick 4xx that stores nothing; only a database outage while storing the
callback answers 503 so WeCom retries. A 200 is sent only once the callback is durably in the inbox
(bots.wecom.inbox), whose unique key is also the de-duplication claim.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bots.wecom.background import Background
from bots.wecom.crypto import DecryptError, SignatureError, WeComCrypto
from bots.wecom.inbox import CallbackInbox
from bots.wecom.parser import (
    MAX_BODY_BYTES,
    BodyTooLargeError,
    WeComXmlError,
    parse_envelope,
    parse_message,
)
from bots.wecom.replies import SUCCESS_BODY, SUCCESS_CONTENT_TYPE

log = logging.getLogger(__name__)

CHANNEL = "wecom"
CALLBACK_PATH = "/wecom/callback"


def _refuse(status: int, reason: str) -> web.Response:
    """A short plain-text 4xx; the reason names the check, never key material."""
    return web.Response(status=status, text=reason + "\n", content_type="text/plain")


def _ack() -> web.Response:
    return web.Response(text=SUCCESS_BODY, content_type=SUCCESS_CONTENT_TYPE)


class WeComCallback:
    """The two callback handlers for one WeCom app."""

    def __init__(self, crypto: WeComCrypto, inbox: CallbackInbox, background: Background) -> None:
        self._crypto = crypto
        self._inbox = inbox
        self._background = background

    @property
    def background(self) -> Background:
        """The tasks this callback started (tests and shutdown wait on them)."""
        return self._background

    @property
    def inbox(self) -> CallbackInbox:
        """The durable inbox the callbacks are stored in and processed from."""
        return self._inbox

    async def verify(self, request: web.Request) -> web.Response:
        """URL verification: return the decrypted echostr as plain text."""
        params = _params(request, ("msg_signature", "timestamp", "nonce", "echostr"))
        if isinstance(params, web.Response):
            return params
        signature, timestamp, nonce, echostr = params
        try:
            plaintext = self._crypto.verify_url(signature, timestamp, nonce, echostr)
        except SignatureError:
            log.warning("wecom URL verification refused: bad signature")
            return _refuse(403, "msg_signature does not match")
        except DecryptError as exc:
            log.warning("wecom URL verification refused: %s", exc)
            return _refuse(400, "echostr could not be decrypted")
        return web.Response(text=plaintext, content_type="text/plain")

    async def receive(self, request: web.Request) -> web.StreamResponse:
        """An encrypted callback: acknowledged at once; its effect runs in a background task."""
        params = _params(request, ("msg_signature", "timestamp", "nonce"))
        if isinstance(params, web.Response):
            return params
        signature, timestamp, nonce = params
        body = await _read_capped(request)
        if body is None:
            return await _too_large(request)
        try:
            envelope = parse_envelope(body)
            plaintext = self._crypto.decrypt_message(signature, timestamp, nonce, envelope.encrypt)
            message = parse_message(plaintext)
        except SignatureError:
            log.warning("wecom callback refused: bad signature")
            return _refuse(403, "msg_signature does not match")
        except DecryptError as exc:
            log.warning("wecom callback refused: %s", exc)
            return _refuse(400, "payload could not be decrypted for this app")
        except BodyTooLargeError:
            return await _too_large(request)
        except WeComXmlError as exc:
            log.warning("wecom callback refused: %s", exc)
            return _refuse(400, "callback XML refused")
        try:
            first = await self._inbox.accept(message, plaintext)
        except Exception:
            log.exception("wecom callback could not be stored; asking WeCom to retry")
            return _refuse(503, "temporarily unavailable")
        if not first:
            log.debug("wecom callback %s is a retry; acknowledged again", type(message).__name__)
        return _ack()


def _params(request: web.Request, names: tuple[str, ...]) -> tuple[str, ...] | web.Response:
    """The required query parameters, or a 400 naming the missing ones."""
    values = tuple(request.query.get(name, "") for name in names)
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        return _refuse(400, f"missing query parameter(s): {', '.join(missing)}")
    return values


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY_BYTES (never reads more than one byte past it)."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    total = 0
    while total <= MAX_BODY_BYTES:
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > MAX_BODY_BYTES:
        return None
    return b"".join(chunks)


async def _too_large(request: web.Request) -> web.StreamResponse:
    """413, sent at once; the connection is then closed so the rest of the body is never read."""
    log.warning("wecom callback refused: body larger than %d bytes", MAX_BODY_BYTES)
    response = _refuse(413, f"body larger than {MAX_BODY_BYTES} bytes")
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.protocol is not None:
        request.protocol.force_close()
    return response


def add_routes(app: web.Application, callback: WeComCallback) -> None:
    """Register GET and POST /wecom/callback."""
    app.router.add_get(CALLBACK_PATH, callback.verify)
    app.router.add_post(CALLBACK_PATH, callback.receive)
