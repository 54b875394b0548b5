"""Leased inbound claims: inbound_dedup.lease_until (a Teams turn holds its activity until its reply is out).

A row with `lease_until` set is a turn in flight, renewed while it runs; a retry may retake it once the lease
lapsed (the process died). NULL means finished (and every claim stored before this revision counts as such).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_dedup", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_dedup", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
