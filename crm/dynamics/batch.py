"""OData v4 multipart `$batch` for the Dataverse Web API: one change set of writes out, its answers back.

Follows learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api:
a `POST [service root]/$batch` with `Content-Type: multipart/mixed; boundary=batch_…` whose body holds a change
set (`multipart/mixed; boundary=changeset_…`) of `application/http` parts, each with `Content-Transfer-Encoding:
binary`, a `Content-ID` and one request (method, absolute URL, headers, JSON body); at most 1,000 requests. The
answer is `multipart/mixed; boundary=batchresponse_…`: a successful change set comes back as a
`changesetresponse_…` part with one `HTTP/1.1 2xx` answer per request, a failed one (the whole change set rolled
back) as a single `application/http` part holding the failing request's error.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_REQUESTS = 1000
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_STATUS = re.compile(r"HTTP/1\.1 (\d{3})")


@dataclass(frozen=True, slots=True)
class Operation:
    """One request inside a change set: method, absolute URL, JSON body (None for DELETE), extra headers."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer inside the batch response: HTTP status, JSON body text, and the request's Content-ID."""

    status: int
    body: str
    content_id: str | None


def encode(operations: Sequence[Operation]) -> tuple[str, bytes]:
    """The `$batch` request body with every operation in one change set; returns (Content-Type, body)."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    lines = [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for number, op in enumerate(operations, start=1):
        lines += [
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {number}",
            "",
            f"{op.method} {op.url} HTTP/1.1",
            *(f"{k}: {v}" for k, v in op.headers.items()),
        ]
        if op.body is not None:
            lines += ["Content-Type: application/json; type=entry", "", json.dumps(op.body, ensure_ascii=False)]
        else:
            lines += [""]
    lines += [f"--{changeset}--", f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", "\r\n".join(lines).encode("utf-8")


def decode(content_type: str, text: str) -> list[Answer]:
    """Every `application/http` answer of a batch response, change sets flattened, in order."""
    found = _BOUNDARY.search(content_type)
    if found is None:
        raise ValueError("the $batch answer is not multipart/mixed with a boundary")
    answers: list[Answer] = []
    for headers, body in _parts(text, found.group(1)):
        inner = _BOUNDARY.search(headers.get("content-type", ""))
        if headers.get("content-type", "").lower().startswith("multipart/mixed") and inner is not None:
            answers += [_answer(h, b) for h, b in _parts(body, inner.group(1))]
        else:
            answers.append(_answer(headers, body))
    return answers


def _parts(text: str, boundary: str) -> list[tuple[dict[str, str], str]]:
    """The MIME parts between `--boundary` lines: (lower-cased headers, body)."""
    out: list[tuple[dict[str, str], str]] = []
    normalised = text.replace("\r\n", "\n")
    chunks = normalised.split(f"--{boundary}")
    for chunk in chunks[1:]:
        if chunk.startswith("--"):
            break
        head, _, body = chunk.strip("\n").partition("\n\n")
        headers = {}
        for line in head.splitlines():
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        out.append((headers, body))
    return out


def _answer(headers: Mapping[str, str], body: str) -> Answer:
    """An `application/http` part: status line, its own headers, then the JSON body."""
    status = _STATUS.search(body)
    if status is None:
        raise ValueError("a $batch answer part has no HTTP status line")
    _head, _, payload = body[status.start() :].partition("\n\n")
    return Answer(int(status.group(1)), payload.strip(), headers.get("content-id"))
