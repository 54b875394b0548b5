"""Tagging benchmark: quality against the labelled set, speed against bare jieba, rebuild time, workers.

`python -m bench tagging [--quick]` prints every figure; nothing is asserted here.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jieba

from bench import corpus
from core.taxonomy.dryrun import suggest_stream
from tagging.builtin import load_builtin
from tagging.matcher import Matcher
from tagging.normaliser import normalise
from tagging.taxonomy import Taxonomy
from tagging.tokenizer import KeywordTokenizer

LABELLED = Path(__file__).resolve().parent.parent / "tests" / "data" / "labelled_messages.jsonl"

Tagger = Callable[[str], set[str]]


@dataclass(frozen=True, slots=True)
class Quality:
    """Micro-averaged precision/recall/F1 over (message, tag) pairs."""

    precision: float
    recall: float
    f1: float
    errors: tuple[str, ...]


def labelled(path: Path = LABELLED) -> list[tuple[str, set[str]]]:
    """The labelled messages: (text, expected tag names)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((row["text"], set(row["tags"])))
    return rows


def score(tagger: Tagger, rows: list[tuple[str, set[str]]]) -> Quality:
    """Compare a tagger's tag names with the expected ones."""
    true_pos = false_pos = false_neg = 0
    errors = []
    for text, expected in rows:
        got = tagger(text)
        true_pos += len(got & expected)
        false_pos += len(got - expected)
        false_neg += len(expected - got)
        if got != expected:
            errors.append(f"{text!r}: expected {sorted(expected)}, got {sorted(got)}")
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 1.0
    recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Quality(precision, recall, f1, tuple(errors))


def _keyword_tags(taxonomy: Taxonomy) -> dict[str, set[str]]:
    index: dict[str, set[str]] = {}
    for tag in taxonomy.iter_tags():
        for keyword in tag.keywords:
            index.setdefault(normalise(keyword), set()).add(tag.name)
    return index


def engine_tagger(matcher: Matcher) -> Tagger:
    """The full pipeline."""
    return lambda text: {s.tag for s in matcher.suggest(text)}


def substring_tagger(taxonomy: Taxonomy) -> Tagger:
    """Baseline: a tag fires when any of its keywords is a substring of the normalised text."""
    index = _keyword_tags(taxonomy)

    def tag(text: str) -> set[str]:
        normalised = normalise(text)
        return {name for keyword, names in index.items() if keyword in normalised for name in names}

    return tag


def token_tagger(taxonomy: Taxonomy) -> Tagger:
    """Baseline: a tag fires when one of its keywords is a jieba token of the normalised text."""
    index = _keyword_tags(taxonomy)
    tokenizer = KeywordTokenizer(index)

    def tag(text: str) -> set[str]:
        tokens = set(tokenizer.words(normalise(text)))
        return {name for keyword, names in index.items() if keyword in tokens for name in names}

    return tag


def _rate(function: Callable[[str], object], texts: Sequence[str]) -> float:
    """Messages per second of `function` over `texts` (best of two passes)."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for text in texts:
            function(text)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def _quality_report() -> None:
    taxonomy = load_builtin()
    rows = labelled()
    print(f"quality on {len(rows)} labelled messages (default taxonomy)")
    print(f"  {'tagger':<22}{'precision':>10}{'recall':>10}{'F1':>10}")
    for name, tagger in (
        ("engine", engine_tagger(Matcher.build(taxonomy))),
        ("substring baseline", substring_tagger(taxonomy)),
        ("jieba-token baseline", token_tagger(taxonomy)),
    ):
        quality = score(tagger, rows)
        print(f"  {name:<22}{quality.precision:>10.3f}{quality.recall:>10.3f}{quality.f1:>10.3f}")


def _speed_report(message_count: int, sizes: Sequence[int]) -> None:
    texts = corpus.messages(message_count)
    jieba.initialize()
    bare = _rate(jieba.lcut, texts)
    print(f"\nspeed on {len(texts)} generated messages")
    print(f"  bare jieba.lcut: {bare:,.0f} msg/s")
    for size in sizes:
        matcher = Matcher.build(corpus.taxonomy(size))
        rate = _rate(matcher.suggest, texts)
        hits = sum(1 for text in texts if matcher.suggest(text))
        print(
            f"  suggest @ {size:>6,} keywords: {rate:,.0f} msg/s  ratio {rate / bare:.2f}"
            f"  ({hits / len(texts):.0%} of messages tagged)"
        )


def _rebuild_report(size: int) -> None:
    taxonomy = corpus.taxonomy(size)
    started = time.perf_counter()
    Matcher.build(taxonomy)
    first = time.perf_counter() - started
    started = time.perf_counter()
    Matcher.build(taxonomy)
    again = time.perf_counter() - started
    print(f"\nrebuild {size:,} keywords: {again:.2f} s (first build in this process {first:.2f} s)")


def _workers_report(lines: int) -> None:
    texts = corpus.messages(lines, seed=99)
    matcher = Matcher.build(load_builtin())
    timings = {}
    outputs = {}
    for workers in (1, 2):
        out = io.StringIO()
        started = time.perf_counter()
        suggest_stream(matcher, texts, out, workers=workers)
        timings[workers] = time.perf_counter() - started
        outputs[workers] = out.getvalue()
    same = "identical output" if outputs[1] == outputs[2] else "OUTPUT DIFFERS"
    print(
        f"\nkebiao suggest over {lines:,} lines: 1 worker {timings[1]:.2f} s, 2 workers {timings[2]:.2f} s,"
        f" speed-up {timings[1] / timings[2]:.2f}x ({same})"
    )


def main(argv: Sequence[str]) -> int:
    """Print quality, speed, rebuild and worker figures."""
    parser = argparse.ArgumentParser(prog="python -m bench tagging")
    parser.add_argument("--quick", action="store_true", help="smaller corpus for a smoke run")
    options = parser.parse_args(list(argv))
    messages, lines = (2_000, 10_000) if options.quick else (20_000, 100_000)
    _quality_report()
    _speed_report(messages, (100, 1_000, 10_000))
    _rebuild_report(10_000)
    _workers_report(lines)
    return 0
