"""Outgoing webhooks: the outbox deliverer that POSTs signed JSON to the endpoints rules name."""
