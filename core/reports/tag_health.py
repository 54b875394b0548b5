"""Tag-health reports: per-tag usage, retire and merge candidates, customers near the tag cap.

Everything here is pure: `build_tag_report` takes aggregated rows (a few grouped SQL queries' worth, one
row per tag, status or tag pair, never one per assignment) plus the taxonomy and an explicit `now`.
`ReportSource` is the port storage implements to fetch those rows.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from tagging.formula import defuse
from tagging.normaliser import name_key
from tagging.policy import SOFT_CAP
from tagging.taxonomy import Taxonomy

RECENT_DAYS = 30  # "added in the last 30 days"
IDLE_DAYS = 90  # a tag without holders and unused this long is a retire candidate
MERGE_JACCARD = 0.8  # holder sets overlapping this much (Jaccard) suggest one tag would do
MERGE_MIN_HOLDERS = 5  # ... when each tag has at least this many holders (smaller sets overlap by chance)
NAME_MIN_CHARS = 3  # near-duplicate names only for names this long (两字 names differ by one char legitimately)
NAME_MAX_DISTANCE = 1
# One character more or less that turns a name into its opposite (意向客户 / 无意向客户) is no near-duplicate.
NEGATING_CHARS = frozenset("不无非未没否反")
NEAR_CAP_LIMIT = 100  # customers listed near the cap, most tags first


# ---------------------------------------------------------------- input rows (what storage aggregates)


@dataclass(frozen=True, slots=True)
class HolderRow:
    """Active, unexpired holders of one tag; `tag` is a display spelling seen in the data."""

    dimension: str
    tag_key: str
    tag: str
    holders: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """Events about one tag spelling: additions since the cut-off and the newest event of any kind."""

    dimension: str
    tag: str
    added_recently: int
    last_at: datetime | None


@dataclass(frozen=True, slots=True)
class SuggestionRow:
    """Suggestions of one tag with one outcome (`auto_applied` ones counted apart from human decisions)."""

    dimension: str
    tag_key: str
    tag: str
    status: str
    auto_applied: bool
    count: int
    last_at: datetime | None


@dataclass(frozen=True, slots=True)
class PairRow:
    """Customers actively holding both tags (same dimension, `tag_a_key` < `tag_b_key`)."""

    dimension: str
    tag_a_key: str
    tag_b_key: str
    shared: int


@dataclass(frozen=True, slots=True)
class LoadRow:
    """A customer holding `count` active tags (only those at or over the report's threshold)."""

    customer_id: int
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class ReportRows:
    holders: tuple[HolderRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    suggestions: tuple[SuggestionRow, ...] = ()
    pairs: tuple[PairRow, ...] = ()
    loads: tuple[LoadRow, ...] = ()


class ReportSource(Protocol):
    """Aggregated rows for the tag report; implemented by storage with grouped queries."""

    async def tag_report_rows(
        self, now: datetime, recent_since: datetime, min_pair_shared: int, load_threshold: int, load_limit: int
    ) -> ReportRows:
        """Rows for active holders (unexpired at `now`), events, suggestions, tag pairs and heavy customers."""
        ...


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class TagHealth:
    dimension: str
    tag: str
    in_taxonomy: bool
    holders: int
    added_recently: int
    accepted: int
    rejected: int
    pending: int
    expired: int
    auto_applied: int
    accept_rate: float | None  # accepted / (accepted + rejected); None before any human decision
    last_used: datetime | None


@dataclass(frozen=True, slots=True)
class RetireCandidate:
    dimension: str
    tag: str
    reason: str  # "never_used" or "idle"
    last_used: datetime | None


@dataclass(frozen=True, slots=True)
class MergeCandidate:
    dimension: str
    tag_a: str
    tag_b: str
    reason: str  # "overlap" or "similar_name"
    jaccard: float | None
    shared: int


@dataclass(frozen=True, slots=True)
class NearCap:
    customer_id: int
    name: str
    count: int
    cap: int


@dataclass(frozen=True, slots=True)
class TagReport:
    generated_at: datetime
    tags: tuple[TagHealth, ...]
    retire: tuple[RetireCandidate, ...]
    merge: tuple[MergeCandidate, ...]
    near_cap: tuple[NearCap, ...]


def near_cap_threshold(hard_cap: int) -> int:
    """Customers at the soft cap, or at 90% of a hard cap set below it, are 'near the cap'."""
    return max(1, min(SOFT_CAP, (hard_cap * 9) // 10))


def min_pair_shared() -> int:
    """Fewest shared holders a pair can have and still reach the Jaccard bar (lets SQL drop the rest)."""
    # J = s / (a + b - s) with a, b >= s and a, b >= MERGE_MIN_HOLDERS gives s >= J * MERGE_MIN_HOLDERS.
    return max(1, int(MERGE_JACCARD * MERGE_MIN_HOLDERS))


async def tag_health_report(source: ReportSource, taxonomy: Taxonomy, now: datetime, hard_cap: int) -> TagReport:
    """Fetch the aggregated rows and build the report."""
    threshold = near_cap_threshold(hard_cap)
    rows = await source.tag_report_rows(
        now, now - timedelta(days=RECENT_DAYS), min_pair_shared(), threshold, NEAR_CAP_LIMIT
    )
    return build_tag_report(rows, taxonomy, now, hard_cap)


def build_tag_report(rows: ReportRows, taxonomy: Taxonomy, now: datetime, hard_cap: int) -> TagReport:
    """The whole report from aggregated rows; tags ordered as in the taxonomy, retired ones after."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    stats = _collect(rows, taxonomy)
    tags = tuple(_health(s) for s in stats.values())
    return TagReport(
        generated_at=now,
        tags=tags,
        retire=retire_candidates(tags, now, parent_tags(taxonomy)),
        merge=(*overlap_candidates(rows.pairs, stats), *name_candidates(taxonomy)),
        near_cap=tuple(
            NearCap(r.customer_id, r.name, r.count, hard_cap)
            for r in sorted(rows.loads, key=lambda r: (-r.count, r.customer_id))
        ),
    )


@dataclass(slots=True)
class _Stats:
    dimension: str
    tag: str
    in_taxonomy: bool
    holders: int = 0
    added_recently: int = 0
    last_used: datetime | None = None
    outcomes: dict[str, int] | None = None
    auto_applied: int = 0


def _collect(rows: ReportRows, taxonomy: Taxonomy) -> dict[tuple[str, str], _Stats]:
    """One _Stats per (dimension, name key): every taxonomy tag, plus held/used tags no longer in it."""
    stats: dict[tuple[str, str], _Stats] = {}
    for dimension in taxonomy.dimensions:
        for tag in dimension.iter_tags():
            stats[(dimension.key, name_key(tag.name))] = _Stats(dimension.key, tag.name, True)

    def entry(dimension: str, key: str, display: str) -> _Stats:
        found = stats.get((dimension, key))
        if found is None:
            found = stats[(dimension, key)] = _Stats(dimension, display, False)
        return found

    for h in rows.holders:
        entry(h.dimension, h.tag_key, h.tag).holders += h.holders
    for e in rows.events:
        s = entry(e.dimension, name_key(e.tag), e.tag)
        s.added_recently += e.added_recently
        s.last_used = _latest(s.last_used, e.last_at)
    for r in rows.suggestions:
        s = entry(r.dimension, r.tag_key, r.tag)
        s.last_used = _latest(s.last_used, r.last_at)
        if r.auto_applied:
            s.auto_applied += r.count
            continue
        s.outcomes = s.outcomes or {}
        s.outcomes[r.status] = s.outcomes.get(r.status, 0) + r.count
    return stats


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _health(s: _Stats) -> TagHealth:
    outcomes = s.outcomes or {}
    accepted, rejected = outcomes.get("accepted", 0), outcomes.get("rejected", 0)
    decided = accepted + rejected
    return TagHealth(
        dimension=s.dimension,
        tag=s.tag,
        in_taxonomy=s.in_taxonomy,
        holders=s.holders,
        added_recently=s.added_recently,
        accepted=accepted,
        rejected=rejected,
        pending=outcomes.get("pending", 0),
        expired=outcomes.get("expired", 0),
        auto_applied=s.auto_applied,
        accept_rate=round(accepted / decided, 4) if decided else None,
        last_used=s.last_used,
    )


def parent_tags(taxonomy: Taxonomy) -> frozenset[tuple[str, str]]:
    """(dimension, name key) of every tag with sub-tags: groupings such as 地区 and 行业, held through children."""
    return frozenset(
        (dimension.key, name_key(tag.name))
        for dimension in taxonomy.dimensions
        for tag in dimension.iter_tags()
        if tag.children
    )


def retire_candidates(
    tags: Iterable[TagHealth], now: datetime, parents: frozenset[tuple[str, str]] = frozenset()
) -> tuple[RetireCandidate, ...]:
    """Taxonomy tags nobody holds that were never used (no event, no suggestion) or not for IDLE_DAYS.

    Tags in `parents` (they have sub-tags) are never candidates: customers hold their children instead.
    """
    cutoff = now - timedelta(days=IDLE_DAYS)
    out: list[RetireCandidate] = []
    for t in tags:
        if not t.in_taxonomy or t.holders or (t.dimension, name_key(t.tag)) in parents:
            continue
        if t.last_used is None:
            out.append(RetireCandidate(t.dimension, t.tag, "never_used", None))
        elif t.last_used < cutoff:
            out.append(RetireCandidate(t.dimension, t.tag, "idle", t.last_used))
    return tuple(out)


def jaccard(a: int, b: int, shared: int) -> float:
    """|A ∩ B| / |A ∪ B| from the two set sizes and the intersection size."""
    union = a + b - shared
    return shared / union if union else 0.0


def overlap_candidates(pairs: Sequence[PairRow], stats: dict[tuple[str, str], _Stats]) -> tuple[MergeCandidate, ...]:
    """Same-dimension pairs whose holder sets overlap at least MERGE_JACCARD, each with enough holders."""
    out: list[MergeCandidate] = []
    for p in pairs:
        a, b = stats.get((p.dimension, p.tag_a_key)), stats.get((p.dimension, p.tag_b_key))
        if a is None or b is None or min(a.holders, b.holders) < MERGE_MIN_HOLDERS:
            continue
        score = jaccard(a.holders, b.holders, p.shared)
        if score >= MERGE_JACCARD:
            out.append(MergeCandidate(p.dimension, a.tag, b.tag, "overlap", round(score, 4), p.shared))
    out.sort(key=lambda m: (-(m.jaccard or 0.0), m.dimension, m.tag_a, m.tag_b))
    return tuple(out)


def name_candidates(taxonomy: Taxonomy) -> tuple[MergeCandidate, ...]:
    """Same-dimension tags whose normalised names (>= NAME_MIN_CHARS) are near-duplicates (`similar_names`)."""
    out: list[MergeCandidate] = []
    for dimension in taxonomy.dimensions:
        names = [(name_key(t.name), t.name) for t in dimension.iter_tags()]
        names = [(k, n) for k, n in names if len(k) >= NAME_MIN_CHARS]
        for i, (key_a, name_a) in enumerate(names):
            for key_b, name_b in names[i + 1 :]:
                if similar_names(key_a, key_b):
                    out.append(MergeCandidate(dimension.key, name_a, name_b, "similar_name", None, 0))
    return tuple(out)


def _ideograph(char: str) -> bool:
    return unicodedata.name(char, "").startswith("CJK UNIFIED IDEOGRAPH")


def similar_names(a: str, b: str) -> bool:
    """Two normalised names one edit apart that likely mean the same thing.

    One Chinese character swapped for another changes the meaning (大型企业 / 中型企业, 高价值 / 低价值), and
    so does an added negator (意向客户 / 无意向客户); a typo in Latin letters (vip客户 / vlp客户) or an extra
    particle (询价客户 / 询价的客户) does not.
    """
    if a == b or not within_edit_distance(a, b, NAME_MAX_DISTANCE):
        return False
    if len(a) == len(b):
        x, y = next((x, y) for x, y in zip(a, b, strict=True) if x != y)
        return not (_ideograph(x) and _ideograph(y))
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    extra = next((c for i, c in enumerate(longer) if i >= len(shorter) or c != shorter[i]), longer[-1])
    return extra not in NEGATING_CHARS


def within_edit_distance(a: str, b: str, limit: int) -> bool:
    """Levenshtein distance of `a` and `b` is at most `limit` (banded, stops early)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


# ---------------------------------------------------------------- plain renderings (JSON API, CLI)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def report_to_data(report: TagReport) -> dict[str, Any]:
    """The report as JSON-ready dicts and lists."""
    return {
        "generated_at": report.generated_at.isoformat(),
        "thresholds": {
            "recent_days": RECENT_DAYS,
            "idle_days": IDLE_DAYS,
            "merge_jaccard": MERGE_JACCARD,
            "merge_min_holders": MERGE_MIN_HOLDERS,
            "name_max_distance": NAME_MAX_DISTANCE,
        },
        "tags": [
            {
                "dimension": t.dimension,
                "tag": t.tag,
                "in_taxonomy": t.in_taxonomy,
                "holders": t.holders,
                "added_last_30_days": t.added_recently,
                "suggestions": {
                    "accepted": t.accepted,
                    "rejected": t.rejected,
                    "pending": t.pending,
                    "expired": t.expired,
                    "auto_applied": t.auto_applied,
                },
                "accept_rate": t.accept_rate,
                "last_used": _when(t.last_used),
            }
            for t in report.tags
        ],
        "retire_candidates": [
            {"dimension": r.dimension, "tag": r.tag, "reason": r.reason, "last_used": _when(r.last_used)}
            for r in report.retire
        ],
        "merge_candidates": [
            {
                "dimension": m.dimension,
                "tags": [m.tag_a, m.tag_b],
                "reason": m.reason,
                "jaccard": m.jaccard,
                "shared_holders": m.shared,
            }
            for m in report.merge
        ],
        "near_cap": [
            {"customer_id": n.customer_id, "name": n.name, "active_tags": n.count, "hard_cap": n.cap}
            for n in report.near_cap
        ],
    }


CSV_COLUMNS = (
    "dimension",
    "tag",
    "in_taxonomy",
    "holders",
    "added_last_30_days",
    "accepted",
    "rejected",
    "pending",
    "expired",
    "auto_applied",
    "accept_rate",
    "last_used",
)


def render_report_csv(report: TagReport) -> str:
    """The per-tag table as CSV for spreadsheets; text a spreadsheet would run as a formula gets a leading '."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for t in report.tags:
        rate = "" if t.accept_rate is None else f"{t.accept_rate:.4f}"
        writer.writerow(
            [
                defuse(t.dimension),
                defuse(t.tag),
                "yes" if t.in_taxonomy else "no",
                t.holders,
                t.added_recently,
                t.accepted,
                t.rejected,
                t.pending,
                t.expired,
                t.auto_applied,
                rate,
                _when(t.last_used) or "",
            ]
        )
    return out.getvalue()


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide and full-width characters (Chinese) take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    """`text` left-aligned in `width` terminal columns (by display width, not by characters)."""
    return text + " " * max(0, width - display_width(text))


def _local_day(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).date().isoformat()


def render_report_text(report: TagReport, tz: tzinfo) -> str:
    """A plain-text report for the CLI; columns aligned by display width, dates in `tz` (KEBIAO_TIMEZONE)."""
    zone = getattr(tz, "key", None) or report.generated_at.astimezone(tz).tzname() or ""
    lines = [f"tag health at {report.generated_at.astimezone(tz):%Y-%m-%d %H:%M:%S} {zone}".rstrip(), ""]
    dim_width = max([display_width("dimension"), *(display_width(t.dimension) for t in report.tags)])
    tag_width = max([display_width("tag"), *(display_width(t.tag) for t in report.tags)])
    head = "holders  +30d  acc  rej  pend  rate  last used"
    lines.append(f"{pad('dimension', dim_width)}  {pad('tag', tag_width)}  {head}")
    for t in report.tags:
        rate = f"{t.accept_rate:.0%}" if t.accept_rate is not None else "-"
        last = _local_day(t.last_used, tz) if t.last_used else "never"
        retired = " (not in taxonomy)" if not t.in_taxonomy else ""
        lines.append(
            f"{pad(t.dimension, dim_width)}  {pad(t.tag, tag_width)}  {t.holders:>7} {t.added_recently:>5} "
            f"{t.accepted:>4} {t.rejected:>4} {t.pending:>5} {rate:>5}  {last}{retired}"
        )
    lines.append("")
    lines.append(f"retire candidates ({len(report.retire)}):")
    for r in report.retire:
        last_used = _local_day(r.last_used, tz) if r.last_used else "never"
        why = "never used" if r.reason == "never_used" else f"no holders, last used {last_used}"
        lines.append(f"  {r.dimension}/{r.tag}: {why}")
    lines.append(f"merge candidates ({len(report.merge)}):")
    for m in report.merge:
        why = f"holders overlap {m.jaccard:.0%} ({m.shared} shared)" if m.reason == "overlap" else "similar names"
        lines.append(f"  {m.dimension}: {m.tag_a} + {m.tag_b}: {why}")
    lines.append(f"customers near the tag cap ({len(report.near_cap)}):")
    for n in report.near_cap:
        lines.append(f"  #{n.customer_id} {n.name}: {n.count} active tags (hard cap {n.cap})")
    return "\n".join(lines) + "\n"
