"""`POST /api/messages`: CloudAdapter construction and the aiohttp route that feeds it.

CloudAdapter.process() of botbuilder 4.17.x serialises invoke bodies a second time (every invoke answers
HTTP 500), so the route parses the request itself, authenticates, de-duplicates, then calls
`process_activity` and writes the invoke response once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jwt
from aiohttp import web
from botbuilder.core import Bot, InvokeResponse
from botbuilder.core.serializer_helper import serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity
from botframework.connector.auth import AuthenticateRequestResult, BotFrameworkAuthentication
from msrest.exceptions import DeserializationError
from msrest.serialization import Model

from bots.teams.dedup import ActivityClaims, activity_key

log = logging.getLogger(__name__)

MESSAGES_PATH = "/api/messages"
MAX_BODY_BYTES = 256 * 1024


class RequestRejected(Exception):
    """The request is refused before the bot runs; carries the HTTP status and a reason for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def create_adapter(authentication: BotFrameworkAuthentication) -> CloudAdapter:
    """A CloudAdapter on `authentication`; turn errors propagate to the endpoint (no on_turn_error)."""
    return CloudAdapter(authentication)


class TeamsEndpoint:
    """The Bot Framework messaging endpoint: parse, authenticate, de-duplicate, run `bot`, answer."""

    def __init__(
        self,
        adapter: CloudAdapter,
        bot: Bot,
        claims: ActivityClaims | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.adapter = adapter
        self.bot = bot
        self.claims = claims
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application (`app.router.add_routes(endpoint.routes())`)."""
        return [web.post(MESSAGES_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for POST /api/messages."""
        try:
            activity = await self._read_activity(request)
            auth = await self._authenticate(activity, request.headers.get("Authorization"))
        except RequestRejected as rejected:
            return web.json_response({"error": rejected.reason}, status=rejected.status)
        key = activity_key(activity)
        if key is not None and self.claims is not None and not await self.claims.claim(key):
            log.info("duplicate activity %s (%s) acknowledged without running the bot", key, activity.type)
            return web.Response(status=200)
        try:
            invoke_response = await self.adapter.process_activity(auth, activity, self.bot.on_turn)
        except Exception:
            log.exception("bot turn failed for %s activity %s", activity.type, key)
            if key is not None and self.claims is not None:
                await self.claims.release(key)
            return web.json_response({"error": "the bot failed to process the activity"}, status=500)
        return _response(invoke_response)

    async def _read_activity(self, request: web.Request) -> Activity:
        """Parse the body into an Activity, refusing wrong content types, oversize bodies and non-JSON."""
        content_type = request.headers.get("Content-Type", "")
        if request.content_type != "application/json":
            raise RequestRejected(400, f"Content-Type must be application/json, got {content_type!r}")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise RequestRejected(
                413, f"body of {request.content_length} bytes exceeds {self.max_body_bytes}"
            )
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > self.max_body_bytes:
                raise RequestRejected(413, f"body exceeds {self.max_body_bytes} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestRejected(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise RequestRejected(400, "body must be a JSON object (a Bot Framework activity)")
        try:
            activity = Activity().deserialize(payload)
        except DeserializationError as exc:
            raise RequestRejected(400, f"body is not a valid activity: {exc}") from None
        if not activity.type:
            raise RequestRejected(400, "activity has no 'type'")
        return activity

    async def _authenticate(self, activity: Activity, header: str | None) -> AuthenticateRequestResult:
        """Validate the channel's JWT (or allow anonymous in local mode); failures become 401."""
        authentication = self.adapter.bot_framework_authentication
        try:
            # The SDK only skips auth for a missing header when it is None, never for "".
            return await authentication.authenticate_request(activity, header or None)
        except (PermissionError, jwt.PyJWTError, ValueError, LookupError, AttributeError) as exc:
            # LookupError: unknown signing key id; AttributeError: the SDK dereferences a None identity
            # for malformed headers. The token itself is never logged.
            log.warning("rejected %s activity: %s: %s", activity.type, type(exc).__name__, exc)
            raise RequestRejected(401, "unauthorized") from None
        except OSError as exc:
            log.error("cannot fetch Bot Framework signing keys: %s", type(exc).__name__)
            raise RequestRejected(503, "token signing keys unavailable, retry later") from None
        except Exception as exc:
            # The SDK signals endorsement failures with a bare Exception.
            log.warning("rejected %s activity: %s: %s", activity.type, type(exc).__name__, exc)
            raise RequestRejected(401, "unauthorized") from None


def _response(invoke_response: InvokeResponse | None) -> web.Response:
    """Write an invoke (or expect-replies) response once; everything else is an empty 200."""
    if invoke_response is None:
        return web.Response(status=200)
    status = int(invoke_response.status or 200)
    body = _plain(invoke_response.body)
    if body is None:
        return web.Response(status=status)
    return web.json_response(body, status=status)


def _plain(body: Any) -> Any:
    """SDK models become JSON dicts; ActivityHandler has usually done this already, so only once."""
    if isinstance(body, Model):
        return serializer_helper(body)
    if isinstance(body, list):
        return [_plain(item) for item in body]
    return body
