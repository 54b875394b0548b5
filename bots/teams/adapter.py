"""`POST /api/messages`: CloudAdapter construction and the aiohttp route that feeds it.

CloudAdapter.process() of botbuilder 4.17.x serialises invoke bodies a second time (every invoke answers
HTTP 500), so the route parses the request itself, authenticates, de-duplicates, then calls
`process_activity` and writes the invoke response once.

The SDK builds a new ConnectorClient and UserTokenClient for every turn; each builds an msrest
Configuration (a ~3 ms quadratic retry-code list) and a fresh HTTP session that is never closed, so every
reply opened a new TCP connection. `ReusedClients` hands the same clients back per app id, service URL and
audience instead (the credentials inside refresh their own tokens), each wrapped in a LeanConnectorClient
whose replies, sends and updates go over one pooled aiohttp session (bots.teams.connector).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import ClientSession, web
from botbuilder.core import Bot, InvokeResponse, TurnContext
from botbuilder.core.serializer_helper import serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    UserTokenClient,
)
from botframework.connector.skills import BotFrameworkClient
from msrest.exceptions import DeserializationError
from msrest.serialization import Model

from bots.teams.activity_shape import check_activity
from bots.teams.connector import LeanConnectorClient
from bots.teams.dedup import ActivityClaims, activity_key
from bots.teams.from_wire import from_wire
from bots.teams.turn import ShallowCopyTurnContext
from core.inbound import InputError, loads
from core.loopback import is_loopback_url

log = logging.getLogger(__name__)

MESSAGES_PATH = "/api/messages"
MAX_BODY_BYTES = 256 * 1024
# Bodies up to this size are parsed before their token is checked, which is then checked once (see
# TeamsEndpoint._read_authenticated): parsing one costs less than a token check (~0.5 ms, PyJWT re-validates
# the base64 of the token character by character, five times per check).
PARSE_FIRST_BYTES = 16 * 1024


class RequestRejected(Exception):
    """The request is refused before the bot runs; carries the HTTP status and a reason for the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


MAX_CACHED_CLIENTS = 64  # service URLs are few (one per Teams region); the bound only stops a leak


def create_adapter(authentication: BotFrameworkAuthentication) -> CloudAdapter:
    """A CloudAdapter on `authentication` with reused outbound clients; turn errors propagate to the endpoint."""
    reused = authentication if isinstance(authentication, ReusedClients) else ReusedClients(authentication)
    return KebiaoAdapter(reused)


class KebiaoAdapter(CloudAdapter):  # type: ignore[misc]
    """CloudAdapter whose turns run in a ShallowCopyTurnContext (outgoing cards are not deep-copied)."""

    def _create_turn_context(
        self,
        activity: Activity,
        claims_identity: ClaimsIdentity,
        oauth_scope: str,
        connector_client: ConnectorClient,
        user_token_client: UserTokenClient,
        logic: Callable[[TurnContext], Awaitable[Any]],
        connector_factory: ConnectorFactory,
    ) -> TurnContext:
        """CloudAdapterBase._create_turn_context (botbuilder 4.17) building Kebiao's turn context."""
        context = ShallowCopyTurnContext(self, activity)
        context.turn_state[self.BOT_IDENTITY_KEY] = claims_identity
        context.turn_state[self.BOT_CONNECTOR_CLIENT_KEY] = connector_client
        context.turn_state[self.USER_TOKEN_CLIENT_KEY] = user_token_client
        context.turn_state[self.BOT_CALLBACK_HANDLER_KEY] = logic
        context.turn_state[self.CONNECTOR_FACTORY_KEY] = connector_factory
        context.turn_state[self.BOT_OAUTH_SCOPE_KEY] = oauth_scope
        return context


async def close_adapter(adapter: CloudAdapter) -> None:
    """Close the outbound HTTP sessions the adapter's clients hold (at shutdown)."""
    authentication = adapter.bot_framework_authentication
    if isinstance(authentication, ReusedClients):
        await authentication.close()


def _app_id(claims_identity: ClaimsIdentity) -> str:
    """The bot app id a turn acts as (audience claim, else appid claim; empty when auth is off)."""
    value = claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
    if value is None:
        value = claims_identity.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
    return str(value or "")


class ReusedClients(BotFrameworkAuthentication):  # type: ignore[misc]
    """The SDK's authentication, unchanged, except that outbound clients are built once and reused."""

    def __init__(self, inner: BotFrameworkAuthentication, limit: int = MAX_CACHED_CLIENTS) -> None:
        self.inner = inner
        self.limit = limit
        self._connectors: OrderedDict[tuple[str, str, str], LeanConnectorClient] = OrderedDict()
        self._token_clients: dict[str, UserTokenClient] = {}
        self._session: ClientSession | None = None  # made on first use, inside the running loop

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        result = await self.inner.authenticate_request(activity, auth_header)
        if result.connector_factory is not None and result.claims_identity is not None:
            result.connector_factory = _ReusedConnectorFactory(
                self, _app_id(result.claims_identity), result.connector_factory
            )
        return result

    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        return await self.inner.authenticate_streaming_request(auth_header, channel_id_header)

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        inner = self.inner.create_connector_factory(claims_identity)
        return _ReusedConnectorFactory(self, _app_id(claims_identity), inner)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        app_id = _app_id(claims_identity)
        client = self._token_clients.get(app_id)
        if client is None:
            client = await self.inner.create_user_token_client(claims_identity)
            client = self._token_clients.setdefault(app_id, client)
        return client

    def create_bot_framework_client(self) -> BotFrameworkClient:
        return self.inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return str(self.inner.get_originating_audience())

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self.inner.authenticate_channel_request(auth_header)

    async def connector(self, key: tuple[str, str, str], factory: ConnectorFactory) -> LeanConnectorClient:
        """The client for (app id, service URL, audience); built by `factory` the first time."""
        client = self._connectors.get(key)
        if client is not None:
            self._connectors.move_to_end(key)
            return client
        built = LeanConnectorClient(await factory.create(key[1], key[2] or None), self._http())
        client = self._connectors.setdefault(key, built)
        if client is not built:
            await _close(built)  # another turn built one meanwhile
        while len(self._connectors) > self.limit:
            _, oldest = self._connectors.popitem(last=False)
            await _close(oldest)
        return client

    def _http(self) -> ClientSession:
        """The pooled session the lean sends share (connections to each service URL are kept alive)."""
        if self._session is None or self._session.closed:
            self._session = ClientSession()
        return self._session

    async def close(self) -> None:
        """Close every cached client's HTTP session and the shared one."""
        connectors, self._connectors = list(self._connectors.values()), OrderedDict()
        for client in connectors:
            await _close(client)
        self._token_clients.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ReusedConnectorFactory(ConnectorFactory):  # type: ignore[misc]
    def __init__(self, owner: ReusedClients, app_id: str, inner: ConnectorFactory) -> None:
        self._owner = owner
        self._app_id = app_id
        self._inner = inner

    async def create(self, service_url: str, audience: str | None = None) -> LeanConnectorClient:
        return await self._owner.connector((self._app_id, service_url or "", audience or ""), self._inner)


async def _close(client: ConnectorClient | LeanConnectorClient) -> None:
    try:
        await client.__aexit__(None, None, None)
    except Exception as exc:  # closing a dead session must not break shutdown or a turn
        log.debug("closing a connector client failed: %s", exc)


class TeamsEndpoint:
    """The Bot Framework messaging endpoint: parse, authenticate, de-duplicate, run `bot`, answer."""

    def __init__(
        self,
        adapter: CloudAdapter,
        bot: Bot,
        claims: ActivityClaims | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        parse_first_bytes: int = PARSE_FIRST_BYTES,
    ) -> None:
        self.adapter = adapter
        self.bot = bot
        self.claims = claims
        self.max_body_bytes = max_body_bytes
        self.parse_first_bytes = parse_first_bytes

    def routes(self) -> list[web.RouteDef]:
        """The routes to add to the application (`app.router.add_routes(endpoint.routes())`)."""
        return [web.post(MESSAGES_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler for POST /api/messages."""
        try:
            activity, auth = await self._read_authenticated(request)
            _check_reply_address(activity, auth)
        except RequestRejected as rejected:
            return web.json_response({"error": rejected.reason}, status=rejected.status)
        key = activity_key(activity)
        claims = self.claims if key is not None else None
        if claims is not None and key is not None and not await claims.claim(key):
            log.info("duplicate activity %s (%s) acknowledged without running the bot", key, activity.type)
            return web.Response(status=200)
        try:
            invoke_response = await self.adapter.process_activity(auth, activity, self.bot.on_turn)
        except BaseException as exc:
            if claims is not None and key is not None:
                # Released, the platform's retry runs the turn again (a cancelled turn's lease also lapses).
                await claims.release(key)
            if not isinstance(exc, Exception):
                raise
            log.exception("bot turn failed for %s activity %s", activity.type, key)
            return web.json_response({"error": "the bot failed to process the activity"}, status=500)
        if claims is not None and key is not None:
            claims.finish(key)  # writes committed and replies sent: retries are duplicates now
        return _response(invoke_response)

    async def _read_authenticated(self, request: web.Request) -> tuple[Activity, AuthenticateRequestResult]:
        """The activity and its authentication; a refusal of the body never comes before the token's.

        The SDK checks a token against the activity (service URL claim, channel endorsement), so a body
        must be parsed before the full check. A small body is parsed first and its token checked once; a
        large or unsized one is read only after a first check of the token alone, so that no caller
        without a valid token makes the bot read and parse more than a check costs. When a small body is
        refused, the token is checked first too: a caller without a valid token always gets 401.
        """
        header = request.headers.get("Authorization")
        length = request.content_length
        if length is None or length > self.parse_first_bytes:
            await self._authenticate(Activity(), header)
            activity = await self._read_activity(request)
            return activity, await self._authenticate(activity, header)
        try:
            activity = await self._read_activity(request)
        except RequestRejected:
            await self._authenticate(Activity(), header)
            raise
        return activity, await self._authenticate(activity, header)

    async def _read_activity(self, request: web.Request) -> Activity:
        """Parse the body into an Activity, refusing bad content types, sizes and shapes."""
        content_type = request.headers.get("Content-Type", "")
        if request.content_type != "application/json":
            raise RequestRejected(400, f"Content-Type must be application/json, got {content_type!r}")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise RequestRejected(413, f"body of {request.content_length} bytes exceeds {self.max_body_bytes}")
        body = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            body.extend(chunk)
            if len(body) > self.max_body_bytes:
                raise RequestRejected(413, f"body exceeds {self.max_body_bytes} bytes")
        try:
            payload = loads(body)
            if not isinstance(payload, dict):
                raise RequestRejected(400, "body must be a JSON object (a Bot Framework activity)")
            check_activity(payload)
        except InputError as exc:
            raise RequestRejected(400, _clipped(str(exc))) from None
        try:
            activity = from_wire(Activity, payload)
        except DeserializationError as exc:
            raise RequestRejected(400, _clipped(f"body is not a valid activity: {exc}")) from None
        except Exception as exc:  # msrest raises other types for some wrong fields; still this body's fault
            raise RequestRejected(400, _clipped(f"body is not a valid activity: {type(exc).__name__}")) from None
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
            log.warning("rejected %s activity: %s: %s", activity.type or "an unread", type(exc).__name__, exc)
            raise RequestRejected(401, "unauthorized") from None
        except OSError as exc:
            log.error("cannot fetch Bot Framework signing keys: %s", type(exc).__name__)
            raise RequestRejected(503, "token signing keys unavailable, retry later") from None
        except Exception as exc:
            # The SDK signals endorsement failures with a bare Exception.
            log.warning("rejected %s activity: %s: %s", activity.type or "an unread", type(exc).__name__, exc)
            raise RequestRejected(401, "unauthorized") from None


def _clipped(reason: str, limit: int = 300) -> str:
    """A refusal reason short enough to echo (a field name from the body could be long)."""
    return reason if len(reason) <= limit else reason[:limit] + "…"


def _check_reply_address(activity: Activity, auth: AuthenticateRequestResult) -> None:
    """Unauthenticated (emulator-mode) turns may only reply to a loopback service URL: never an open relay."""
    identity = auth.claims_identity
    anonymous = identity is None or identity.authentication_type == AuthenticationConstants.ANONYMOUS_AUTH_TYPE
    if anonymous and not is_loopback_url(activity.service_url):
        host = _host_of(activity.service_url)
        log.warning(
            "refused unauthenticated %s activity whose serviceUrl host is %r (not loopback)", activity.type, host
        )
        raise RequestRejected(
            403,
            f"serviceUrl host {host!r} is not a loopback address: without MICROSOFT_APP_ID (emulator mode) the bot "
            "replies only to 127.0.0.1, ::1 or localhost; configure the bot's credentials to serve Teams",
        )


def _host_of(url: str | None) -> str:
    """The host of `url` for messages (clipped; empty when unreadable)."""
    try:
        return (urlsplit(url or "").hostname or "")[:100]
    except ValueError:
        return ""


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
