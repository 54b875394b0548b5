"""The Bot Connector client a turn replies through: the SDK's ConnectorClient with a lean path for sends.

The SDK's ConnectorClient sends through msrest: `Serializer.body` rebuilds and walks the whole activity, then
`requests` runs the POST on a thread-pool worker. Replying to a message cost ~5 ms of CPU, six times the POST
itself. `LeanConnectorClient` keeps the SDK client (its credentials, configuration and every other
operation, which `TeamsInfo` and friends use) and sends the three calls a bot makes all the time — reply,
send to a conversation, update — over one pooled aiohttp session, with:

- the same request: URL (base URL joined with the percent-encoded ids), headers (Accept, Content-Type,
  x-ms-conversation-id on replies, User-Agent, Authorization from the same credentials object) and body
  (`json.dumps` of what `Serializer.body` gives for JSON content; see bots.teams.wire);
- the same outcome: a ResourceResponse on 200/201/202, ErrorResponseException (status, headers and the
  connector's error body) otherwise, ClientRequestError when the service cannot be reached;
- the same retries and timeouts as msrest's requests configuration: connection failures up to 3 times, statuses
  408/5xx (but 501, 505) and read failures up to 3 times for idempotent methods only (an update, never a
  POST, which could post twice), backoff 0, 1.6, 3.2 s, a 503's Retry-After honoured; 100 s to connect and per read.

A call with options the lean path does not know (`raw`, operation config) goes to the SDK client unchanged.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

from aiohttp import ClientConnectorError, ClientError, ClientSession, ClientTimeout, ConnectionTimeoutError
from botbuilder.schema import Activity, ResourceResponse
from botframework.connector.aio import ConnectorClient
from botframework.connector.models import ErrorResponseException
from msrest.exceptions import ClientRequestError
from msrest.pipeline.universal import RawDeserializer
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bots.teams.from_wire import from_wire
from bots.teams.wire import to_wire_json

log = logging.getLogger(__name__)

ACCEPTED = frozenset({200, 201, 202})
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS", "TRACE"})
RETRY_AFTER_STATUSES = frozenset({413, 429, 503})


@dataclass(frozen=True)
class ConnectorRetry:
    """msrest's ClientRetryPolicy as urllib3 2 applies it (see the module docstring)."""

    attempts: int = 3  # retries after the first try
    backoff_factor: float = 0.8
    backoff_max: float = 120.0
    timeout: float = 100.0  # seconds to connect, and per read

    retry_after_max: float = 21600.0

    def retries_status(self, method: str, status: int, has_retry_after: bool = False) -> bool:
        """Whether a response with `status` to `method` is tried again."""
        if method not in IDEMPOTENT:
            return False
        return (
            status == 408
            or (status >= 500 and status not in (501, 505))
            or (has_retry_after and status in RETRY_AFTER_STATUSES)
        )

    def backoff(self, failures: int, retry_after: str | None = None) -> float:
        """Seconds to wait after `failures` consecutive failures; a Retry-After header wins when it asks for any."""
        asked = _seconds(retry_after) if retry_after is not None else None
        if asked:
            return min(asked, self.retry_after_max)
        if failures <= 1:
            return 0.0
        return float(min(self.backoff_max, self.backoff_factor * 2 ** (failures - 1)))


class _HeaderBag:
    """What AppCredentials.signed_session touches of a requests.Session: only its headers."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}


class ConnectorResponse:
    """A finished connector response in the shape msrest's error handling reads (status_code, headers, body)."""

    def __init__(self, status: int, reason: str, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status_code = status
        self.reason = reason
        self.headers = CIMultiDict(headers)
        self.body = body
        # The deserialised body where msrest's pipeline leaves it (Deserializer reads it from here).
        self.context = {RawDeserializer.CONTEXT_NAME: RawDeserializer.deserialize_from_http_generics(body, headers)}

    def text(self) -> str:
        return self.body.decode("utf-8-sig", errors="replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise ClientRequestError(f"Operation returned an invalid status code {self.reason!r}")


class LeanConnectorClient:
    """A ConnectorClient (everything but the lean sends delegates to the SDK client it wraps)."""

    def __init__(self, inner: ConnectorClient, session: ClientSession, retry: ConnectorRetry | None = None) -> None:
        self.inner = inner
        self.config = inner.config
        self.api_version = inner.api_version
        self.attachments = inner.attachments
        self.conversations = LeanConversations(inner, session, retry or ConnectorRetry())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def __aenter__(self) -> LeanConnectorClient:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_details: Any) -> None:
        await self.inner.__aexit__(*exc_details)


class LeanConversations:
    """ConversationsOperations with reply, send and update sent directly; the rest is the SDK's."""

    def __init__(self, inner: ConnectorClient, session: ClientSession, retry: ConnectorRetry) -> None:
        self._inner = inner
        self._sdk = inner.conversations
        self._session = session
        self._retry = retry
        self._base = inner.config.base_url.rstrip("/") + "/"
        self._timeout = ClientTimeout(total=None, sock_connect=retry.timeout, sock_read=retry.timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sdk, name)

    async def reply_to_activity(
        self,
        conversation_id: str,
        activity_id: str,
        activity: Activity,
        *,
        custom_headers: Mapping[str, str] | None = None,
        raw: bool = False,
        **operation_config: Any,
    ) -> Any:
        """POST /v3/conversations/{conversationId}/activities/{activityId}."""
        if raw or operation_config:
            return await self._sdk.reply_to_activity(
                conversation_id, activity_id, activity, custom_headers=custom_headers, raw=raw, **operation_config
            )
        path = f"v3/conversations/{_segment(conversation_id)}/activities/{_segment(activity_id)}"
        headers = {"x-ms-conversation-id": conversation_id, **(custom_headers or {})}
        return await self._call("POST", path, activity, headers)

    async def send_to_conversation(
        self,
        conversation_id: str,
        activity: Activity,
        *,
        custom_headers: Mapping[str, str] | None = None,
        raw: bool = False,
        **operation_config: Any,
    ) -> Any:
        """POST /v3/conversations/{conversationId}/activities."""
        if raw or operation_config:
            return await self._sdk.send_to_conversation(
                conversation_id, activity, custom_headers=custom_headers, raw=raw, **operation_config
            )
        path = f"v3/conversations/{_segment(conversation_id)}/activities"
        return await self._call("POST", path, activity, dict(custom_headers or {}))

    async def update_activity(
        self,
        conversation_id: str,
        activity_id: str,
        activity: Activity,
        *,
        custom_headers: Mapping[str, str] | None = None,
        raw: bool = False,
        **operation_config: Any,
    ) -> Any:
        """PUT /v3/conversations/{conversationId}/activities/{activityId}."""
        if raw or operation_config:
            return await self._sdk.update_activity(
                conversation_id, activity_id, activity, custom_headers=custom_headers, raw=raw, **operation_config
            )
        path = f"v3/conversations/{_segment(conversation_id)}/activities/{_segment(activity_id)}"
        return await self._call("PUT", path, activity, dict(custom_headers or {}))

    async def _call(self, method: str, path: str, activity: Activity, extra: dict[str, str]) -> ResourceResponse | None:
        """Send `activity` and read the ResourceResponse; errors as the SDK raises them."""
        if activity is None:
            raise ValueError("activity is required")  # msrest: ValidationError("required", "body")
        body = to_wire_json(self._inner._serialize, activity, "Activity")
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self._inner.config.user_agent,
            **extra,
        }
        response = await self._send(method, URL(request_url(self._base, path), encoded=True), headers, body)
        if response.status_code not in ACCEPTED:
            raise ErrorResponseException(self._inner._deserialize, response)
        return _resource_response(self._inner, response.context[RawDeserializer.CONTEXT_NAME])

    async def _send(self, method: str, url: URL, headers: dict[str, str], body: str) -> ConnectorResponse:
        """One request with msrest's retries; the token is taken afresh from the credentials for every try."""
        retry = self._retry
        data = body.encode("utf-8")
        failures = 0
        while True:
            signed = {**headers, **_authorization(self._inner.config.credentials)}
            try:
                async with self._session.request(
                    method, url, data=data, headers=signed, timeout=self._timeout
                ) as answer:
                    payload = await answer.read()
                    response = ConnectorResponse(answer.status, answer.reason or "", answer.headers, payload)
            except (ClientError, TimeoutError) as exc:
                # Not connected: nothing was sent, any method may go again; otherwise only an idempotent one.
                connected = not isinstance(exc, ClientConnectorError | ConnectionTimeoutError)
                if failures >= retry.attempts or (connected and method not in IDEMPOTENT):
                    raise ClientRequestError(f"Error occurred in request., {type(exc).__name__}: {exc}") from exc
                failures += 1
                await asyncio.sleep(retry.backoff(failures))
                continue
            after = response.headers.get("Retry-After")
            if not retry.retries_status(method, response.status_code, after is not None):
                return response
            if failures >= retry.attempts:
                raise ClientRequestError(f"too many {response.status_code} error responses from {url.host}")
            failures += 1
            log.info(
                "connector answered %s to a %s; try %d of %d",
                response.status_code,
                method,
                failures + 1,
                retry.attempts + 1,
            )
            await asyncio.sleep(retry.backoff(failures, after))


def request_url(base: str, path: str) -> str:
    """`urljoin(base, path)`, as msrest joins a path of percent-encoded segments with the base URL."""
    # That is base + path when neither has a query or an empty or dot segment (urljoin drops or resolves those):
    # the usual case, without urljoin's parsing on every reply.
    if _joins_plainly(base) and not any(segment in ("", ".", "..") for segment in path.split("/")):
        return base + path
    return urljoin(base, path)


@functools.lru_cache(maxsize=64)
def _joins_plainly(base: str) -> bool:
    return urljoin(base, "x") == base + "x"


def _resource_response(inner: ConnectorClient, data: Any) -> ResourceResponse | None:
    """The connector's answer as the SDK client reads it (`_deserialize("ResourceResponse", data)`)."""
    if type(data) is dict and inner._deserialize.dependencies.get("ResourceResponse") is ResourceResponse:
        return from_wire(ResourceResponse, data)
    return inner._deserialize("ResourceResponse", data)  # type: ignore[no-any-return]


def _seconds(retry_after: str) -> float | None:
    """Seconds from a Retry-After value (delta-seconds or an HTTP date); None when unreadable."""
    value = retry_after.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _segment(value: str) -> str:
    """A path parameter as msrest writes it: every reserved character percent-encoded."""
    return quote(str(value), safe="")


def _authorization(credentials: Any) -> dict[str, str]:
    """The Authorization header the credentials put on a session (none in emulator mode)."""
    bag = _HeaderBag()
    credentials.signed_session(bag)
    return bag.headers
