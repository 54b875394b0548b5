"""Imported learning history stored compactly: learning_import_batches (the taxonomy's tags at import time)
and learning_imported_lines (one row per imported line with its positive tags), expanded into examples on
read instead of one learning_examples row per line and tag. Rows imported earlier stay in learning_examples.

Revision ID: 0020
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "learning_import_batches",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tag_count", sa.Integer(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learning_import_batches")),
    )
    op.create_table(
        "learning_imported_lines",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", _ID, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("positives", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["learning_import_batches.id"],
            name=op.f("fk_learning_imported_lines_batch_id_learning_import_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learning_imported_lines")),
    )
    with op.batch_alter_table("learning_imported_lines", schema=None) as batch_op:
        batch_op.create_index("ix_learning_imported_lines_batch", ["batch_id"], unique=False)
        batch_op.create_index("ix_learning_imported_lines_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("learning_imported_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_learning_imported_lines_created")
        batch_op.drop_index("ix_learning_imported_lines_batch")
    op.drop_table("learning_imported_lines")
    op.drop_table("learning_import_batches")
