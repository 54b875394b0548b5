"""Manager console: tag_archive (tags retired or merged away, with their definition, who and when), an index
of tag holders for searches, and on PostgreSQL trigram indexes for searching customers by part of a name.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

log = logging.getLogger(__name__)

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_archive",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("dimension", sa.String(length=100), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.Column("tag_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("merged_into", sa.String(length=200), nullable=True),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holders", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("kind IN ('retired', 'merged')", name=op.f("ck_tag_archive_kind_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_archive")),
    )
    with op.batch_alter_table("tag_archive", schema=None) as batch_op:
        batch_op.create_index("ix_tag_archive_at", ["at"], unique=False)
    op.create_index(
        "ix_tag_assignments_holders", "tag_assignments", ["tag_key", "state", "customer_id", "expires_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        _trigram_indexes()


def _trigram_indexes() -> None:
    """pg_trgm is a trusted extension (any database owner may add it); without it the search scans instead."""
    bind = op.get_bind()
    savepoint = bind.begin_nested()
    try:
        bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        bind.exec_driver_sql(
            "CREATE INDEX ix_customers_name_trgm ON customers USING gin (name_key public.gin_trgm_ops)"
        )
        bind.exec_driver_sql(
            "CREATE INDEX ix_customers_company_trgm ON customers USING gin (lower(company) public.gin_trgm_ops)"
        )
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning("pg_trgm unavailable (%s); customer name search will scan the table", type(exc).__name__)
    else:
        savepoint.commit()


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_customers_company_trgm")
    op.execute("DROP INDEX IF EXISTS ix_customers_name_trgm")
    op.drop_index("ix_tag_assignments_holders", table_name="tag_assignments")
    with op.batch_alter_table("tag_archive", schema=None) as batch_op:
        batch_op.drop_index("ix_tag_archive_at")
    op.drop_table("tag_archive")
