"""Learning from decisions: learning_messages (masked message texts), learning_examples (labelled
examples) and learning_models (trained models as numpy arrays plus JSON metadata, never pickled).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "learning_messages",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("message_key", sa.String(length=500), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("conversation_id", sa.String(length=500), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learning_messages")),
        sa.UniqueConstraint("message_key", name="uq_learning_messages_message_key"),
    )
    with op.batch_alter_table("learning_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_learning_messages_conversation", ["channel", "conversation_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_learning_messages_customer", ["customer_id"], unique=False)
        batch_op.create_index("ix_learning_messages_created", ["created_at"], unique=False)
    op.create_table(
        "learning_examples",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("dimension", sa.String(length=100), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.Column("positive", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("message_key", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'rejected', 'undone', 'manual', 'imported')",
            name=op.f("ck_learning_examples_outcome_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learning_examples")),
    )
    with op.batch_alter_table("learning_examples", schema=None) as batch_op:
        batch_op.create_index("ix_learning_examples_customer", ["customer_id"], unique=False)
        batch_op.create_index("ix_learning_examples_created", ["created_at"], unique=False)
    op.create_table(
        "learning_models",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("training_size", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("arrays", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learning_models")),
    )


def downgrade() -> None:
    op.drop_table("learning_models")
    with op.batch_alter_table("learning_examples", schema=None) as batch_op:
        batch_op.drop_index("ix_learning_examples_created")
        batch_op.drop_index("ix_learning_examples_customer")
    op.drop_table("learning_examples")
    with op.batch_alter_table("learning_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_learning_messages_created")
        batch_op.drop_index("ix_learning_messages_customer")
        batch_op.drop_index("ix_learning_messages_conversation")
    op.drop_table("learning_messages")
