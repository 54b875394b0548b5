"""Application services, customer-side types, ports and the chat-command parser (no aiohttp, botbuilder, SQLAlchemy)."""
