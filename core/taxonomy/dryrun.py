"""`kebiao suggest`: tag chat lines, one JSON object per line (design 3.5).

With a taxonomy file or template it is a dry run that touches no database (keywords only); the CLI
passes the database's taxonomy and learned model through `suggest_stream` otherwise.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, TextIO

from tagging.matcher import Matcher
from tagging.suggestion import Suggestion
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)

CHUNK_LINES = 2000  # lines per task handed to a worker process
BATCH_LINES = 256  # lines suggested together (the learned model reads a batch in one numpy pass)


class Suggester(Protocol):
    """The keyword matcher, or the keyword matcher merged with the learned model."""

    def suggest(self, text: str) -> Sequence[Suggestion]: ...

    def suggest_many(self, texts: Sequence[str]) -> Sequence[Sequence[Suggestion]]: ...


# Set in the parent before the worker pool forks, so workers inherit the built matcher instead of
# rebuilding it (or pickling jieba's dictionary) per process.
_worker_matcher: Suggester | None = None


def _line(text: str, suggestions: Sequence[Suggestion]) -> str:
    """The JSON line for one message and its suggestions (design 3.5)."""
    return json.dumps({"text": text, "tags": [s.to_json() for s in suggestions]}, ensure_ascii=False)


def _block(matcher: Suggester, lines: Sequence[str]) -> str:
    """The JSON lines (each ending in a newline) of a batch of input lines, suggested together."""
    texts = [_strip_newline(line) for line in lines]
    return "".join(_line(text, found) + "\n" for text, found in zip(texts, matcher.suggest_many(texts), strict=True))


def _strip_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(lines)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _work_chunk(chunk: list[str]) -> tuple[int, str]:
    """(lines done, their JSON lines as one block): one string pickles far cheaper than thousands."""
    matcher = _worker_matcher
    if matcher is None:  # pragma: no cover - only if a pool were created without the fork start method
        raise RuntimeError("worker has no matcher; the pool must use the fork start method")
    return len(chunk), "".join(_block(matcher, batch) for batch in _chunks(chunk, BATCH_LINES))


def suggest_stream(
    matcher: Suggester, lines: Iterable[str], out: TextIO, workers: int = 1, batch: int = BATCH_LINES
) -> int:
    """Write one JSON line per input line, in input order; returns how many lines were written.

    Lines are suggested `batch` at a time (1 answers each line as soon as it is read, for typing at a terminal).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    count = 0
    if workers == 1:
        for chunk in _chunks(lines, batch):
            out.write(_block(matcher, chunk))
            count += len(chunk)
        return count
    global _worker_matcher
    _worker_matcher = matcher
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for written, block in pool.imap(_work_chunk, _chunks(lines, CHUNK_LINES)):
                out.write(block)
                count += written
    finally:
        _worker_matcher = None
    return count


def batch_for(stdin: TextIO) -> int:
    """Lines to suggest together: one at a time when someone types them at a terminal, else a batch."""
    return 1 if stdin.isatty() else BATCH_LINES


def load_taxonomy(path: str | None, template: str | None) -> Taxonomy:
    """The taxonomy to dry-run: a file, a built-in industry template, or the built-in default."""
    if path is not None:
        from tagging.loader import load_taxonomy_file

        return load_taxonomy_file(path)
    from tagging.builtin import load_builtin

    return load_builtin(template)


def without_bom(lines: Iterable[str]) -> Iterator[str]:
    """The lines with a leading UTF-8 byte-order mark removed (Windows editors and Excel exports add one)."""
    first = True
    for line in lines:
        yield line.removeprefix("\ufeff") if first else line
        first = False


def run_suggest(
    taxonomy_path: str | None,
    template: str | None,
    text: str | None,
    workers: int,
    stdin: TextIO,
    stdout: TextIO,
) -> int:
    """The `kebiao suggest` verb: 0 on success; raises the loader's errors for a bad taxonomy."""
    taxonomy = load_taxonomy(taxonomy_path, template)
    matcher = Matcher.build(taxonomy)
    lines: Iterable[str] = [text] if text is not None else without_bom(stdin)
    count = suggest_stream(matcher, lines, stdout, workers=workers if text is None else 1, batch=batch_for(stdin))
    stdout.flush()
    log.debug("suggest: %d lines, %d keywords", count, matcher.keyword_count)
    return 0
