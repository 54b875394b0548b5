"""Rules: customer_events, the append-only stream of customer events (purchases, clicks, tickets …) rules read.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "customer_events",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", big, nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_events_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_customer_events_event_id")),
    )
    op.create_index("ix_customer_events_customer_kind_at", "customer_events", ["customer_id", "kind", "at"])
    op.create_index("ix_customer_events_kind_at", "customer_events", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_customer_events_kind_at", table_name="customer_events")
    op.drop_index("ix_customer_events_customer_kind_at", table_name="customer_events")
    op.drop_table("customer_events")
