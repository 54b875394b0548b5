"""A private jieba tokenizer whose dictionary holds every CJK keyword of the taxonomy.

jieba's own initialisation parses (or unmarshals) its 350k-word dictionary, which takes most of a second;
the parsed base dictionary is loaded once per process and each taxonomy build copies it and adds its
keywords, so a rebuild costs a dictionary copy plus one `add_word` per keyword. The global jieba tokenizer
is never touched (other code may use it with other words).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from math import log

import jieba

# jieba logs "Building prefix dict…" at DEBUG to its own stderr handler on every initialisation.
logging.getLogger("jieba").setLevel(logging.WARNING)

# Weight of a keyword jieba does not know: enough to beat a split into a character plus a common word
# (官|网上 for 官网), far below everyday words so a keyword straddling two real words still loses to them
# (评价|格外 for 价格). Keywords jieba already knows keep jieba's own frequency.
KEYWORD_MIN_FREQ = 300

# jieba's own block rules (jieba.re_han_default, re_skip_default, re_eng), which `spans` reproduces exactly.
_HAN_BLOCK = re.compile("([\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+)")
_ENG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

_base_lock = threading.Lock()
_base: tuple[dict[str, int], int] | None = None


def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's default prefix dictionary and total frequency, loaded once per process."""
    global _base
    with _base_lock:
        if _base is None:
            loader = jieba.Tokenizer()
            loader.initialize()
            _base = (loader.FREQ, loader.total)
        return _base


class KeywordTokenizer:
    """Segments text with jieba's default dictionary plus the given keywords (HMM off: keywords decide)."""

    def __init__(self, keywords: Iterable[str]) -> None:
        freq, total = _base_dictionary()
        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ = dict(freq)
        tokenizer.total = total
        tokenizer.initialized = True
        for word in keywords:
            if not tokenizer.FREQ.get(word):
                freq = max(tokenizer.suggest_freq(word, tune=False), KEYWORD_MIN_FREQ)
                tokenizer.add_word(word, freq=freq)
        self._jieba = tokenizer

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Token boundaries of `text` as (start, end) pairs covering it completely.

        The same tokens as `words` (jieba's `cut(text, HMM=False)`, proven equal by tests), computed without
        jieba's generators, DAG dictionary and per-fragment `log`: it is the matcher's hot path.
        """
        spans: list[tuple[int, int]] = []
        position = 0
        for block in _HAN_BLOCK.split(text):
            if not block:
                continue
            if _HAN_BLOCK.match(block):
                self._block_spans(block, position, spans)
                position += len(block)
                continue
            # Outside han blocks jieba yields "\r\n" whole and every other character on its own.
            end = position + len(block)
            while position < end:
                step = 2 if text.startswith("\r\n", position) else 1
                spans.append((position, position + step))
                position += step
        return spans

    def _block_spans(self, block: str, offset: int, spans: list[tuple[int, int]]) -> None:
        """jieba's no-HMM route through one han block (max log-probability, later end on a tie)."""
        freq = self._jieba.FREQ
        logtotal = log(self._jieba.total)
        size = len(block)
        score = [0.0] * (size + 1)
        best_end = list(range(1, size + 1))
        for start in range(size - 1, -1, -1):
            # An unknown or prefix-only single character still forms a token of frequency 1.
            best = -logtotal + score[start + 1]
            end = start + 1
            found = False
            stop = start + 1
            fragment = block[start]
            while True:
                count = freq.get(fragment)
                if count is None:
                    break
                if count:
                    value = log(count) - logtotal + score[stop]
                    if not found or value >= best:
                        best, end = value, stop
                    found = True
                if stop >= size:
                    break
                stop += 1
                fragment = block[start:stop]
            score[start] = best
            best_end[start] = end
        position = 0
        eng_start = -1
        while position < size:
            end = best_end[position]
            if end - position == 1 and block[position] in _ENG_CHARS:
                # jieba glues runs of single Latin letters and digits into one token.
                if eng_start < 0:
                    eng_start = position
            else:
                if eng_start >= 0:
                    spans.append((offset + eng_start, offset + position))
                    eng_start = -1
                spans.append((offset + position, offset + end))
            position = end
        if eng_start >= 0:
            spans.append((offset + eng_start, offset + size))

    def words(self, text: str) -> list[str]:
        """Tokens of `text` (HMM off), for baselines and diagnostics."""
        return list(self._jieba.cut(text, HMM=False))
