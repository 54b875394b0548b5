"""Searching a million customers: an index on the name as typed, and on PostgreSQL one- and two-character grams.

`find_exact` compares customers.name with what a person typed; without an index that is a full scan per
message-extension search and per `查看`. Trigram indexes (migration 0009) cannot serve a search shorter than
three characters, which is the common case for Chinese names (`华为`, `星辰`); kebiao_grams(text) returns the
distinct one- and two-character substrings of a text, and GIN indexes over it on name_key and lower(company)
turn such a search into one posting-list look-up. Both are expression indexes over existing columns, so writers
(imports, the CRM sync, the console) need no change.

Revision ID: 0015
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None

GRAMS = """
CREATE OR REPLACE FUNCTION kebiao_grams(value text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT coalesce(array_agg(DISTINCT substr(value, i, n)), '{}')
    FROM generate_series(1, 2) AS n, generate_series(1, length(value) - n + 1) AS i
$$
"""


def upgrade() -> None:
    op.create_index("ix_customers_name", "customers", ["name"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(GRAMS)
    op.execute("CREATE INDEX ix_customers_name_grams ON customers USING gin (kebiao_grams(name_key))")
    op.execute("CREATE INDEX ix_customers_company_grams ON customers USING gin (kebiao_grams(lower(company)))")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_customers_company_grams")
        op.execute("DROP INDEX IF EXISTS ix_customers_name_grams")
        op.execute("DROP FUNCTION IF EXISTS kebiao_grams(text)")
    op.drop_index("ix_customers_name", table_name="customers")
