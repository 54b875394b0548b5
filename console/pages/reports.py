"""报表: usage over time, accept rate, tag combinations, retire/merge candidates with one-click actions,
customers near the cap, alert outbox state; every table as CSV.

The figures come from grouped queries (one row per tag, pair, state or day). They are kept per process for
the taxonomy version in force: older than REPORT_TTL seconds, they are still shown while a refresh runs in
the background, so only the first view after a start or a taxonomy change waits for the aggregates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from console.csvout import to_csv
from console.nav import NavItem
from console.version_cache import VersionCache
from console.web import ConsoleServices, Page, PageRoute
from core.console.ports import OutboxState, PairCount, UsagePoint
from core.records import TaxonomyVersion
from core.reports.tag_health import TagReport, tag_health_report
from tagging.normaliser import name_key

log = logging.getLogger(__name__)

USAGE_DAYS = 30
USAGE_SERIES = 8
RATE_TAGS = 15
MATRIX_TAGS = 10
REPORT_TTL = 60.0


@dataclass(frozen=True)
class ReportData:
    report: TagReport
    usage: tuple[UsagePoint, ...]
    pairs: tuple[PairCount, ...]
    matrix_tags: tuple[tuple[str, str, str], ...]  # (dimension, name key, display name)
    outbox: tuple[OutboxState, ...]
    since: date


CACHE = web.AppKey("console_report_cache", VersionCache[ReportData])


def setup(app: web.Application) -> None:
    VersionCache[ReportData]("console-report").install(app, CACHE)


async def report_data(page: Page) -> ReportData:
    """Figures for the current taxonomy version: fresh ones from the cache; stale ones (same version) while a
    refresh runs in the background, so only the first view after a start or a taxonomy change waits."""
    services = page.services
    async with services.store.unit_of_work(read_only=True) as uow:
        current = await uow.taxonomies.current()
    assert current is not None

    async def make() -> ReportData:
        try:
            return await compute_report(services, current)
        except Exception:
            log.exception("console: computing the reports failed")
            raise

    return await page.request.app[CACHE].get(current.version, make, REPORT_TTL)


async def compute_report(services: ConsoleServices, current: TaxonomyVersion) -> ReportData:
    """Every figure of the reports page, from grouped queries."""
    now = services.clock()
    report = await tag_health_report(services.reports, current.taxonomy, now, services.rules.hard_cap)
    since = (now - timedelta(days=USAGE_DAYS - 1)).date()
    usage = await services.store.queries.usage(now - timedelta(days=USAGE_DAYS))
    top = sorted((t for t in report.tags if t.holders), key=lambda t: -t.holders)[:MATRIX_TAGS]
    matrix_tags = tuple((t.dimension, name_key(t.tag), t.tag) for t in top)
    pairs = await services.store.queries.cooccurrence(now, [(d, k) for d, k, _ in matrix_tags])
    outbox = await services.store.queries.outbox_states()
    return ReportData(report, tuple(usage), tuple(pairs), matrix_tags, tuple(outbox), since)


def _usage_chart(data: ReportData) -> dict[str, Any]:
    days = [data.since + timedelta(days=i) for i in range(USAGE_DAYS)]
    names = {(t.dimension, name_key(t.tag)): t.tag for t in data.report.tags}
    totals: dict[tuple[str, str], dict[date, int]] = {}
    for p in data.usage:
        totals.setdefault((p.dimension, p.tag_key), {})[p.day] = p.added
    top = sorted(totals, key=lambda k: -sum(totals[k].values()))[:USAGE_SERIES]
    return {
        "days": [d.isoformat()[5:] for d in days],
        "series": [{"name": names.get(k, k[1]), "data": [totals[k].get(d, 0) for d in days]} for k in top],
    }


def _rate_chart(data: ReportData) -> dict[str, Any]:
    rated = [t for t in data.report.tags if t.accept_rate is not None]
    rated.sort(key=lambda t: -(t.accepted + t.rejected))
    rated = rated[:RATE_TAGS]
    return {"tags": [t.tag for t in rated], "rates": [round((t.accept_rate or 0) * 100, 1) for t in rated]}


def _matrix(data: ReportData) -> dict[str, Any]:
    index = {(d, k): i for i, (d, k, _) in enumerate(data.matrix_tags)}
    holders = {(t.dimension, name_key(t.tag)): t.holders for t in data.report.tags}
    cells = [[i, i, holders.get((d, k), 0)] for i, (d, k, _) in enumerate(data.matrix_tags)]
    for p in data.pairs:
        if p.a in index and p.b in index:
            cells.append([index[p.a], index[p.b], p.shared])
            cells.append([index[p.b], index[p.a], p.shared])
    return {
        "tags": [n for _, _, n in data.matrix_tags],
        "cells": cells,
        "max": max((c[2] for c in cells if c[0] != c[1]), default=1),
    }


async def get_reports(request: web.Request, page: Page) -> web.StreamResponse:
    data = await report_data(page)
    holders = {(t.dimension, t.tag): t.holders for t in data.report.tags}
    merges = []
    for m in data.report.merge:  # merge the smaller tag into the larger one
        a, b = holders.get((m.dimension, m.tag_a), 0), holders.get((m.dimension, m.tag_b), 0)
        merges.append((m, (m.tag_b, m.tag_a) if a > b else (m.tag_a, m.tag_b)))
    done = request.query.get("done", "")
    version = request.query.get("v", "")
    notice = page.t(done, n=version) if done in ("retired_done", "merged_done") and version.isdigit() else ""
    return page.render(
        "reports.html",
        active="reports",
        data=data,
        report=data.report,
        merges=merges,
        usage=_usage_chart(data),
        rate=_rate_chart(data),
        matrix=_matrix(data),
        tables=TABLES,
        notice=notice,
    )


Rows = tuple[Sequence[str], list[Sequence[object]]]


def _tags(d: ReportData) -> Rows:
    header = [
        "dimension",
        "tag",
        "in_taxonomy",
        "holders",
        "added_30d",
        "accepted",
        "rejected",
        "pending",
        "expired",
        "auto_applied",
        "accept_rate",
        "last_used",
    ]
    rows: list[Sequence[object]] = [
        [
            t.dimension,
            t.tag,
            t.in_taxonomy,
            t.holders,
            t.added_recently,
            t.accepted,
            t.rejected,
            t.pending,
            t.expired,
            t.auto_applied,
            "" if t.accept_rate is None else t.accept_rate,
            t.last_used.isoformat() if t.last_used else "",
        ]
        for t in d.report.tags
    ]
    return header, rows


def _retire(d: ReportData) -> Rows:
    return ["dimension", "tag", "reason", "last_used"], [
        [r.dimension, r.tag, r.reason, r.last_used.isoformat() if r.last_used else ""] for r in d.report.retire
    ]


def _merge(d: ReportData) -> Rows:
    return ["dimension", "tag_a", "tag_b", "reason", "jaccard", "shared_holders"], [
        [m.dimension, m.tag_a, m.tag_b, m.reason, "" if m.jaccard is None else m.jaccard, m.shared]
        for m in d.report.merge
    ]


def _near_cap(d: ReportData) -> Rows:
    return ["customer_id", "name", "active_tags", "hard_cap"], [
        [n.customer_id, n.name, n.count, n.cap] for n in d.report.near_cap
    ]


def _cooccurrence(d: ReportData) -> Rows:
    names = {(dim, k): n for dim, k, n in d.matrix_tags}
    return ["tag_a", "tag_b", "shared_holders"], [
        [names.get(p.a, p.a[1]), names.get(p.b, p.b[1]), p.shared] for p in d.pairs
    ]


def _usage(d: ReportData) -> Rows:
    return ["day", "dimension", "tag", "added"], [[p.day.isoformat(), p.dimension, p.tag_key, p.added] for p in d.usage]


def _outbox(d: ReportData) -> Rows:
    return ["state", "count", "oldest"], [
        [o.state, o.count, o.oldest.isoformat() if o.oldest else ""] for o in d.outbox
    ]


TABLES: dict[str, Callable[[ReportData], Rows]] = {
    "tags": _tags,
    "usage": _usage,
    "cooccurrence": _cooccurrence,
    "retire": _retire,
    "merge": _merge,
    "near_cap": _near_cap,
    "outbox": _outbox,
}


async def get_csv(request: web.Request, page: Page) -> web.StreamResponse:
    name = request.match_info["table"]
    table = TABLES.get(name)
    if table is None:
        raise web.HTTPNotFound(text=f"no table {name!r}; tables: {', '.join(TABLES)}")
    header, rows = table(await report_data(page))
    return web.Response(
        body=to_csv(header, rows),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="kebiao-{name}.csv"'},
    )


ROUTES = (
    PageRoute("GET", "/reports", get_reports),
    PageRoute("GET", "/reports/{table}.csv", get_csv),
)
NAV = (NavItem("reports", "/reports", "报表", "Reports", 30),)
