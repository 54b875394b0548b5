"""Manager console: tag_archive (tags retired or merged away, with their definition, who and when).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    with op.batch_alter_table("tag_archive", schema=None) as batch_op:
        batch_op.drop_index("ix_tag_archive_at")
    op.drop_table("tag_archive")
