"""Tag counts kept as assignments change: holders per tag, shared holders per tag pair, active tags per customer.

The tag-health report used to count every assignment (and join every customer's tags with each other) on each
call. Triggers on tag_assignments now keep the counts of *active* rows in the same transaction as every write,
whoever writes (repositories, rules' set-based statements, COPY imports, console merges and cascades):

- tag_count_changes: an append-only log of (dimension, tag_key, other_key, n) deltas; other_key '' counts the
  tag's holders, otherwise shared holders of the pair tag_key < other_key. Appending never contends on a
  popular tag's row; `fold_tag_counts` folds the log into
- tag_counts: the folded totals (readers sum tag_counts and the log, so they are exact whether folded or not);
- customer_tag_counts: active tags per customer, updated in place (only that customer's writers touch it).

PostgreSQL uses statement-level triggers with transition tables (one pass per statement, COPY included);
SQLite, which has row triggers only, applies each row's change against the table as it stands, which sums to
the same totals. The upgrade counts the existing assignments once.

Churn scoring selects its candidates instead of walking every customer: indexes on customers.contract_end,
suggestions (dimension, created_at) and customer_activity.agent_removed_at serve that selection.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# ---------------------------------------------------------------- PostgreSQL: statement triggers

PG_INSERT = """
CREATE OR REPLACE FUNCTION kebiao_tag_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    SELECT dimension, tag_key, '', max(tag), count(*) FROM new_rows WHERE state = 'active'
    GROUP BY dimension, tag_key
    UNION ALL
    SELECT n.dimension, LEAST(n.tag_key, o.tag_key), GREATEST(n.tag_key, o.tag_key), '', count(*)
    FROM new_rows n
    JOIN tag_assignments o
      ON o.customer_id = n.customer_id AND o.dimension = n.dimension AND o.state = 'active' AND o.id <> n.id
    LEFT JOIN new_rows m ON m.id = o.id
    WHERE n.state = 'active' AND (m.id IS NULL OR n.tag_key < o.tag_key)
    GROUP BY 1, 2, 3;
    INSERT INTO customer_tag_counts AS c (customer_id, n)
    SELECT customer_id, count(*) FROM new_rows WHERE state = 'active' GROUP BY customer_id ORDER BY customer_id
    ON CONFLICT (customer_id) DO UPDATE SET n = c.n + excluded.n;
    RETURN NULL;
END $$
"""

PG_DELETE = """
CREATE OR REPLACE FUNCTION kebiao_tag_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH gone AS (
        SELECT id, customer_id, dimension, tag_key, tag FROM old_rows WHERE state = 'active'
    ), others AS (
        SELECT o.id, o.customer_id, o.dimension, o.tag_key FROM tag_assignments o
        WHERE o.state = 'active' AND (o.customer_id, o.dimension) IN (SELECT customer_id, dimension FROM gone)
        UNION ALL
        SELECT id, customer_id, dimension, tag_key FROM gone
    )
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    SELECT dimension, tag_key, '', max(tag), -count(*) FROM gone GROUP BY dimension, tag_key
    UNION ALL
    SELECT g.dimension, LEAST(g.tag_key, o.tag_key), GREATEST(g.tag_key, o.tag_key), '', -count(*)
    FROM gone g
    JOIN others o ON o.customer_id = g.customer_id AND o.dimension = g.dimension AND o.id <> g.id
    LEFT JOIN gone m ON m.id = o.id
    WHERE m.id IS NULL OR g.tag_key < o.tag_key
    GROUP BY 1, 2, 3;
    PERFORM kebiao_customer_tag_delta(array_agg(customer_id), array_agg(-k))
    FROM (SELECT customer_id, count(*) AS k FROM old_rows WHERE state = 'active' GROUP BY customer_id) d;
    RETURN NULL;
END $$
"""

PG_MOVED = """
    SELECT o.id, o.customer_id AS oc, o.dimension AS od, o.tag_key AS ok, o.tag AS otag, o.state = 'active' AS was,
           n.customer_id AS nc, n.dimension AS nd, n.tag_key AS nk, n.tag AS ntag, n.state = 'active' AS now_active
    FROM old_rows o JOIN new_rows n ON n.id = o.id
    WHERE (o.state = 'active' OR n.state = 'active')
      AND (o.state <> n.state OR o.customer_id <> n.customer_id OR o.dimension <> n.dimension
           OR o.tag_key <> n.tag_key)
"""

# Each moved row's customer gains or loses an active tag.
PG_CUSTOMERS_MOVED = f"""    PERFORM kebiao_customer_tag_delta(array_agg(customer_id), array_agg(k))
    FROM (
        SELECT customer_id, sum(k)::bigint AS k FROM (
            SELECT nc AS customer_id, 1 AS k FROM ({PG_MOVED}) m WHERE now_active
            UNION ALL
            SELECT oc, -1 FROM ({PG_MOVED}) m WHERE was
        ) e GROUP BY customer_id HAVING sum(k) <> 0
    ) d;"""

PG_UPDATE = f"""
CREATE OR REPLACE FUNCTION kebiao_tag_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS ({PG_MOVED}) THEN
        RETURN NULL;  -- no active row came, went or moved (an expiry date or an ended row changed)
    END IF;
    WITH moved AS ({PG_MOVED}), groups AS (
        SELECT oc AS customer_id, od AS dimension FROM moved WHERE was
        UNION
        SELECT nc, nd FROM moved WHERE now_active
    ), after AS (
        SELECT a.id, a.customer_id, a.dimension, a.tag_key FROM tag_assignments a
        JOIN groups g ON g.customer_id = a.customer_id AND g.dimension = a.dimension
        WHERE a.state = 'active'
    ), before AS (
        SELECT * FROM after WHERE id NOT IN (SELECT id FROM moved)
        UNION ALL
        SELECT id, oc, od, ok FROM moved WHERE was
    ), delta AS (
        SELECT x.dimension, x.tag_key AS a, y.tag_key AS b, count(*) AS n FROM after x
        JOIN after y ON y.customer_id = x.customer_id AND y.dimension = x.dimension AND x.tag_key < y.tag_key
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT x.dimension, x.tag_key, y.tag_key, -count(*) FROM before x
        JOIN before y ON y.customer_id = x.customer_id AND y.dimension = x.dimension AND x.tag_key < y.tag_key
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT nd, nk, '', count(*) FROM moved WHERE now_active GROUP BY 1, 2
        UNION ALL
        SELECT od, ok, '', -count(*) FROM moved WHERE was GROUP BY 1, 2
    ), spelling AS (
        SELECT dimension, tag_key, max(tag) AS tag FROM (
            SELECT nd AS dimension, nk AS tag_key, ntag AS tag FROM moved WHERE now_active
            UNION ALL
            SELECT od, ok, otag FROM moved WHERE was
        ) s GROUP BY 1, 2
    )
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    SELECT d.dimension, d.a, d.b, CASE WHEN d.b = '' THEN coalesce(max(s.tag), '') ELSE '' END, sum(d.n)
    FROM delta d LEFT JOIN spelling s ON d.b = '' AND s.dimension = d.dimension AND s.tag_key = d.a
    GROUP BY d.dimension, d.a, d.b HAVING sum(d.n) <> 0;
{PG_CUSTOMERS_MOVED}
    RETURN NULL;
END $$
"""

PG_CUSTOMER_DELTA = """
CREATE OR REPLACE FUNCTION kebiao_customer_tag_delta(ids bigint[], ks bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ids IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO customer_tag_counts AS c (customer_id, n)
    SELECT i, k FROM unnest(ids, ks) AS u(i, k) ORDER BY i
    ON CONFLICT (customer_id) DO UPDATE SET n = c.n + excluded.n;
    DELETE FROM customer_tag_counts WHERE customer_id = ANY(ids) AND n <= 0;
END $$
"""

PG_TRIGGERS = (
    "CREATE TRIGGER tag_counts_insert AFTER INSERT ON tag_assignments REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION kebiao_tag_counts_insert()",
    "CREATE TRIGGER tag_counts_delete AFTER DELETE ON tag_assignments REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION kebiao_tag_counts_delete()",
    "CREATE TRIGGER tag_counts_update AFTER UPDATE ON tag_assignments"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION kebiao_tag_counts_update()",
)

# ---------------------------------------------------------------- SQLite: row triggers

SQLITE_ADD = """
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    VALUES (NEW.dimension, NEW.tag_key, '', NEW.tag, 1);
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    SELECT NEW.dimension, min(NEW.tag_key, o.tag_key), max(NEW.tag_key, o.tag_key), '', 1 FROM tag_assignments o
    WHERE o.customer_id = NEW.customer_id AND o.dimension = NEW.dimension AND o.state = 'active' AND o.id <> NEW.id;
    INSERT INTO customer_tag_counts (customer_id, n) VALUES (NEW.customer_id, 1)
    ON CONFLICT (customer_id) DO UPDATE SET n = n + 1;
"""

SQLITE_REMOVE = """
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    VALUES (OLD.dimension, OLD.tag_key, '', OLD.tag, -1);
    INSERT INTO tag_count_changes (dimension, tag_key, other_key, tag, n)
    SELECT OLD.dimension, min(OLD.tag_key, o.tag_key), max(OLD.tag_key, o.tag_key), '', -1 FROM tag_assignments o
    WHERE o.customer_id = OLD.customer_id AND o.dimension = OLD.dimension AND o.state = 'active' AND o.id <> OLD.id;
    UPDATE customer_tag_counts SET n = n - 1 WHERE customer_id = OLD.customer_id;
    DELETE FROM customer_tag_counts WHERE customer_id = OLD.customer_id AND n <= 0;
"""

MOVED = (
    "OLD.state <> NEW.state OR OLD.customer_id <> NEW.customer_id OR OLD.dimension <> NEW.dimension"
    " OR OLD.tag_key <> NEW.tag_key"
)


def sqlite_triggers(add: str, remove: str) -> tuple[str, ...]:
    """The four row triggers on tag_assignments, with the bodies that count a row in (`add`) and out (`remove`)."""
    return (
        f"CREATE TRIGGER tag_counts_insert AFTER INSERT ON tag_assignments WHEN NEW.state = 'active'"
        f" BEGIN {add} END",
        f"CREATE TRIGGER tag_counts_delete AFTER DELETE ON tag_assignments WHEN OLD.state = 'active'"
        f" BEGIN {remove} END",
        # Removal first, then addition: each is one row's change against the table as it then stands.
        f"CREATE TRIGGER tag_counts_update_old AFTER UPDATE ON tag_assignments"
        f" WHEN OLD.state = 'active' AND ({MOVED}) BEGIN {remove} END",
        f"CREATE TRIGGER tag_counts_update_new AFTER UPDATE ON tag_assignments"
        f" WHEN NEW.state = 'active' AND ({MOVED}) BEGIN {add} END",
    )


SQLITE_TRIGGERS = sqlite_triggers(SQLITE_ADD, SQLITE_REMOVE)

# ---------------------------------------------------------------- the first count

BACKFILL = (
    "INSERT INTO tag_counts (dimension, tag_key, other_key, tag, n)"
    " SELECT dimension, tag_key, '', max(tag), count(*) FROM tag_assignments WHERE state = 'active'"
    " GROUP BY dimension, tag_key",
    "INSERT INTO tag_counts (dimension, tag_key, other_key, tag, n)"
    " SELECT x.dimension, x.tag_key, y.tag_key, '', count(*) FROM tag_assignments x"
    " JOIN tag_assignments y ON y.customer_id = x.customer_id AND y.dimension = x.dimension"
    " AND x.tag_key < y.tag_key AND y.state = 'active'"
    " WHERE x.state = 'active' GROUP BY x.dimension, x.tag_key, y.tag_key",
    "INSERT INTO customer_tag_counts (customer_id, n)"
    " SELECT customer_id, count(*) FROM tag_assignments WHERE state = 'active' GROUP BY customer_id",
)


def upgrade() -> None:
    op.create_table(
        "tag_counts",
        sa.Column("dimension", sa.String(100), nullable=False),
        sa.Column("tag_key", sa.String(200), nullable=False),
        sa.Column("other_key", sa.String(200), nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("dimension", "tag_key", "other_key", name=op.f("pk_tag_counts")),
    )
    op.create_table(
        "tag_count_changes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("dimension", sa.String(100), nullable=False),
        sa.Column("tag_key", sa.String(200), nullable=False),
        sa.Column("other_key", sa.String(200), nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_count_changes")),
    )
    op.create_table(
        "customer_tag_counts",
        sa.Column("customer_id", BigId, autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_tag_counts")),
    )
    op.create_index("ix_customer_tag_counts_n", "customer_tag_counts", ["n"])
    op.create_index("ix_customers_contract_end", "customers", ["contract_end"])
    op.create_index("ix_suggestions_dimension_created", "suggestions", ["dimension", "created_at"])
    op.create_index("ix_customer_activity_agent_removed", "customer_activity", ["agent_removed_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE tag_assignments IN SHARE MODE")  # no write slips between the count and the triggers
        for ddl in (PG_CUSTOMER_DELTA, PG_INSERT, PG_DELETE, PG_UPDATE, *PG_TRIGGERS):
            op.execute(ddl)
    else:
        for ddl in SQLITE_TRIGGERS:
            op.execute(ddl)
    for statement in BACKFILL:
        op.execute(statement)
    if _pg():
        op.execute("ANALYZE tag_counts, customer_tag_counts")  # the planner sees the counts' sizes at once


def downgrade() -> None:
    for name in ("tag_counts_insert", "tag_counts_delete", "tag_counts_update", "tag_counts_update_old",
                 "tag_counts_update_new"):  # fmt: skip
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON tag_assignments" if _pg() else ""))
    if _pg():
        for fn in ("kebiao_tag_counts_insert()", "kebiao_tag_counts_delete()", "kebiao_tag_counts_update()",
                   "kebiao_customer_tag_delta(bigint[], bigint[])"):  # fmt: skip
            op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.drop_index("ix_customer_activity_agent_removed", table_name="customer_activity")
    op.drop_index("ix_suggestions_dimension_created", table_name="suggestions")
    op.drop_index("ix_customers_contract_end", table_name="customers")
    op.drop_index("ix_customer_tag_counts_n", table_name="customer_tag_counts")
    op.drop_table("customer_tag_counts")
    op.drop_table("tag_count_changes")
    op.drop_table("tag_counts")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
