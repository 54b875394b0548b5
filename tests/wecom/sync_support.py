"""Shared pieces of the tag-sync tests: a settable clock and a sleep that returns at once."""

from __future__ import annotations

from datetime import datetime


class Clock:
    """A settable clock: retries become due by moving it, never by waiting."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def no_sleep(_: float) -> None:
    return None
