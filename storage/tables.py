"""Table definitions (SQLAlchemy Core); the Alembic migrations create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import DateTime, TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# SQLite only autoincrements INTEGER primary keys; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC on both databases (SQLite would drop the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


taxonomy_versions = Table(
    "taxonomy_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("document", JSON, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

# One row (id = 1) pointing at the version in force.
taxonomy_current = Table(
    "taxonomy_current",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, ForeignKey("taxonomy_versions.version"), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

dimensions = Table(
    "dimensions",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("exclusive", Boolean, nullable=False),
    Column("visibility", String(20), nullable=False),
    Column("position", Integer, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("dimension", String(100), ForeignKey("dimensions.key", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_key", String(200), nullable=False),
    Column("parent_key", String(200), nullable=True),
    Column("level", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("color", String(20), nullable=True),
    Column("description", Text, nullable=True),
    Column("ttl_days", Integer, nullable=True),
    Column("auto_apply", Boolean, nullable=False),
    UniqueConstraint("dimension", "name_key", name="uq_tags_dimension_name_key"),
    CheckConstraint("level BETWEEN 1 AND 3", name="level_range"),
)

customers = Table(
    "customers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(300), nullable=False),
    Column("name_key", String(300), nullable=False, index=True),
    Column("company", String(300), nullable=False, server_default=""),
    Column("owner", String(200), nullable=False, server_default=""),
    Column("region", String(100), nullable=False, server_default=""),
    Column("crm_id", String(200), nullable=True, unique=True),
    Column("wecom_external_userid", String(200), nullable=True, unique=True),
    Column("contract_end", Date, nullable=True),
    Column("attributes", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

ACTIVE = text("state = 'active'")

tag_assignments = Table(
    "tag_assignments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("dimension", String(100), nullable=False),
    Column("tag_key", String(200), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("source", String(20), nullable=False),
    Column("assigned_by", String(200), nullable=False),
    Column("assigned_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    CheckConstraint("state IN ('active', 'expired', 'removed')", name="state_known"),
    Index("ix_tag_assignments_customer", "customer_id", "state"),
    Index("ix_tag_assignments_tag", "tag_key", "state"),
    Index("ix_tag_assignments_expires", "state", "expires_at"),
    # At most one active row per customer + dimension + tag, on both SQLite and PostgreSQL.
    Index(
        "uq_tag_assignments_active",
        "customer_id",
        "dimension",
        "tag_key",
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    ),
)

suggestions = Table(
    "suggestions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("message_key", String(300), nullable=False),
    Column("dimension", String(100), nullable=False),
    Column("tag_key", String(200), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("score", Float, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("auto_applied", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    UniqueConstraint("message_key", "dimension", "tag_key", name="uq_suggestions_message_tag"),
    CheckConstraint("status IN ('pending', 'accepted', 'rejected', 'expired')", name="status_known"),
    Index("ix_suggestions_customer", "customer_id", "status"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("regions", JSON, nullable=False),
    Column("display_name", String(200), nullable=False, server_default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("role IN ('agent', 'manager', 'admin')", name="role_known"),
)

# Append-only: rows are inserted, never updated or deleted.
tag_events = Table(
    "tag_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("dimension", String(100), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("source", String(20), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("previous", String(200), nullable=True),
    Index("ix_tag_events_customer", "customer_id", "id"),
    Index("ix_tag_events_at", "at"),
)

conversation_links = Table(
    "conversation_links",
    metadata,
    Column("channel", String(20), primary_key=True),
    Column("conversation_id", String(500), primary_key=True),
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("linked_by", String(200), nullable=False),
    Column("linked_at", UtcDateTime, nullable=False),
)

conversation_references = Table(
    "conversation_references",
    metadata,
    Column("channel", String(20), primary_key=True),
    Column("user_key", String(500), primary_key=True),
    Column("reference", JSON, nullable=False),
    Column("tenant_id", String(200), nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

inbound_dedup = Table(
    "inbound_dedup",
    metadata,
    Column("channel", String(20), primary_key=True),
    Column("unique_key", String(500), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False, index=True),
    # Set while a turn holds the claim (renewed as it runs); NULL once it finished (migration 0006).
    Column("lease_until", UtcDateTime, nullable=True),
    # PostgreSQL: the advisory-lock id of the process holding the lease (storage.lease_holder; migration 0022).
    Column("holder", BigInteger, nullable=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(500), nullable=False, unique=True),
    Column("recipient", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("state IN ('pending', 'sending', 'sent', 'failed', 'unknown')", name="state_known"),
    Index("ix_outbox_due", "state", "next_attempt_at"),
)

alert_acknowledgements = Table(
    "alert_acknowledgements",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("alert_key", String(500), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("action", String(20), nullable=False),
    Column("until", UtcDateTime, nullable=True),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("alert_key", "user_id", name="uq_alert_acknowledgements_alert_user"),
    CheckConstraint("action IN ('ack', 'snooze')", name="action_known"),
)

# What churn scoring needs that no other table holds (migration 0002): one row per customer.
customer_activity = Table(
    "customer_activity",
    metadata,
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("last_message_at", UtcDateTime, nullable=True),
    Column("last_channel", String(20), nullable=True),
    Column("agent_removed_at", UtcDateTime, nullable=True),
    Column("agent_removed_by", String(200), nullable=True),
)

# Customers whose tags must still be mirrored to WeCom (migration 0003). Only "needs a push" is stored: the
# tags are recomputed from the current assignments when the push runs. `generation` grows with each change.
wecom_sync_pending = Table(
    "wecom_sync_pending",
    metadata,
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("generation", Integer, nullable=False, server_default="1"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_wecom_sync_pending_due", "next_attempt_at"),
)

# Persisted read positions over the append-only tag_events log (migration 0004), one row per consumer
# (`wecom_tags`: events up to last_event_id have been turned into wecom_sync_pending rows). gap_xmax and
# gap_since describe an event id the consumer is waiting on (PostgreSQL: possibly an uncommitted
# transaction): the next-transaction id when the gap was first seen, and when.
sync_cursors = Table(
    "sync_cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("last_event_id", BigInteger, nullable=False),
    Column("gap_xmax", BigInteger, nullable=True),
    Column("gap_since", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Durable inbox of inbound channel callbacks (migration 0005). A WeCom callback is stored here (decrypted
# XML) before it is acknowledged; the unique (channel, dedupe_key) row is also its de-duplication claim.
# state: pending (to run; next_attempt_at is the lease/retry time), done, failed (gave up; last_error says why).
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("channel", String(20), nullable=False),
    Column("dedupe_key", String(500), nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("state", String(10), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("channel", "dedupe_key", name="uq_inbound_messages_channel_key"),
    CheckConstraint("state IN ('pending', 'done', 'failed')", name="state_known"),
    Index("ix_inbound_messages_due", "state", "next_attempt_at"),
)

# Rules (migration 0007): customer events, append-only. `event_id` is the sender's idempotency key; `digest`
# (sha256 of the normalised content) tells a harmless re-send from a conflicting one with the same id.
customer_events = Table(
    "customer_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False, unique=True),
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("amount", Float, nullable=True),
    Column("properties", JSON, nullable=False),
    Column("source", String(20), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_customer_events_customer_kind_at", "customer_id", "kind", "at"),
    Index("ix_customer_events_kind_at", "kind", "at"),
)

# Manager console (migration 0009): tags that left the taxonomy by retire or merge, with their definition.
tag_archive = Table(
    "tag_archive",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("dimension", String(100), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("tag_key", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("merged_into", String(200), nullable=True),
    Column("definition", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("holders", Integer, nullable=False, server_default="0"),
    CheckConstraint("kind IN ('retired', 'merged')", name="kind_known"),
    Index("ix_tag_archive_at", "at"),
)

# Tag searches and report joins find a tag's holders (their expiry, and for agents' searches the dimension)
# from the index alone (migration 0018 added the dimension).
Index(
    "ix_tag_assignments_holders",
    tag_assignments.c.tag_key,
    tag_assignments.c.state,
    tag_assignments.c.customer_id,
    tag_assignments.c.expires_at,
    tag_assignments.c.dimension,
)
# PostgreSQL only (migration 0009, when the pg_trgm extension can be installed): trigram GIN indexes on
# customers.name_key and lower(company) serve the console's "name contains" search.
# What a person typed is compared with the name as stored (find_exact), on every look-up (migration 0015).
Index("ix_customers_name", customers.c.name)
# PostgreSQL only (migration 0015): GIN indexes on kebiao_grams(name_key) and kebiao_grams(lower(company)), the
# one- and two-character substrings, serve "contains" searches too short for trigrams (see GRAMS_UP_TO).

# Learning from agents' decisions (migration 0008). learning_messages keeps the masked text of chat messages
# that raised suggestions (and of linked-conversation messages) so a later decision can become an example;
# learning_examples holds one labelled (text, tag, positive) row per decision or imported line; learning_models
# holds trained models as numpy arrays (np.savez, never pickle) with JSON metadata and per-tag metrics.
learning_messages = Table(
    "learning_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_key", String(500), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("conversation_id", String(500), nullable=False),
    Column("customer_id", BigInteger, nullable=True),
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("message_key", name="uq_learning_messages_message_key"),
    Index("ix_learning_messages_conversation", "channel", "conversation_id", "created_at"),
    Index("ix_learning_messages_customer", "customer_id"),
    Index("ix_learning_messages_created", "created_at"),
)

learning_examples = Table(
    "learning_examples",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("text", Text, nullable=False),
    Column("dimension", String(100), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("positive", Boolean, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("customer_id", BigInteger, nullable=True),
    Column("message_key", String(500), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint(
        "outcome IN ('accepted', 'rejected', 'undone', 'manual', 'imported')", name="outcome_known"
    ),
    Index("ix_learning_examples_customer", "customer_id"),
    Index("ix_learning_examples_created", "created_at"),
)

# Imported history (migration 0020), stored compactly: one batch per `kebiao learn import` with the taxonomy's
# tags at import time (JSON text: ordered [dimension, tag] pairs) and one row per imported line with its
# positive tags (JSON text). Each line stands for one example per batch tag (positive iff listed), expanded on
# read by storage.learning; a line's created_at is its batch's.
learning_import_batches = Table(
    "learning_import_batches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("tag_count", Integer, nullable=False),
    Column("tags", Text, nullable=False),
)

learning_imported_lines = Table(
    "learning_imported_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("batch_id", BigId, ForeignKey("learning_import_batches.id", ondelete="CASCADE"), nullable=False),
    Column("text", Text, nullable=False),
    Column("positives", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_learning_imported_lines_batch", "batch_id"),
    Index("ix_learning_imported_lines_created", "created_at"),
)

learning_models = Table(
    "learning_models",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("training_size", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("meta", JSON, nullable=False),
    Column("arrays", LargeBinary, nullable=False),
)

# CRM sync (migration 0013). crm_sync_state: one row per connector with its read cursor (advanced in the same
# transaction as each page's writes) and the lease that keeps a second replica from syncing at the same time.
crm_sync_state = Table(
    "crm_sync_state",
    metadata,
    Column("connector", String(50), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("last_started_at", UtcDateTime, nullable=True),
    Column("last_ok_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", UtcDateTime, nullable=True),
    Column("records", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A customer's link to its CRM record: kind (account/contact), state (linked/deleted/merged) and each synced
# dimension's tags as of the last sync (`synced`, the base for telling which side changed).
crm_links = Table(
    "crm_links",
    metadata,
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("connector", String(50), nullable=False),
    Column("crm_id", String(200), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("state", String(10), nullable=False, server_default="linked"),
    Column("merged_into", String(200), nullable=True),
    Column("synced", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("connector", "crm_id", name="uq_crm_links_connector_crm_id"),
    CheckConstraint("state IN ('linked', 'deleted', 'merged')", name="state_known"),
)

# Customers whose Kebiao-mastered tags must still be written to the CRM; kept (with back-off) until written.
crm_pending_writes = Table(
    "crm_pending_writes",
    metadata,
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True),
    Column("connector", String(50), nullable=False),
    Column("generation", Integer, nullable=False, server_default="1"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_crm_pending_writes_due", "connector", "next_attempt_at"),
)

# Personal tags (migration 0016): an author's own notes on a customer, seen only by that author; apart from the
# taxonomy's assignments so reports, WeCom corp-tag pushes and CRM writes never see them.
personal_tags = Table(
    "personal_tags",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigId, ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
    Column("author", String(200), nullable=False),
    Column("name", String(100), nullable=False),
    Column("name_key", String(100), nullable=False),
    Column("source", String(10), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("customer_id", "author", "name_key", name="uq_personal_tags_customer_author_name"),
    CheckConstraint("source IN ('manual', 'wecom')", name="source_known"),
)

# Tag counts (migration 0017), kept by triggers on tag_assignments in the writer's transaction (see the migration):
# holders per tag (other_key '') and shared holders per pair (tag_key < other_key) of active rows, as folded totals
# plus an append-only log of changes; active tags per customer. Readers add the log to the totals. A change row
# with `others` (migration 0021) changes each pair of tag_key with a listed key by n (a text[] on PostgreSQL, a JSON
# array on SQLite); storage/tag_counts.py expands it.
tag_counts = Table(
    "tag_counts",
    metadata,
    Column("dimension", String(100), primary_key=True),
    Column("tag_key", String(200), primary_key=True),
    Column("other_key", String(200), primary_key=True),
    Column("tag", String(200), nullable=False),
    Column("n", BigInteger, nullable=False),
)
tag_count_changes = Table(
    "tag_count_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("dimension", String(100), nullable=False),
    Column("tag_key", String(200), nullable=False),
    Column("other_key", String(200), nullable=False),
    Column("tag", String(200), nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("others", Text().with_variant(ARRAY(Text()), "postgresql"), nullable=True),
)
customer_tag_counts = Table(
    "customer_tag_counts",
    metadata,
    Column("customer_id", BigId, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
    Index("ix_customer_tag_counts_n", "n"),
)
# Churn scoring's candidate selection (migration 0017).
Index("ix_customers_contract_end", customers.c.contract_end)
Index("ix_suggestions_dimension_created", suggestions.c.dimension, suggestions.c.created_at)
Index("ix_customer_activity_agent_removed", customer_activity.c.agent_removed_at)
