"""Tag counts kept by triggers (migration 0017): read them, fold their change log, rebuild or check them.

The counts cover *active* assignments. An active row whose expiry has passed still counts until the expire job
ends it, so readers subtract those (`lapsed`, found through ix_tag_assignments_expires: a handful of rows)
to report holders unexpired at `now` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from storage import tables as t

TagKey = tuple[str, str]  # (dimension, tag_key)
PairKey = tuple[str, str, str]  # (dimension, tag_key, other_key) with tag_key < other_key


@dataclass(frozen=True, slots=True)
class Counts:
    """Holders per tag (with a display spelling), shared holders per pair, active tags per customer."""

    holders: dict[TagKey, tuple[str, int]]
    pairs: dict[PairKey, int]
    customers: dict[int, int]


def _live_now(now: datetime) -> tuple[ColumnElement[bool], ...]:
    a = t.tag_assignments.c
    return (a.state == "active", a.expires_at.is_not(None), a.expires_at <= now)


def _changes(dialect: str, source: str, where: str = "") -> str:
    """SQL for the change rows of `source` as (dimension, tag_key, other_key, tag, n), listed pairs expanded.

    A row with `others` (migration 0021) changes the pair of tag_key and each listed key by n; the pair is keyed
    with its lower key first, like the folded totals.
    """
    if dialect == "postgresql":
        listed = "CROSS JOIN LATERAL unnest(c.others) AS o(k)", "LEAST(c.tag_key, o.k)", "GREATEST(c.tag_key, o.k)"
    else:
        listed = "CROSS JOIN json_each(c.others) AS o", "min(c.tag_key, o.value)", "max(c.tag_key, o.value)"
    join, low, high = listed
    also = f" AND {where}" if where else ""
    return (
        f"SELECT c.dimension, c.tag_key, c.other_key, c.tag, c.n FROM {source} c WHERE c.others IS NULL{also}"
        f" UNION ALL SELECT c.dimension, {low}, {high}, '', c.n FROM {source} c {join}"
        f" WHERE c.others IS NOT NULL{also}"
    )


async def stored_tags(conn: AsyncConnection) -> tuple[dict[TagKey, tuple[str, int]], dict[PairKey, int]]:
    """Folded totals plus the change log: active holders per tag and shared holders per pair (zeros left out)."""
    columns = ("dimension", "tag_key", "other_key", "tag", "n")
    changes = text(_changes(conn.dialect.name, "tag_count_changes")).columns(
        *(t.tag_counts.c[name] for name in columns)
    )
    u = union_all(select(*(t.tag_counts.c[name] for name in columns)), select(changes.subquery())).subquery()
    rows = await conn.execute(
        select(u.c.dimension, u.c.tag_key, u.c.other_key, func.max(u.c.tag), func.sum(u.c.n))
        .group_by(u.c.dimension, u.c.tag_key, u.c.other_key)
        .having(func.sum(u.c.n) != 0)
    )
    holders: dict[TagKey, tuple[str, int]] = {}
    pairs: dict[PairKey, int] = {}
    for dimension, key, other, tag, n in rows:
        if other == "":
            holders[(dimension, key)] = (tag, int(n))
        else:
            pairs[(dimension, key, other)] = int(n)
    return holders, pairs


async def lapsed_tags(conn: AsyncConnection, now: datetime) -> tuple[dict[TagKey, int], dict[PairKey, int]]:
    """What the counts hold but `now` no longer does: active rows past their expiry, per tag and per pair."""
    a = t.tag_assignments
    holders = {
        (d, k): int(n)
        for d, k, n in await conn.execute(
            select(a.c.dimension, a.c.tag_key, func.count()).where(*_live_now(now)).group_by(a.c.dimension, a.c.tag_key)
        )
    }
    x, y = a.alias("x"), a.alias("y")
    y_lapsed = and_(y.c.expires_at.is_not(None), y.c.expires_at <= now)
    low = func.min(x.c.tag_key, y.c.tag_key) if conn.dialect.name == "sqlite" else func.least(x.c.tag_key, y.c.tag_key)
    high = (
        func.max(x.c.tag_key, y.c.tag_key) if conn.dialect.name == "sqlite" else func.greatest(x.c.tag_key, y.c.tag_key)
    )
    # A pair with both rows lapsed is met from each side: count it from its lower key only.
    rows = await conn.execute(
        select(x.c.dimension, low, high, func.count())
        .select_from(
            x.join(
                y,
                and_(
                    y.c.customer_id == x.c.customer_id,
                    y.c.dimension == x.c.dimension,
                    y.c.state == "active",
                    y.c.id != x.c.id,
                ),
            )
        )
        .where(
            x.c.state == "active",
            x.c.expires_at.is_not(None),
            x.c.expires_at <= now,
            or_(~y_lapsed, x.c.tag_key < y.c.tag_key),
        )
        .group_by(x.c.dimension, low, high)
    )
    return holders, {(d, lo, hi): int(n) for d, lo, hi, n in rows}


async def live_tags(conn: AsyncConnection, now: datetime) -> tuple[dict[TagKey, tuple[str, int]], dict[PairKey, int]]:
    """Holders per tag and shared holders per pair among assignments active and unexpired at `now`."""
    holders, pairs = await stored_tags(conn)
    gone_holders, gone_pairs = await lapsed_tags(conn, now)
    for key, n in gone_holders.items():
        tag, have = holders.get(key, ("", 0))
        holders[key] = (tag, have - n)
    for pair, n in gone_pairs.items():
        pairs[pair] = pairs.get(pair, 0) - n
    return {k: v for k, v in holders.items() if v[1] > 0}, {k: n for k, n in pairs.items() if n > 0}


async def heavy_customers(
    conn: AsyncConnection, now: datetime, threshold: int, limit: int
) -> list[tuple[int, str, int]]:
    """(id, name, live tags) of customers holding at least `threshold` tags unexpired at `now`, most first."""
    cc, c, a = t.customer_tag_counts, t.customers, t.tag_assignments
    lapsed = (
        select(a.c.customer_id, func.count().label("k")).where(*_live_now(now)).group_by(a.c.customer_id).subquery()
    )
    live = (cc.c.n - func.coalesce(lapsed.c.k, 0)).label("live")
    rows = await conn.execute(
        select(c.c.id, c.c.name, live)
        .select_from(cc.join(c, c.c.id == cc.c.customer_id).outerjoin(lapsed, lapsed.c.customer_id == cc.c.customer_id))
        .where(cc.c.n >= threshold, cc.c.n - func.coalesce(lapsed.c.k, 0) >= threshold)
        .order_by(live.desc(), c.c.id)
        .limit(limit)
    )
    return [(int(i), name, int(n)) for i, name, n in rows]


async def fold(conn: AsyncConnection) -> int:
    """Fold the change log into the totals (drop totals that reach zero); returns how many changes were folded."""
    c = t.tag_counts
    if conn.dialect.name == "postgresql":
        # DELETE … RETURNING takes exactly the changes it folds, whatever commits meanwhile.
        result = await conn.execute(
            text(
                "WITH moved AS (DELETE FROM tag_count_changes RETURNING dimension, tag_key, other_key, tag, n, others),"
                f" expanded AS ({_changes('postgresql', 'moved')}),"
                " folded AS (INSERT INTO tag_counts AS c (dimension, tag_key, other_key, tag, n)"
                " SELECT dimension, tag_key, other_key, max(tag), sum(n) FROM expanded"
                " GROUP BY dimension, tag_key, other_key ORDER BY dimension, tag_key, other_key"
                " ON CONFLICT (dimension, tag_key, other_key)"
                " DO UPDATE SET n = c.n + excluded.n, tag = GREATEST(c.tag, excluded.tag) RETURNING 1)"
                " SELECT (SELECT count(*) FROM moved)"
            )
        )
        folded = int(result.scalar_one())
    else:  # one writer at a time: everything up to the newest change is folded, then removed
        top = (await conn.execute(select(func.max(t.tag_count_changes.c.id)))).scalar_one()
        if top is None:
            return 0
        changes = _changes("sqlite", "tag_count_changes", "c.id <= :top")
        await conn.execute(
            text(
                "INSERT INTO tag_counts (dimension, tag_key, other_key, tag, n)"
                f" SELECT dimension, tag_key, other_key, max(tag), sum(n) FROM ({changes}) WHERE true"
                " GROUP BY dimension, tag_key, other_key"
                " ON CONFLICT (dimension, tag_key, other_key)"
                " DO UPDATE SET n = tag_counts.n + excluded.n, tag = max(tag_counts.tag, excluded.tag)"
            ),
            {"top": top},
        )
        deleted = await conn.execute(t.tag_count_changes.delete().where(t.tag_count_changes.c.id <= top))
        folded = int(deleted.rowcount or 0)
    await conn.execute(c.delete().where(c.c.n == 0))
    return folded


async def recount(conn: AsyncConnection) -> None:
    """Rebuild every count from the assignments (writers wait on PostgreSQL while it runs)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("LOCK TABLE tag_assignments IN SHARE MODE"))
    for table in (t.tag_counts, t.tag_count_changes, t.customer_tag_counts):
        await conn.execute(table.delete())
    full = await full_count(conn)
    if full.holders:
        await conn.execute(
            t.tag_counts.insert(),
            [
                {"dimension": d, "tag_key": k, "other_key": "", "tag": tag, "n": n}
                for (d, k), (tag, n) in full.holders.items()
            ],
        )
    if full.pairs:
        pairs = [
            {"dimension": d, "tag_key": k, "other_key": o, "tag": "", "n": n} for (d, k, o), n in full.pairs.items()
        ]
        await conn.execute(t.tag_counts.insert(), pairs)
    a = t.tag_assignments
    await conn.execute(
        t.customer_tag_counts.insert().from_select(
            ["customer_id", "n"],
            select(a.c.customer_id, func.count()).where(a.c.state == "active").group_by(a.c.customer_id),
        )
    )


async def full_count(conn: AsyncConnection) -> Counts:
    """Every count computed from the assignments themselves (what the triggers must agree with)."""
    a = t.tag_assignments
    holders = {
        (d, k): (tag, int(n))
        for d, k, tag, n in await conn.execute(
            select(a.c.dimension, a.c.tag_key, func.max(a.c.tag), func.count())
            .where(a.c.state == "active")
            .group_by(a.c.dimension, a.c.tag_key)
        )
    }
    x, y = a.alias("x"), a.alias("y")
    pairs = {
        (d, k, o): int(n)
        for d, k, o, n in await conn.execute(
            select(x.c.dimension, x.c.tag_key, y.c.tag_key, func.count())
            .select_from(
                x.join(
                    y,
                    and_(
                        y.c.customer_id == x.c.customer_id,
                        y.c.dimension == x.c.dimension,
                        x.c.tag_key < y.c.tag_key,
                        y.c.state == "active",
                    ),
                )
            )
            .where(x.c.state == "active")
            .group_by(x.c.dimension, x.c.tag_key, y.c.tag_key)
        )
    }
    customers = {
        int(cid): int(n)
        for cid, n in await conn.execute(
            select(a.c.customer_id, func.count()).where(a.c.state == "active").group_by(a.c.customer_id)
        )
    }
    return Counts(holders, pairs, customers)


async def kept_counts(conn: AsyncConnection) -> Counts:
    """Every count as the triggers keep it (totals plus the change log)."""
    holders, pairs = await stored_tags(conn)
    cc = t.customer_tag_counts.c
    customers = {int(cid): int(n) for cid, n in await conn.execute(select(cc.customer_id, cc.n).where(cc.n != 0))}
    return Counts(holders, pairs, customers)


async def differences(engine: AsyncEngine) -> list[str]:
    """Where the kept counts disagree with a full recount (empty when they agree); one read transaction."""
    async with engine.connect() as conn:
        kept, full = await kept_counts(conn), await full_count(conn)
    out: list[str] = []
    for key in sorted(set(kept.holders) | set(full.holders)):
        have, want = kept.holders.get(key, ("", 0))[1], full.holders.get(key, ("", 0))[1]
        if have != want:
            out.append(f"holders of {key[0]}/{key[1]}: kept {have}, recounted {want}")
    for pair in sorted(set(kept.pairs) | set(full.pairs)):
        have, want = kept.pairs.get(pair, 0), full.pairs.get(pair, 0)
        if have != want:
            out.append(f"shared holders of {pair[0]}/{pair[1]}+{pair[2]}: kept {have}, recounted {want}")
    for cid in sorted(set(kept.customers) | set(full.customers)):
        have, want = kept.customers.get(cid, 0), full.customers.get(cid, 0)
        if have != want:
            out.append(f"active tags of customer {cid}: kept {have}, recounted {want}")
    return out
