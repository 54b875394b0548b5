"""Figures worked out once per process and taxonomy version, refreshed in the background once stale.

Only the first view after a start or a taxonomy change waits; later views get the kept figures at once while a
refresh for the same version runs behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aiohttp import web

T = TypeVar("T")


class VersionCache(Generic[T]):
    """The last value, when and for which taxonomy version it was made, and the refresh running (if any)."""

    def __init__(self, name: str) -> None:
        self.name = name  # the refresh task's name
        self.entry: tuple[float, int, T] | None = None
        self.refreshing: asyncio.Task[T] | None = None

    async def get(self, version: int, make: Callable[[], Awaitable[T]], ttl: float) -> T:
        """The value for `version`: kept (refreshed behind once older than `ttl` seconds) or made now."""
        if self.entry is not None and self.entry[1] == version:
            at, _, data = self.entry
            if time.monotonic() - at >= ttl and self.refreshing is None:
                self.refreshing = asyncio.create_task(self._refresh(version, make), name=self.name)
            return data
        return await self._refresh(version, make)

    async def _refresh(self, version: int, make: Callable[[], Awaitable[T]]) -> T:
        try:
            data = await make()
            self.entry = (time.monotonic(), version, data)
            return data
        finally:
            if self.refreshing is asyncio.current_task():
                self.refreshing = None

    def install(self, app: web.Application, key: web.AppKey[VersionCache[T]]) -> None:
        """Keep the cache on `app` and cancel a running refresh when the app stops."""
        app[key] = self

        async def stop_refresh(_: web.Application) -> None:
            if self.refreshing is not None:
                self.refreshing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self.refreshing

        app.on_cleanup.append(stop_refresh)
