"""Pair-count changes logged as one row per tag and count, listing the other tags, not one row per pair.

Migration 0017's triggers appended one tag_count_changes row for every pair a write touched. Adding a tag to a
customer who holds K tags in its dimension appended K rows (about 24 KB of WAL at K = 140, against 1.2 KB for the
assignment itself), so a busy deployment's database spent most of each write on the count log.

A change row may now carry `others`: the tag keys paired with `tag_key`, each pair changing by `n`. PostgreSQL's
statement triggers group a statement's pairs by (dimension, tag key, count) and store each group's other keys as
one text[]: a single added tag is one row whatever K is; a bulk import is at most one row per distinct pair, as
before. SQLite's row triggers store one JSON array per row. Readers and the fold expand the lists
(storage/tag_counts.py); rows written before this migration (others NULL) read as they always did.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _migration(filename: str) -> ModuleType:
    """An earlier migration's module (file names start with digits, so it cannot be imported by name)."""
    spec = importlib.util.spec_from_file_location(f"kebiao_migration_{filename[:4]}", Path(__file__).with_name(filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# 0017's triggers, restored by the downgrade; their moved-row query and trigger shapes are shared.
PREVIOUS = _migration("0017_tag_counts.py")
PG_MOVED: str = PREVIOUS.PG_MOVED

# ---------------------------------------------------------------- PostgreSQL: statement triggers

# `pairs (dimension, a, b, n)`: pair (a, b) changes by n; grouped by count, each group is one row listing its b's.
PG_LISTED = (
    "SELECT dimension, a, '', '', n, array_agg(b ORDER BY b)::text[] FROM pairs WHERE n <> 0 GROUP BY dimension, a, n"
)

PG_INSERT = f"""
CREATE OR REPLACE FUNCTION kebiao_tag_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH pairs AS (
        SELECT n.dimension, n.tag_key AS a, o.tag_key AS b, count(*) AS n
        FROM new_rows n
        JOIN tag_assignments o
          ON o.customer_id = n.customer_id AND o.dimension = n.dimension AND o.state = 'active' AND o.id <> n.id
        LEFT JOIN new_rows m ON m.id = o.id
        WHERE n.state = 'active' AND (m.id IS NULL OR n.tag_key < o.tag_key)  -- two new rows: counted once
        GROUP BY 1, 2, 3
    )
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n, others)
    SELECT dimension, tag_key, '', max(tag), count(*), NULL::text[] FROM new_rows WHERE state = 'active'
    GROUP BY dimension, tag_key
    UNION ALL
    {PG_LISTED};
    INSERT INTO customer_tag_counts AS c (customer_id, n)
    SELECT customer_id, count(*) FROM new_rows WHERE state = 'active' GROUP BY customer_id ORDER BY customer_id
    ON CONFLICT (customer_id) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$
"""

PG_DELETE = f"""
CREATE OR REPLACE FUNCTION kebiao_tag_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        SELECT id, customer_id, dimension, tag_key, tag FROM old_rows WHERE state = 'active'
    ), pairs AS (
        SELECT g.dimension, g.tag_key AS a, o.tag_key AS b, -count(*) AS n FROM gone g
        JOIN tag_assignments o ON o.customer_id = g.customer_id AND o.dimension = g.dimension AND o.state = 'active'
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT g.dimension, g.tag_key, m.tag_key, -count(*) FROM gone g
        JOIN gone m ON m.customer_id = g.customer_id AND m.dimension = g.dimension AND g.tag_key < m.tag_key
        GROUP BY 1, 2, 3
    )
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n, others)
    SELECT dimension, tag_key, '', max(tag), -count(*), NULL::text[] FROM gone GROUP BY dimension, tag_key
    UNION ALL
    {PG_LISTED};
    PERFORM kebiao_customer_tag_delta(array_agg(customer_id), array_agg(-k))
    FROM (SELECT customer_id, count(*) AS k FROM old_rows WHERE state = 'active' GROUP BY customer_id) d;
    RETURN NULL;
END $$
"""

# The moved rows leave their old group (removals) and join their new one (additions). With U the group's active
# rows that did not move, pairs(after) - pairs(before) = additions x U + pairs among additions
#                                                       - removals x U - pairs among removals.
PG_UPDATE = f"""
CREATE OR REPLACE FUNCTION kebiao_tag_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS ({PG_MOVED}) THEN
        RETURN NULL;  -- no active row came, went or moved (an expiry date or an ended row changed)
    END IF;
    WITH moved AS ({PG_MOVED}), changed AS (
        SELECT nc AS customer_id, nd AS dimension, nk AS tag_key, 1 AS sign FROM moved WHERE now_active
        UNION ALL
        SELECT oc, od, ok, -1 FROM moved WHERE was
    ), unmoved AS (
        SELECT a.customer_id, a.dimension, a.tag_key FROM tag_assignments a
        WHERE a.state = 'active' AND a.id NOT IN (SELECT id FROM moved)
          AND (a.customer_id, a.dimension) IN (SELECT customer_id, dimension FROM changed)
    ), pairs AS (
        SELECT x.dimension, x.tag_key AS a, u.tag_key AS b, sum(x.sign) AS n FROM changed x
        JOIN unmoved u ON u.customer_id = x.customer_id AND u.dimension = x.dimension
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT x.dimension, x.tag_key, y.tag_key, sum(x.sign) FROM changed x
        JOIN changed y ON y.customer_id = x.customer_id AND y.dimension = x.dimension AND y.sign = x.sign
         AND x.tag_key < y.tag_key
        GROUP BY 1, 2, 3
    )
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n, others)
    SELECT nd, nk, '', max(ntag), count(*), NULL::text[] FROM moved WHERE now_active GROUP BY nd, nk
    UNION ALL
    SELECT od, ok, '', max(otag), -count(*), NULL::text[] FROM moved WHERE was GROUP BY od, ok
    UNION ALL
    {PG_LISTED};
{PREVIOUS.PG_CUSTOMERS_MOVED}
    RETURN NULL;
END $$
"""

# ---------------------------------------------------------------- SQLite: row triggers

# One row's pairs against the group as it stands: no row when the customer holds nothing else in the dimension.
SQLITE_LISTED = """
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n, others)
    SELECT {row}.dimension, {row}.tag_key, '', '', {n}, json_group_array(o.tag_key) FROM tag_assignments o
    WHERE o.customer_id = {row}.customer_id AND o.dimension = {row}.dimension AND o.state = 'active'
      AND o.id <> {row}.id
    GROUP BY o.customer_id;
"""

SQLITE_ADD = f"""
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    VALUES (NEW.dimension, NEW.tag_key, '', NEW.tag, 1);
    {SQLITE_LISTED.format(row="NEW", n=1)}
    INSERT INTO customer_tag_counts (customer_id, n) VALUES (NEW.customer_id, 1)
    ON CONFLICT (customer_id) DO UPDATE SET n = n + 1;
"""

SQLITE_REMOVE = f"""
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    VALUES (OLD.dimension, OLD.tag_key, '', OLD.tag, -1);
    {SQLITE_LISTED.format(row="OLD", n=-1)}
    UPDATE customer_tag_counts SET n = n - 1 WHERE customer_id = OLD.customer_id;
    DELETE FROM customer_tag_counts WHERE customer_id = OLD.customer_id AND n <= 0;
"""

SQLITE_TRIGGERS: tuple[str, ...] = PREVIOUS.sqlite_triggers(SQLITE_ADD, SQLITE_REMOVE)
SQLITE_TRIGGER_NAMES = ("tag_counts_insert", "tag_counts_delete", "tag_counts_update_old", "tag_counts_update_new")

# ---------------------------------------------------------------- downgrade: listed rows back to one row per pair

UNLIST = {
    "postgresql": "INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)"
    " SELECT c.dimension, LEAST(c.tag_key, o.k), GREATEST(c.tag_key, o.k), '', c.n"
    " FROM tag_count_changes c CROSS JOIN LATERAL unnest(c.others) AS o(k) WHERE c.others IS NOT NULL",
    "sqlite": "INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)"
    " SELECT c.dimension, min(c.tag_key, o.value), max(c.tag_key, o.value), '', c.n"
    " FROM tag_count_changes c, json_each(c.others) AS o WHERE c.others IS NOT NULL",
}


def upgrade() -> None:
    others = sa.Text().with_variant(postgresql.ARRAY(sa.Text()), "postgresql")
    op.add_column("tag_count_changes", sa.Column("others", others, nullable=True))
    if _pg():
        for ddl in (PG_INSERT, PG_DELETE, PG_UPDATE):  # CREATE OR REPLACE: the triggers call the new bodies
            op.execute(ddl)
    else:
        _replace_sqlite_triggers(SQLITE_TRIGGERS)


def downgrade() -> None:
    if _pg():
        op.execute("LOCK TABLE tag_assignments IN SHARE MODE")  # no listed row is written after the unlisting
        for ddl in (PREVIOUS.PG_INSERT, PREVIOUS.PG_DELETE, PREVIOUS.PG_UPDATE):
            op.execute(ddl)
    else:
        _replace_sqlite_triggers(PREVIOUS.SQLITE_TRIGGERS)
    op.execute(UNLIST[op.get_bind().dialect.name])
    op.execute("DELETE FROM tag_count_changes WHERE others IS NOT NULL")
    op.drop_column("tag_count_changes", "others")  # SQLite drops a column in place (3.35 and later)


def _replace_sqlite_triggers(triggers: tuple[str, ...]) -> None:
    for name in SQLITE_TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for ddl in triggers:
        op.execute(ddl)


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
