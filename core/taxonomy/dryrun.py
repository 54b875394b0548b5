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

CHUNK_LINES = 2000


class Suggester(Protocol):
    """The keyword matcher, or the keyword matcher merged with the learned model."""

    def suggest(self, text: str) -> Sequence[Suggestion]: ...


# Set in the parent before the worker pool forks, so workers inherit the built matcher instead of
# rebuilding it (or pickling jieba's dictionary) per process.
_worker_matcher: Suggester | None = None


def suggestion_line(matcher: Suggester, text: str) -> str:
    """The JSON line for one message (design 3.5)."""
    tags = [s.to_json() for s in matcher.suggest(text)]
    return json.dumps({"text": text, "tags": tags}, ensure_ascii=False)


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
    return len(chunk), "".join(suggestion_line(matcher, _strip_newline(line)) + "\n" for line in chunk)


def suggest_stream(matcher: Suggester, lines: Iterable[str], out: TextIO, workers: int = 1) -> int:
    """Write one JSON line per input line, in input order; returns how many lines were written."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    count = 0
    if workers == 1:
        for line in lines:
            out.write(suggestion_line(matcher, _strip_newline(line)))
            out.write("\n")
            count += 1
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
    count = suggest_stream(matcher, lines, stdout, workers=workers if text is None else 1)
    stdout.flush()
    log.debug("suggest: %d lines, %d keywords", count, matcher.keyword_count)
    return 0
