"""A private jieba tokenizer whose dictionary holds every CJK keyword of the taxonomy.

jieba's own initialisation parses (or unmarshals) its 350k-word dictionary, which takes most of a second;
the parsed base dictionary is loaded once per process and each taxonomy build copies it and adds its
keywords, so a rebuild costs a dictionary copy plus one `add_word` per keyword. The global jieba tokenizer
is never touched (other code may use it with other words).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import jieba

# jieba logs "Building prefix dict…" at DEBUG to its own stderr handler on every initialisation.
logging.getLogger("jieba").setLevel(logging.WARNING)

# Weight of a keyword jieba does not know: enough to beat a split into a character plus a common word
# (官|网上 for 官网), far below everyday words so a keyword straddling two real words still loses to them
# (评价|格外 for 价格). Keywords jieba already knows keep jieba's own frequency.
KEYWORD_MIN_FREQ = 300

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
        """Token boundaries of `text` as (start, end) pairs covering it completely."""
        spans: list[tuple[int, int]] = []
        position = 0
        for word in self._jieba.cut(text, HMM=False):
            spans.append((position, position + len(word)))
            position += len(word)
        return spans

    def words(self, text: str) -> list[str]:
        """Tokens of `text` (HMM off), for baselines and diagnostics."""
        return list(self._jieba.cut(text, HMM=False))
