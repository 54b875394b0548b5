"""Taxonomy versions, the live matcher, and the database-free dry run."""
