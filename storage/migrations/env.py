"""Alembic environment: runs on the connection that storage.database hands over (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    _run(connection)
else:
    # Only for `alembic revision --autogenerate` during development, with a sync URL in sqlalchemy.url.
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as sync_connection:
        _run(sync_connection)
