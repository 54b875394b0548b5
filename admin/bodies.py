"""Reading admin requests: capped bodies, strict JSON objects, query parameters, uploaded import files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from admin.errors import AdminError
from core.inbound import MAX_INT64, InputError, check_text, loads, parse_id

_CHUNK = 64 * 1024
FILENAME_HEADER = "X-Filename"


async def read_body(request: web.Request, cap: int) -> bytes:
    """The raw body, refused with 413 when it is (or announces to be) larger than `cap` bytes."""
    if request.content_length is not None and request.content_length > cap:
        raise _too_large(request.content_length, cap)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > cap:
            raise _too_large(size, cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, cap: int) -> AdminError:
    return AdminError(413, f"request body is too large ({size:,} bytes or more; limit {cap:,} bytes)")


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AdminError(400, f"{what} is not UTF-8 text (bad byte at offset {exc.start})") from exc


async def json_object(request: web.Request, cap: int) -> dict[str, Any]:
    """The body as a JSON object; 415 for another content type, 400 for bad JSON or a non-object."""
    if request.content_type != "application/json":
        raise AdminError(415, f"send the body as application/json (got {request.content_type or 'no content type'})")
    try:
        value = loads(await read_body(request, cap), "the body")
    except InputError as exc:
        raise refused(exc) from None
    if not isinstance(value, dict):
        raise AdminError(400, f"the body must be a JSON object, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a number or boolean"


class Fields:
    """Strict reading of a JSON object: collects every problem, then `done()` raises them together."""

    def __init__(self, data: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.data = data
        self.problems: list[dict[str, str]] = []
        for key in data:
            if key not in known:
                self.fail(key, f"unknown field; expected one of {', '.join(known)}")

    def fail(self, field: str, reason: str) -> None:
        self.problems.append({"field": field, "reason": reason})

    def text(self, key: str, *, required: bool, limit: int = 200) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(key, "required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a non-empty string")
            return None
        if len(value) > limit:
            self.fail(key, f"is {len(value)} characters long (limit {limit})")
            return None
        return value.strip()

    def strings(self, key: str, *, limit: int = 100, item_limit: int = 200) -> list[str]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "must be an array of strings")
            return []
        if len(value) > limit:
            self.fail(key, f"has {len(value)} items (limit {limit})")
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{key}[{i}]", "must be a non-empty string")
            elif len(item) > item_limit:
                self.fail(f"{key}[{i}]", f"is {len(item)} characters long (limit {item_limit})")
            else:
                out.append(item.strip())
        return out

    def integer(self, key: str, *, minimum: int, maximum: int = MAX_INT64) -> int | None:
        value = self.data.get(key)
        if value is None:
            self.fail(key, "required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "must be an integer")
            return None
        if not minimum <= value <= maximum:
            self.fail(key, f"must be between {minimum} and {maximum}")
            return None
        return value

    def done(self, error: str = "invalid request body") -> None:
        if self.problems:
            raise AdminError(400, error, self.problems)


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within [minimum, maximum]; 400 naming the parameter otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        raise AdminError(400, f"query parameter {name}={_clip(raw)!r} is not an integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise AdminError(400, f"query parameter {name}={value} must be between {minimum} and {maximum}")
    return value


def query_flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter: 1/true/yes/on or 0/false/no/off (absent = false)."""
    raw = request.query.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise AdminError(400, f"query parameter {name}={raw!r} must be 1/true or 0/false")


def query_text(request: web.Request, name: str, limit: int, default: str = "") -> str:
    """A text query parameter, stripped; 400 naming it when it holds NUL, a lone surrogate or exceeds `limit`."""
    value = request.query.get(name, default).strip()
    try:
        return check_text(f"query parameter {name}", value, limit)
    except InputError as exc:
        raise refused(exc) from None


def path_id(request: web.Request, name: str = "id") -> int:
    """A positive customer id from the path, within the database's 64-bit range."""
    try:
        return parse_id("customer id", request.match_info[name])
    except InputError as exc:
        raise refused(exc) from None


def path_text(request: web.Request, name: str, what: str, limit: int) -> str:
    """A text path segment, stripped and checked like a query parameter."""
    value = request.match_info[name].strip()
    try:
        return check_text(what, value, limit)
    except InputError as exc:
        raise refused(exc) from None


def refused(exc: InputError) -> AdminError:
    """The 400 for a value refused at the boundary, naming the field."""
    problems = [{"field": exc.field, "reason": exc.reason}] if exc.field else []
    return AdminError(400, str(exc), problems)


def _clip(raw: str, limit: int = 40) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "…"


@dataclass(frozen=True, slots=True)
class Upload:
    filename: str
    data: bytes


async def upload(request: web.Request, cap: int) -> Upload:
    """The import file: a multipart part named `file` (with a filename), or the raw body + X-Filename."""
    if request.content_type == "multipart/form-data":
        return await _multipart_file(request, cap)
    filename = request.headers.get(FILENAME_HEADER, "").strip()
    if not filename:
        raise AdminError(
            400,
            "no file name: upload the file as multipart/form-data field 'file', or send the raw body with an "
            f"{FILENAME_HEADER} header (e.g. customers.csv or customers.xlsx)",
        )
    return Upload(filename, await read_body(request, cap))


async def _multipart_file(request: web.Request, cap: int) -> Upload:
    if request.content_length is not None and request.content_length > cap + _CHUNK:
        raise _too_large(request.content_length, cap)
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "file":
                continue
            if not part.filename:
                raise AdminError(400, "the multipart field 'file' has no filename; the extension decides CSV or XLSX")
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise _too_large(size, cap)
                chunks.append(chunk)
            return Upload(part.filename, b"".join(chunks))
    except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
        # aiohttp's reader raises these on a malformed body (bad framing, part headers, an unknown charset)
        raise AdminError(400, f"malformed multipart body: {_clip(str(exc).strip(), 200)}") from None
    raise AdminError(400, "the multipart body has no field named 'file'")
