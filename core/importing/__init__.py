"""Imports: customer files and chat-archive ingest."""
