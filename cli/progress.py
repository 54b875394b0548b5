"""A progress bar for long imports on stderr: redrawn in place on a terminal, one plain line per phase else."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 30  # characters of the bar
REDRAW = 0.1  # seconds between redraws on a terminal


class ProgressBar:
    """Callable as progress(phase, done, total); `finish()` ends the last line."""

    def __init__(self, stream: TextIO | None = None, unit: str = "rows") -> None:
        import time  # cli modules import only what a running verb needs

        self.clock = time.monotonic
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.tty = self.stream.isatty()
        self.phase: str | None = None
        self.started = self.clock()
        self.drawn = 0.0
        self.last = (0, 0)

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = self.clock()
        if phase != self.phase:
            self.finish()
            self.phase, self.started, self.drawn = phase, now, 0.0
        self.last = (done, total)
        if self.tty and (now - self.drawn >= REDRAW or done >= total):
            self.drawn = now
            self.stream.write("\r" + self._bar(done, total))
            self.stream.flush()

    def finish(self) -> None:
        """Close the current phase: end the bar's line on a terminal, print its summary line otherwise."""
        if self.phase is None:
            return
        done, total = self.last
        if self.tty:
            self.stream.write("\r" + self._bar(done, total) + "\n")
        else:
            seconds = self.clock() - self.started
            self.stream.write(f"{self.phase}: {done:,} of {total:,} {self.unit} in {seconds:.1f} s\n")
        self.stream.flush()
        self.phase = None

    def _bar(self, done: int, total: int) -> str:
        share = done / total if total else 1.0
        filled = int(WIDTH * share)
        seconds = max(self.clock() - self.started, 1e-9)
        return (
            f"{self.phase:<9} [{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} "
            f"{done:,}/{total:,} {self.unit} ({done / seconds:,.0f}/s)"
        )
