"""SQL for the tag-health report (core.reports.tag_health.ReportSource): kept counts and grouped statements.

No statement reads every assignment:
- holders: active holders per tag from the counts triggers keep (storage/tag_counts.py, migration 0017), less
  the active rows already past their expiry (index on state, expires_at);
- events: additions since the cut-off and the newest event, grouped by (dimension, tag) — the event log
  keeps the display spelling only, so core folds spellings by name key;
- suggestions: grouped by (dimension, tag_key, status, auto_applied);
- pairs: shared holders per tag pair from the kept counts (less lapsed rows), keeping pairs with enough shared
  holders to reach the Jaccard bar. Exact: the counts follow every assignment change;
- loads: customers whose kept count of active tags reaches the threshold (index on the count), most first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.reports.tag_health import EventRow, HolderRow, LoadRow, PairRow, ReportRows, SuggestionRow
from core.types import EventKind
from storage import tables as t
from storage.tag_counts import heavy_customers, live_tags


class SqlReportSource:
    """Runs the report's queries in one read-only transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def tag_report_rows(
        self, now: datetime, recent_since: datetime, min_pair_shared: int, load_threshold: int, load_limit: int
    ) -> ReportRows:
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
        async with self._engine.connect() as conn:
            kept, shared = await live_tags(conn, now)
            holders = [HolderRow(d, k, tag, n) for (d, k), (tag, n) in sorted(kept.items())]
            events = [EventRow(r[0], r[1], int(r[2] or 0), r[3]) for r in await conn.execute(events_q)]
            suggestions = [
                SuggestionRow(r[0], r[1], r[2], r[3], bool(r[4]), int(r[5]), r[6])
                for r in await conn.execute(suggestions_q)
            ]
            pairs = [PairRow(d, x, y, n) for (d, x, y), n in sorted(shared.items()) if n >= min_pair_shared]
            loads = [LoadRow(*r) for r in await heavy_customers(conn, now, load_threshold, load_limit)]
        return ReportRows(tuple(holders), tuple(events), tuple(suggestions), tuple(pairs), tuple(loads))
