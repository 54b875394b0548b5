"""Start-up benchmark: the `kebiao` command against loading jieba's dictionary, each in a fresh process.

`python -m bench startup [--repeat N] [--lines N]` measures, in one run and each as a fresh subprocess (the
median of N runs): loading jieba's dictionary in a bare process, `kebiao --help`, a one-line
`kebiao suggest --taxonomy FILE --text ...`, and `kebiao suggest --taxonomy FILE` over generated lines against a
bare `jieba.lcut` loop over the same lines (both end to end). It prints the figures and their ratios against
the targets; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import corpus

ROOT = Path(__file__).resolve().parent.parent
ONE_LINE = "你好，麻烦把报价单发我一下，另外上次的退款还没到账"
JIEBA_LOAD = "import jieba; jieba.Tokenizer().initialize()"
BARE_LOOP = "import sys, jieba\nfor line in sys.stdin:\n    jieba.lcut(line.rstrip('\\n'))\n"

# (figure, baseline, comparison, target): "at most" targets for times, "at least" for throughput.
HELP_TARGET = 0.5  # `kebiao --help` <= 0.5x the jieba load
ONE_LINE_TARGET = 1.5  # one-line suggest <= 1.5x the jieba load
THROUGHPUT_TARGET = 0.7  # suggest over the lines >= 0.7x the bare loop's lines per second


@dataclass(frozen=True, slots=True)
class Timing:
    """The median wall time of `runs` fresh processes, and every run's time."""

    median: float
    runs: tuple[float, ...]


def kebiao_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m cli`."""
    script = Path(sys.executable).with_name("kebiao")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def timed(command: Sequence[str], repeat: int, cwd: Path, stdin: Path | None = None) -> Timing:
    """Run `command` `repeat` times in fresh processes (stdout discarded); fails loudly on a non-zero exit."""
    env = dict(os.environ, KEBIAO_DATABASE_URL=f"sqlite+aiosqlite:///{cwd / 'bench.db'}")
    runs = []
    for _ in range(repeat):
        with open(stdin if stdin is not None else os.devnull, "rb") as source:
            start = time.perf_counter()
            done = subprocess.run(
                command, cwd=cwd, env=env, stdin=source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            runs.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return Timing(statistics.median(runs), tuple(runs))


def taxonomy_file(folder: Path) -> Path:
    """The built-in taxonomy written as a file: what a user dry-runs with --taxonomy."""
    from tagging.builtin import load_builtin
    from tagging.loader import dump_taxonomy

    path = folder / "taxonomy.yaml"
    path.write_text(dump_taxonomy(load_builtin(None)), encoding="utf-8")
    return path


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main(argv: Sequence[str] = ()) -> int:
    """Print the start-up figures and ratios; returns 0 (figures are reported, not asserted)."""
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per short figure (median)")
    parser.add_argument("--lines", type=int, default=20_000, help="generated chat lines for the throughput run")
    parser.add_argument("--bulk-repeat", type=int, default=3, help="runs of each throughput figure (median)")
    options = parser.parse_args(list(argv))
    kebiao = kebiao_command()
    with tempfile.TemporaryDirectory(prefix="kebiao-bench-startup-") as tmp:
        folder = Path(tmp)
        taxonomy = taxonomy_file(folder)
        lines = folder / "chat.txt"
        lines.write_text("\n".join(corpus.messages(options.lines)) + "\n", encoding="utf-8")
        python = [sys.executable, "-c"]
        timed([*python, JIEBA_LOAD], 1, folder)  # warm the OS file cache and jieba's dictionary cache once
        jieba_load = timed([*python, JIEBA_LOAD], options.repeat, folder)
        help_ = timed([*kebiao, "--help"], options.repeat, folder)
        one_line = timed([*kebiao, "suggest", "--taxonomy", str(taxonomy), "--text", ONE_LINE], options.repeat, folder)
        bare = timed([*python, BARE_LOOP], options.bulk_repeat, folder, stdin=lines)
        bulk = timed([*kebiao, "suggest", "--taxonomy", str(taxonomy)], options.bulk_repeat, folder, stdin=lines)
    print(f"start-up, median of {options.repeat} fresh processes ({options.bulk_repeat} for {options.lines:,} lines)")
    print(f"  command: {' '.join(kebiao)}")
    print(f"  jieba dictionary load (bare process)    {jieba_load.median:7.3f} s   baseline")
    help_ratio = help_.median / jieba_load.median
    print(
        f"  kebiao --help                           {help_.median:7.3f} s   {help_ratio:.2f}x the jieba load "
        f"(target <= {HELP_TARGET}x: {verdict(help_ratio <= HELP_TARGET)})"
    )
    one_ratio = one_line.median / jieba_load.median
    print(
        f"  kebiao suggest --taxonomy FILE --text   {one_line.median:7.3f} s   {one_ratio:.2f}x the jieba load "
        f"(target <= {ONE_LINE_TARGET}x: {verdict(one_ratio <= ONE_LINE_TARGET)})"
    )
    bare_rate = options.lines / bare.median
    bulk_rate = options.lines / bulk.median
    rate_ratio = bulk_rate / bare_rate
    print(f"  bare jieba.lcut loop, {options.lines:,} lines       {bare.median:7.3f} s   {bare_rate:9,.0f} lines/s")
    print(
        f"  kebiao suggest, {options.lines:,} lines             {bulk.median:7.3f} s   {bulk_rate:9,.0f} lines/s   "
        f"{rate_ratio:.2f}x the bare loop (target >= {THROUGHPUT_TARGET}x: {verdict(rate_ratio >= THROUGHPUT_TARGET)})"
    )
    print(
        "  runs (s): "
        + "; ".join(
            f"{name} {', '.join(f'{t:.3f}' for t in timing.runs)}"
            for name, timing in (
                ("jieba", jieba_load),
                ("help", help_),
                ("one-line", one_line),
                ("bare loop", bare),
                ("suggest", bulk),
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
