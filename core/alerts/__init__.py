"""Alerts: pure selection, the jobs that run it, the outbox that delivers, and their ports."""
