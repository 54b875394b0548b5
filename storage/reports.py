"""Grouped SQL for the tag-health report (core.reports.tag_health.ReportSource): aggregates only, no per-row loading.

Five statements, each returning at most one row per tag, tag + outcome, tag pair or heavy customer:
- holders: active, unexpired assignments grouped by (dimension, tag_key);
- events: additions since the cut-off and the newest event, grouped by (dimension, tag) — the event log
  keeps the display spelling only, so core folds spellings by name key;
- suggestions: grouped by (dimension, tag_key, status, auto_applied);
- pairs: a self-join of active assignments on (customer, dimension) with tag_key_a < tag_key_b, grouped by
  the pair, keeping pairs with enough shared holders to reach the Jaccard bar. Its cost is the sum over
  customers of (tags held per dimension)², bounded by the per-customer hard cap and in practice a handful
  per customer; `ix_tag_assignments_customer` serves the join. No sampling is needed at that size;
- loads: customers holding at least the threshold of active tags, most first, limited.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.reports.tag_health import EventRow, HolderRow, LoadRow, PairRow, ReportRows, SuggestionRow
from core.types import AssignmentState, EventKind
from storage import tables as t


class SqlReportSource:
    """Runs the report's grouped queries in one read-only transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def tag_report_rows(
        self, now: datetime, recent_since: datetime, min_pair_shared: int, load_threshold: int, load_limit: int
    ) -> ReportRows:
        a = t.tag_assignments
        live = and_(a.c.state == AssignmentState.ACTIVE.value, or_(a.c.expires_at.is_(None), a.c.expires_at > now))
        holders_q = (
            select(a.c.dimension, a.c.tag_key, func.max(a.c.tag), func.count())
            .where(live)
            .group_by(a.c.dimension, a.c.tag_key)
        )
        e = t.tag_events
        added = e.c.kind.in_([EventKind.ADDED.value, EventKind.REPLACED.value]) & (e.c.at >= recent_since)
        events_q = select(e.c.dimension, e.c.tag, func.count().filter(added), func.max(e.c.at)).group_by(
            e.c.dimension, e.c.tag
        )
        s = t.suggestions
        suggestions_q = select(
            s.c.dimension,
            s.c.tag_key,
            func.max(s.c.tag),
            s.c.status,
            s.c.auto_applied,
            func.count(),
            func.max(s.c.created_at),
        ).group_by(s.c.dimension, s.c.tag_key, s.c.status, s.c.auto_applied)
        x, y = a.alias("x"), a.alias("y")
        live_x = and_(x.c.state == AssignmentState.ACTIVE.value, or_(x.c.expires_at.is_(None), x.c.expires_at > now))
        live_y = and_(y.c.state == AssignmentState.ACTIVE.value, or_(y.c.expires_at.is_(None), y.c.expires_at > now))
        pairs_q = (
            select(x.c.dimension, x.c.tag_key, y.c.tag_key, func.count())
            .select_from(
                x.join(
                    y,
                    and_(
                        x.c.customer_id == y.c.customer_id,
                        x.c.dimension == y.c.dimension,
                        x.c.tag_key < y.c.tag_key,
                    ),
                )
            )
            .where(live_x, live_y)
            .group_by(x.c.dimension, x.c.tag_key, y.c.tag_key)
            .having(func.count() >= min_pair_shared)
        )
        c = t.customers
        per_customer = (
            select(a.c.customer_id, func.count().label("n"))
            .where(live)
            .group_by(a.c.customer_id)
            .having(func.count() >= load_threshold)
            .subquery()
        )
        loads_q = (
            select(c.c.id, c.c.name, per_customer.c.n)
            .join(per_customer, per_customer.c.customer_id == c.c.id)
            .order_by(per_customer.c.n.desc(), c.c.id)
            .limit(load_limit)
        )
        async with self._engine.connect() as conn:
            holders = [HolderRow(r[0], r[1], r[2], int(r[3])) for r in await conn.execute(holders_q)]
            events = [EventRow(r[0], r[1], int(r[2] or 0), r[3]) for r in await conn.execute(events_q)]
            suggestions = [
                SuggestionRow(r[0], r[1], r[2], r[3], bool(r[4]), int(r[5]), r[6])
                for r in await conn.execute(suggestions_q)
            ]
            pairs = [PairRow(r[0], r[1], r[2], int(r[3])) for r in await conn.execute(pairs_q)]
            loads = [LoadRow(int(r[0]), r[1], int(r[2])) for r in await conn.execute(loads_q)]
        return ReportRows(tuple(holders), tuple(events), tuple(suggestions), tuple(pairs), tuple(loads))
