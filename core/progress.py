"""Progress of long work (imports): phases with a done/total count, reported to whoever shows them."""

from __future__ import annotations

from collections.abc import Callable

# progress(phase, done, total): e.g. ("checking", 40_000, 200_000); the shell draws it, the core only counts.
Progress = Callable[[str, int, int], None]


class PhaseCounter:
    """Adds up increments of one phase and passes (phase, done, total) on; a no-op without a callback."""

    def __init__(self, progress: Progress | None, phase: str, total: int) -> None:
        self.progress, self.phase, self.total, self.done = progress, phase, total, 0

    def __call__(self, increment: int) -> None:
        self.done = min(self.total, self.done + increment)
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)
