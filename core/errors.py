"""Errors services raise for the adapters to turn into clear messages."""

from __future__ import annotations


class NotFoundError(LookupError):
    """A customer, suggestion or taxonomy version that does not exist; the message names it."""


class NotAllowedError(PermissionError):
    """The actor's role does not allow this action."""


class DuplicateKeyError(ValueError):
    """A write hit a unique key another writer stored meanwhile; `column` names the key, `value` it when known."""

    def __init__(self, column: str, value: str | None) -> None:
        shown = f" {value!r}" if value is not None else ""
        super().__init__(f"a customer with {column}{shown} already exists")
        self.column = column
        self.value = value
