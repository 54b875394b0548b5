"""Features of a message: character 1-, 2- and 3-grams of its meaningful runs, after normalisation.

Character n-grams carry Chinese words without a segmenter, so scoring a message needs no jieba pass and
stays cheap beside the keyword matcher (which segments only around its own hits). Each n-gram is one
64-bit key (its code points, 21 bits each), computed for a whole message at once with numpy; a model's
vocabulary is a sorted array of such keys. `words` (jieba, a private tokenizer) stays for keyword
discovery, where whole words are what a manager adds.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from operator import add

import numpy as np
from numpy.typing import NDArray

from tagging.normaliser import normalise
from tagging.tokenizer import KeywordTokenizer

Keys = NDArray[np.uint64]
LONGEST = 3
_BITS = 21  # every Unicode code point fits; a meaningful character is never 0, so shorter n-grams never collide
_MASK_21 = (1 << _BITS) - 1
_MEANINGFUL = re.compile(r"[\u3400-\u9fff\uf900-\ufaffa-z0-9]")
_RUNS = re.compile(r"[\u3400-\u9fff\uf900-\ufaffa-z0-9]+")
_MASKED = re.compile(r"\*+")
# Code point ranges that carry meaning: CJK, Latin letters and digits (punctuation and spaces never form
# features, so n-grams never straddle them).
_RANGES = ((0x3400, 0x9FFF), (0xF900, 0xFAFF), (ord("a"), ord("z")), (ord("0"), ord("9")))


@cache
def _meaningful() -> NDArray[np.bool_]:
    """Meaningful or not, per BMP code point (none above it is; 0xFFFF is not, and larger ones clip to it)."""
    table = np.zeros(0x10000, dtype=bool)
    for low, high in _RANGES:
        table[low : high + 1] = True
    return table


_lock = threading.Lock()
_tokenizer: KeywordTokenizer | None = None


MAX_CHARS = 20_000  # as the keyword matcher (MAX_MESSAGE_CHARS): a longer message is read up to here


def prepared(text: str, normalised: str | None = None) -> str:
    """The normalised text features are read from (masked personal data becomes a gap); `normalised`, when
    given, is `normalise(text[:MAX_CHARS])` already worked out by the caller."""
    return _MASKED.sub(" ", normalised if normalised is not None else normalise(text[:MAX_CHARS]))


def gram_keys(norm: str) -> Keys:
    """The key of every 1-, 2- and 3-gram of meaningful characters in already `prepared` text."""
    keys, _ = _grams(norm, positions=False)
    return keys


def gram_positions(norm: str) -> tuple[Keys, NDArray[np.int64]]:
    """`gram_keys` with the position in `norm` at which each n-gram starts."""
    keys, at = _grams(norm, positions=True)
    assert at is not None
    return keys, at


def _grams(norm: str, positions: bool) -> tuple[Keys, NDArray[np.int64] | None]:
    """The n-gram keys of `norm` (unigrams, then pairs, then triples) and, if asked, where each starts."""
    raw = np.frombuffer(norm.encode("utf-32-le"), dtype=np.uint32)
    ok = _meaningful()[np.minimum(raw, 0xFFFF)]
    cp = raw.astype(np.uint64)
    ok2 = ok[:-1] & ok[1:]
    ok3 = ok2[:-1] & ok[2:]
    bits = np.uint64(_BITS)
    pairs = (cp[:-1] << bits) | cp[1:]
    triples = (pairs[:-1] << bits) | cp[2:]
    keys = np.concatenate((cp[ok], pairs[ok2], triples[ok3]))
    if not positions:
        return keys, None
    return keys, np.concatenate((np.flatnonzero(ok), np.flatnonzero(ok2), np.flatnonzero(ok3)))


def gram_texts(norm: str) -> list[str]:
    """The same n-grams as `gram_keys`, as strings: cheaper than numpy's fixed costs for a short message."""
    out: list[str] = []
    for run in _RUNS.findall(norm):
        out += run
        if len(run) > 1:
            pairs = list(map(add, run, run[1:]))
            out += pairs
            out += map(add, pairs, run[2:])
    return out


def key_text(key: int) -> str:
    """The n-gram a key stands for."""
    chars: list[str] = []
    while key:
        chars.append(chr(key & _MASK_21))
        key >>= _BITS
    return "".join(reversed(chars))


def text_key(gram: str) -> int:
    """The key of one n-gram (the inverse of `key_text`)."""
    key = 0
    for char in gram:
        key = (key << _BITS) | ord(char)
    return key


def tokens(text: str) -> list[str]:
    """The feature n-grams of `text`, as text (for reading and tests; scoring uses `gram_keys`)."""
    return [key_text(int(k)) for k in gram_keys(prepared(text))]


def _shared_tokenizer() -> KeywordTokenizer:
    """One private jieba tokenizer (jieba's dictionary, no taxonomy words) per process."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            _tokenizer = KeywordTokenizer(())
        return _tokenizer


def words(text: str) -> list[str]:
    """The meaningful jieba words of `text` after normalisation (masked personal data dropped)."""
    norm = prepared(text)
    out: list[str] = []
    for start, end in _shared_tokenizer().spans(norm):
        word = norm[start:end]
        if _MEANINGFUL.search(word):
            out.append(word)
    return out
