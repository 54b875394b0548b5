"""A tag's holders with their dimension: agents' tag searches answered from the index alone.

An agent's `find` (and message-extension search by tag) leaves out dimensions hidden from agents, so each holder
row's dimension is compared; ix_tag_assignments_holders (migration 0009) did not hold it, and every holder a
search read cost a visit to the table. The index is rebuilt with the dimension as its last column; it still
serves every query the old one did (same leading columns).

Building it on 10,000,000 assignments takes a few minutes and blocks writes to tag_assignments meanwhile, so run
`kebiao db upgrade` in a quiet hour.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

OLD = ["tag_key", "state", "customer_id", "expires_at"]


def upgrade() -> None:
    op.drop_index("ix_tag_assignments_holders", table_name="tag_assignments")
    op.create_index("ix_tag_assignments_holders", "tag_assignments", [*OLD, "dimension"])


def downgrade() -> None:
    op.drop_index("ix_tag_assignments_holders", table_name="tag_assignments")
    op.create_index("ix_tag_assignments_holders", "tag_assignments", OLD)
