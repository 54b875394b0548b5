"""CRM as master, chat as mirror: the CRM port, what syncs, and the sync service."""
