"""CRM sync state: crm_sync_state (cursor + lease per connector), crm_links, crm_pending_writes.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "crm_sync_state",
        sa.Column("connector", sa.String(50), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("records", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connector", name=op.f("pk_crm_sync_state")),
    )
    op.create_table(
        "crm_links",
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("connector", sa.String(50), nullable=False),
        sa.Column("crm_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("state", sa.String(10), nullable=False, server_default="linked"),
        sa.Column("merged_into", sa.String(200), nullable=True),
        sa.Column("synced", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_crm_links_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_crm_links")),
        sa.UniqueConstraint("connector", "crm_id", name="uq_crm_links_connector_crm_id"),
        sa.CheckConstraint("state IN ('linked', 'deleted', 'merged')", name=op.f("ck_crm_links_state_known")),
    )
    op.create_table(
        "crm_pending_writes",
        sa.Column("customer_id", BigId, nullable=False),
        sa.Column("connector", sa.String(50), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_crm_pending_writes_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_crm_pending_writes")),
    )
    op.create_index("ix_crm_pending_writes_due", "crm_pending_writes", ["connector", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_crm_pending_writes_due", table_name="crm_pending_writes")
    op.drop_table("crm_pending_writes")
    op.drop_table("crm_links")
    op.drop_table("crm_sync_state")
