"""Work that runs after WeCom has been acknowledged: tracked tasks, finished or cancelled on shutdown."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


DEFAULT_LIMIT = 8


class Background:
    """A set of tasks owned by the app: `spawn` after the reply, `close` on shutdown.

    At most `limit` of them run at once; the rest wait their turn in arrival order. That keeps the
    acknowledgement path (which WeCom times at 5 s) ahead of a burst's work and the database pool from
    being drained by one burst.
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._gate = asyncio.Semaphore(limit)

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        """Run `work` in the background; refused (closed, None) once shutdown has begun."""
        if self._closing:
            work.close()
            log.warning("background task %s refused: shutting down", name)
            return None
        return self._track(asyncio.create_task(self._guard(work, name), name=name))

    def later(self, delay: float, make: Callable[[], Awaitable[Any]], name: str) -> asyncio.Task[Any] | None:
        """Run `make()` after `delay` seconds (retries); the pause holds no slot; cancelled on shutdown."""
        if self._closing:
            log.warning("background task %s refused: shutting down", name)
            return None

        async def wait_then_run() -> None:
            await asyncio.sleep(delay)
            await self._guard(make(), name)

        return self._track(asyncio.create_task(wait_then_run(), name=name))

    def _track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self) -> None:
        """Wait until every task (including ones spawned meanwhile) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout: float = 5.0) -> None:
        """Refuse new work, let running tasks finish for `timeout` seconds, cancel the rest."""
        self._closing = True
        pending = list(self._tasks)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            log.warning("cancelled %d unfinished WeCom background tasks on shutdown", len(still))
            await asyncio.gather(*still, return_exceptions=True)

    async def _guard(self, work: Awaitable[Any], name: str) -> None:
        """Wait for a slot, run, log failures (a background task has nobody else to report to)."""
        try:
            async with self._gate:
                await work
        except asyncio.CancelledError:
            if inspect.iscoroutine(work):
                work.close()  # cancelled while waiting for a slot: it never ran, and must not warn
            raise
        except Exception:
            log.exception("background task %s failed", name)
