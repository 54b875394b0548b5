"""WeCom tag sync: wecom_sync_pending (customers whose tags still need a mark_tag push; survives restarts).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wecom_sync_pending",
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("generation", sa.Integer(), server_default="1", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_wecom_sync_pending_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_wecom_sync_pending")),
    )
    with op.batch_alter_table("wecom_sync_pending", schema=None) as batch_op:
        batch_op.create_index("ix_wecom_sync_pending_due", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wecom_sync_pending", schema=None) as batch_op:
        batch_op.drop_index("ix_wecom_sync_pending_due")
    op.drop_table("wecom_sync_pending")
