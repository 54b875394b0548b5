"""Persistence: the only package importing SQLAlchemy (tables, migrations, repositories, lifecycle)."""
