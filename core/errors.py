"""Errors services raise for the adapters to turn into clear messages."""

from __future__ import annotations


class NotFoundError(LookupError):
    """A customer, suggestion or taxonomy version that does not exist; the message names it."""


class NotAllowedError(PermissionError):
    """The actor's role does not allow this action."""
