"""The one error type admin handlers raise; rendered as `{"error": ..., "problems": [...]}`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

SHOWN_PROBLEMS = 50  # a refusal lists this many problems and counts the rest


class AdminError(Exception):
    """A refused admin request: HTTP status, a one-line message and optional itemised problems."""

    def __init__(self, status: int, error: str, problems: Sequence[Mapping[str, Any] | str] = ()) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        shown: list[Mapping[str, Any] | str] = list(problems[:SHOWN_PROBLEMS])
        if len(problems) > SHOWN_PROBLEMS:
            shown.append(f"… and {len(problems) - SHOWN_PROBLEMS} more problems")
        self.problems = shown

    def response(self) -> web.Response:
        body: dict[str, Any] = {"error": self.error, "problems": self.problems}
        headers = {"WWW-Authenticate": 'Bearer realm="kebiao-admin"'} if self.status == 401 else None
        return web.json_response(body, status=self.status, headers=headers, dumps=dumps)


def dumps(value: Any) -> str:
    """JSON with Chinese kept readable; with a lone surrogate in an error text, ASCII JSON (which escapes it)."""
    text = json.dumps(value, ensure_ascii=False)
    return json.dumps(value) if _has_surrogate(text) else text


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)
