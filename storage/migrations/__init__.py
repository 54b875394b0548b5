"""Alembic migrations, shipped inside the package so `kebiao db upgrade` works when installed."""
