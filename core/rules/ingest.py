"""Storing customer events: resolve customers, keep ids idempotent, then run the event rules in real time."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from core.progress import PhaseCounter, Progress
from core.rules.events import EventLine, LineError, ParsedEvents
from core.rules.ports import NewCustomerEvent
from core.rules.service import RuleContext, RulesReport, run_for_events
from tagging.pii import mask

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What an event import did; `errors` name each bad line (nothing of a bad line is stored)."""

    received: int = 0
    stored: int = 0
    repeated: int = 0
    errors: list[LineError] = field(default_factory=list)
    rules: RulesReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "repeated": self.repeated,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
            "rules": str(self.rules) if self.rules is not None else None,
        }

    def __str__(self) -> str:
        return (
            f"{self.received} events read: {self.stored} stored, {self.repeated} already stored (unchanged), "
            f"{len(self.errors)} refused" + (f"; rules: {self.rules}" if self.rules and self.rules.rules else "")
        )


async def ingest_events(
    ctx: RuleContext, parsed: ParsedEvents, now: datetime, source: str = "import", progress: Progress | None = None
) -> IngestReport:
    """Store the good lines of `parsed` (idempotent by id), report every bad one, then run event rules.

    The good lines are stored set-based in one transaction (all of them or, on a failure, none);
    `progress(phase, done, total)` hears of storing, then of the rules.
    """
    report = IngestReport(received=len(parsed.events) + len(parsed.errors), errors=list(parsed.errors))
    if not parsed.events:
        return report
    storing = PhaseCounter(progress, "storing", len(parsed.events))
    storing(0)
    async with ctx.store.unit_of_work() as uow:
        resolved = await uow.customer_events.resolve(sorted({e.customer for e in parsed.events}))
        stored = await uow.customer_events.digests(sorted({e.event_id for e in parsed.events}))
        fresh: dict[str, tuple[EventLine, NewCustomerEvent]] = {}
        for line in parsed.events:
            ids = resolved.get(line.customer, [])
            if not ids:
                report.errors.append(
                    LineError(
                        line.line,
                        f"unknown customer {mask(line.customer)!r}: give a crm_id, "
                        "WeCom external user id or the exact customer name",
                    )
                )
                continue
            if len(ids) > 1:
                report.errors.append(
                    LineError(
                        line.line, f"customer {mask(line.customer)!r} matches {len(ids)} customers; use the crm_id"
                    )
                )
                continue
            event = NewCustomerEvent(
                line.event_id, ids[0], line.kind, line.at, line.amount, line.properties, source, line.digest(ids[0])
            )
            earlier = fresh[line.event_id][1].digest if line.event_id in fresh else stored.get(line.event_id)
            if earlier is None:
                fresh[line.event_id] = (line, event)
            elif earlier == event.digest:
                report.repeated += 1
            else:
                where = (
                    f"line {fresh[line.event_id][0].line} of this file"
                    if line.event_id in fresh
                    else "an earlier import"
                )
                report.errors.append(
                    LineError(
                        line.line,
                        f"event id {mask(line.event_id)!r} was already used by "
                        f"{where} with different content; ids are idempotency keys: "
                        "give a new event a new id",
                    )
                )
        inserted = set(await uow.customer_events.insert_many([e for _, e in fresh.values()], now))
    storing(len(parsed.events))
    report.stored = len(inserted)
    report.repeated += len(fresh) - len(inserted)  # another import stored the same id meanwhile
    report.errors.sort(key=lambda e: e.line)
    kinds: dict[int, set[str]] = defaultdict(set)
    last: dict[int, str] = {}
    for _, event in sorted(fresh.values(), key=lambda pair: pair[0].line):
        if event.event_id in inserted:
            kinds[event.customer_id].add(event.kind)
            last[event.customer_id] = event.event_id
    if kinds:
        rules = PhaseCounter(progress, "rules", len(kinds))
        rules(0)
        report.rules = await run_for_events(ctx, kinds, last, now)
        rules(len(kinds))
    return report


async def record_event(
    ctx: RuleContext,
    event_id: str,
    customer_id: int,
    kind: str,
    at: datetime,
    properties: Mapping[str, Any] | None = None,
    amount: float | None = None,
) -> bool:
    """Record an event the product itself saw (a message, a WeCom contact change, a suggestion decision) and run
    the event rules for it; True when it was new. Failures are logged: they never break the caller's flow."""
    try:
        event = own_event(event_id, customer_id, kind, at, properties, amount)
        async with ctx.store.unit_of_work() as uow:
            new = bool(await uow.customer_events.insert_many([event], at))
        if new:
            await run_for_events(ctx, {customer_id: {kind}}, {customer_id: event.event_id}, at)
        return new
    except Exception:
        log.exception("could not record %s event for customer %d", kind, customer_id)
        return False


def own_event_id(event_id: str) -> str:
    """An event id of the product's own as stored (cut to the column)."""
    return event_id[:200]


def own_event(
    event_id: str,
    customer_id: int,
    kind: str,
    at: datetime,
    properties: Mapping[str, Any] | None = None,
    amount: float | None = None,
) -> NewCustomerEvent:
    """An event the product itself saw, as stored (source `kebiao`, id cut to the column, content digest)."""
    props = MappingProxyType(dict(properties or {}))
    line = EventLine(0, event_id, "", kind, at, amount, props)
    return NewCustomerEvent(
        own_event_id(event_id), customer_id, kind, at, amount, props, "kebiao", line.digest(customer_id)
    )
