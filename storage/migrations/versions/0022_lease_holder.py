"""Lease holders: inbound_dedup.holder names the process that holds a turn's lease (PostgreSQL).

Each process on PostgreSQL holds a session advisory lock on a random id for as long as it runs
(storage.lease_holder) and writes that id beside the leases it takes. When the process dies its connection
closes and PostgreSQL frees the lock at once: another replica takes the dead process's leases then, instead of
waiting up to ten seconds for them to lapse. NULL (SQLite, and every row before this revision) means the lease
can only lapse.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_dedup", schema=None) as batch_op:
        batch_op.add_column(sa.Column("holder", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbound_dedup", schema=None) as batch_op:
        batch_op.drop_column("holder")
