"""Customer event files (CSV or JSONL, one event per line): parse every line, report bad ones by line number."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any

from core.inbound import InputError, loads
from tagging.pii import mask

MAX_ID = 200
MAX_PROPERTIES = 4000  # characters of JSON
KIND = re.compile(r"[a-z][a-z0-9_.-]{0,99}")
CSV_REQUIRED = ("event_id", "customer", "kind", "at")
JSON_KEYS = ("id", "customer", "kind", "at", "amount", "properties")


@dataclass(frozen=True, slots=True)
class EventLine:
    """One well-formed event line; `customer` is still the identifier as written."""

    line: int
    event_id: str
    customer: str
    kind: str
    at: datetime
    amount: float | None
    properties: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def digest(self, customer_id: int) -> str:
        """Content fingerprint: the same id re-sent with this digest is a harmless repeat."""
        body = json.dumps(
            [customer_id, self.kind, self.at.timestamp(), self.amount, dict(self.properties)],
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedEvents:
    events: list[EventLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


def parse_events(text: str, fmt: str, tz: tzinfo) -> ParsedEvents:
    """Parse an event file: `fmt` is csv, jsonl or json (an array); times without an offset are in `tz`."""
    text = text.removeprefix("\ufeff")
    if fmt == "csv":
        return _parse_csv(text, tz)
    if fmt == "json":
        try:
            data = loads(text, "the events")  # bounded: depth, digits, NUL and lone surrogates refused
        except InputError as exc:
            return ParsedEvents(errors=[LineError(1, str(exc))])
        if not isinstance(data, list):
            return ParsedEvents(errors=[LineError(1, "expected a JSON array of events (or one JSON object per line)")])
        return _collect(((i + 1, item) for i, item in enumerate(data)), tz, "item")
    return _parse_jsonl(text, tz)


def guess_format(text: str) -> str:
    """json for a JSON array, jsonl for lines starting with '{', csv otherwise."""
    head = text.lstrip("\ufeff \t\r\n")[:1]
    return "json" if head == "[" else "jsonl" if head == "{" else "csv"


def _parse_jsonl(text: str, tz: tzinfo) -> ParsedEvents:
    out = ParsedEvents()
    items: list[tuple[int, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            items.append((number, loads(raw, "the line")))
        except InputError as exc:
            out.errors.append(LineError(number, str(exc)))
    parsed = _collect(items, tz, "line")
    out.events.extend(parsed.events)
    out.errors.extend(parsed.errors)
    out.errors.sort(key=lambda e: e.line)
    return out


def _collect(items: Iterable[tuple[int, Any]], tz: tzinfo, what: str) -> ParsedEvents:
    out = ParsedEvents()
    for number, item in items:
        if not isinstance(item, dict):
            out.errors.append(LineError(number, f"each {what} must be a JSON object"))
            continue
        unknown = sorted(set(item) - set(JSON_KEYS))
        if unknown:
            out.errors.append(
                LineError(
                    number,
                    f"unknown field {mask(str(unknown[0]))!r}; fields are {', '.join(JSON_KEYS)} "
                    "(put extra data under 'properties')",
                )
            )
            continue
        props = item.get("properties") or {}
        if not isinstance(props, dict):
            out.errors.append(LineError(number, "'properties' must be a JSON object"))
            continue
        _one(
            out,
            number,
            item.get("id"),
            item.get("customer"),
            item.get("kind"),
            item.get("at"),
            item.get("amount"),
            props,
            tz,
        )
    return out


def _parse_csv(text: str, tz: tzinfo) -> ParsedEvents:
    out = ParsedEvents()
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return ParsedEvents(
            errors=[LineError(1, "the file is empty; it needs a header row event_id,customer,kind,at,amount")]
        )
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        reason = f"header lacks {', '.join(missing)}; the header is event_id,customer,kind,at,amount[,more columns]"
        return ParsedEvents(errors=[LineError(1, reason)])
    for row in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            out.errors.append(LineError(number, f"{len(row)} columns, the header has {len(header)}"))
            continue
        values = dict(zip(header, row, strict=True))
        props = {k: v for k, v in values.items() if k not in (*CSV_REQUIRED, "amount") and v.strip()}
        amount = values.get("amount", "").strip() or None
        _one(out, number, values["event_id"], values["customer"], values["kind"], values["at"], amount, props, tz)
    return out


def _one(
    out: ParsedEvents,
    number: int,
    event_id: Any,
    customer: Any,
    kind: Any,
    at: Any,
    amount: Any,
    props: Mapping[str, Any],
    tz: tzinfo,
) -> None:
    """Check one event's fields; append it or every problem of the line (joined) to `out`."""
    problems: list[str] = []
    if not isinstance(event_id, str | int) or isinstance(event_id, bool) or not str(event_id).strip():
        problems.append("'id' (event_id) is required: the sender's unique id for the event")
    elif len(str(event_id).strip()) > MAX_ID:
        problems.append(f"event id is longer than {MAX_ID} characters")
    if not isinstance(customer, str | int) or isinstance(customer, bool) or not str(customer).strip():
        problems.append("'customer' is required (a crm_id, WeCom external user id or exact customer name)")
    if not isinstance(kind, str) or not KIND.fullmatch(kind.strip()):
        shown = repr(mask(kind)) if isinstance(kind, str) else "missing"
        problems.append(
            f"kind {shown} is not an event kind: lower-case letters, digits, '_', '.' or '-' "
            "starting with a letter (e.g. purchase)"
        )
    when = _time(at, tz)
    if isinstance(when, str):
        problems.append(when)
    value = _amount(amount)
    if isinstance(value, str):
        problems.append(value)
    if props and len(json.dumps(dict(props), ensure_ascii=False, default=str)) > MAX_PROPERTIES:
        problems.append(f"properties are larger than {MAX_PROPERTIES} characters")
    if problems:
        out.errors.append(LineError(number, "; ".join(problems)))
        return
    assert isinstance(when, datetime) and not isinstance(value, str) and isinstance(kind, str)
    out.events.append(
        EventLine(
            number,
            str(event_id).strip(),
            str(customer).strip(),
            kind.strip(),
            when,
            value,
            MappingProxyType({str(k): v for k, v in props.items()}),
        )
    )


def _time(raw: Any, tz: tzinfo) -> datetime | str:
    if not isinstance(raw, str) or not raw.strip():
        return "'at' is required: an ISO 8601 time such as 2026-11-20T10:00:00+08:00"
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return f"'at' {mask(raw)!r} is not an ISO 8601 time (e.g. 2026-11-20T10:00:00+08:00)"
    return when.replace(tzinfo=tz) if when.tzinfo is None else when


def _amount(raw: Any) -> float | str | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        return "'amount' must be a number"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return f"'amount' {mask(str(raw))!r} is not a number"
    if not math.isfinite(value):
        return "'amount' must be a finite number"
    return value
