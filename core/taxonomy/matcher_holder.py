"""The current keyword matcher, rebuilt off the request path and swapped atomically."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

Builder = Callable[[Taxonomy], Matcher]


class MatcherHolder:
    """Holds the matcher in use; `current` never blocks, `rebuild` builds in a worker thread.

    Concurrent rebuilds: the last one started wins; an older build that finishes later is discarded.
    """

    def __init__(self, matcher: Matcher | None = None, builder: Builder = Matcher.build) -> None:
        self._matcher = matcher
        self._builder = builder
        self._lock = threading.Lock()
        self._generation = 0

    @property
    def current(self) -> Matcher | None:
        """The matcher to use now (None until the first build)."""
        return self._matcher

    @property
    def generation(self) -> int:
        """How many rebuilds have been started; for diagnostics."""
        return self._generation

    async def rebuild(self, taxonomy: Taxonomy) -> bool:
        """Build a matcher for `taxonomy` in a thread; True when it became current, False when superseded."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        matcher = await asyncio.to_thread(self._builder, taxonomy)
        with self._lock:
            if generation != self._generation:
                log.info("matcher build %d superseded by build %d; discarded", generation, self._generation)
                return False
            self._matcher = matcher
        log.info("matcher build %d in use (%d keywords)", generation, matcher.keyword_count)
        return True
