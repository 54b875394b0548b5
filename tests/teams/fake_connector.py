"""A small fake Bot Connector service on 127.0.0.1 that records what the bot sends.

Failure modes are scripted: `fail(status, times, retry_after=...)` answers the next `times` requests with
that status (429 with Retry-After, 403 bot removed, 404 conversation gone, 5xx) before serving normally.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

ERROR_CODES = {
    403: ("ConversationBlockedByUser", "User blocked the conversation with the bot."),
    404: ("ConversationNotFound", "Conversation not found."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("ServiceError", "Internal server error."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "Service unavailable."),
}


@dataclass(frozen=True)
class Call:
    """One request the bot made."""

    method: str
    path: str
    conversation_id: str
    reply_to_id: str
    body: dict[str, Any]
    authorization: str
    status: int


@dataclass
class _Failure:
    status: int
    retry_after: str | None
    code: str
    message: str


class FakeConnector:
    """State and handlers of the fake service; `app()` builds its aiohttp application."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._failures: deque[_Failure] = deque()
        self._ids = itertools.count(1)
        self.members: dict[str, dict[str, Any]] = {}
        self.members_read: list[str] = []

    def fail(
        self, status: int, times: int = 1, retry_after: str | None = None, code: str = "", message: str = ""
    ) -> None:
        """Answer the next `times` requests with `status` (and Retry-After when given)."""
        default_code, default_message = ERROR_CODES.get(status, ("Error", "Error."))
        for _ in range(times):
            self._failures.append(
                _Failure(status, retry_after, code or default_code, message or default_message)
            )

    @property
    def delivered(self) -> list[Call]:
        """Requests that were served successfully."""
        return [call for call in self.calls if call.status < 400]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations", self._create_conversation)
        app.router.add_post("/v3/conversations/{conversation_id}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation_id}/activities/{activity_id}", self._send)
        app.router.add_put("/v3/conversations/{conversation_id}/activities/{activity_id}", self._update)
        app.router.add_get("/v3/conversations/{conversation_id}/members/{member_id}", self._member)
        return app

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body = await request.json()
        failure = self._failures.popleft() if self._failures else None
        status = failure.status if failure else 0
        self.calls.append(
            Call(
                method=request.method,
                path=request.path,
                conversation_id=request.match_info.get("conversation_id", ""),
                reply_to_id=request.match_info.get("activity_id", "") if request.method == "POST" else "",
                body=body,
                authorization=request.headers.get("Authorization", ""),
                status=status or (200 if request.method == "PUT" else 201),
            )
        )
        if failure is None:
            return body, None
        headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else None
        error = {"error": {"code": failure.code, "message": failure.message}}
        return body, web.json_response(error, status=failure.status, headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        return failure or web.json_response({"id": f"1:{next(self._ids)}"}, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        _, failure = await self._record(request)
        return failure or web.json_response({"id": request.match_info["activity_id"]}, status=200)

    async def _member(self, request: web.Request) -> web.Response:
        """TeamsInfo.get_member, which TeamsActivityHandler calls for every member added."""
        member_id = request.match_info["member_id"]
        self.members_read.append(member_id)
        known = self.members.get(member_id)
        if known is None:
            error = {"error": {"code": "MemberNotFoundInConversation", "message": "Member not found."}}
            return web.json_response(error, status=404)
        return web.json_response(known)

    async def _create_conversation(self, request: web.Request) -> web.Response:
        body, failure = await self._record(request)
        if failure:
            return failure
        member = (body.get("members") or [{}])[0].get("id", "")
        return web.json_response(
            {"id": f"a:personal-{member}", "activityId": "", "serviceUrl": ""}, status=201
        )
