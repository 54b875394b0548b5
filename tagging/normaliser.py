"""Text normalisation: NFKC (full-width to half-width), Latin case-folding, traditional to simplified Chinese.

OpenCC's t2s conversion costs tens of microseconds per message in pure Python, so the common case uses a
character translate table built once from OpenCC's own character dictionary; the full converter runs only
when the text holds one of OpenCC's phrases whose conversion differs from the character-by-character one
(tests prove both paths agree).
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import opencc


@dataclass(frozen=True, slots=True)
class _T2S:
    """Fast traditional-to-simplified tables derived from OpenCC's t2s dictionaries."""

    converter: opencc.OpenCC
    chars: dict[int, str]
    phrases: re.Pattern[str]


def _read_pairs(path: str) -> dict[str, str]:
    """OpenCC dictionary file: key TAB candidates (space separated); OpenCC keeps the first candidate."""
    pairs: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, _, value = line.rstrip("\n").partition("\t")
            if key and value:
                pairs[key] = value.split(" ")[0]
    return pairs


_lock = threading.Lock()


@lru_cache(maxsize=1)
def _t2s() -> _T2S:
    with _lock:
        folder = os.path.join(os.path.dirname(opencc.__file__), "dictionary")
        chars = _read_pairs(os.path.join(folder, "TSCharacters.txt"))
        phrases = _read_pairs(os.path.join(folder, "TSPhrases.txt"))
        table = {ord(k): v for k, v in chars.items() if len(k) == 1}
        # Only phrases whose conversion differs from the per-character result can change the output.
        differing = sorted((k for k, v in phrases.items() if k.translate(table) != v), key=len, reverse=True)
        pattern = re.compile("|".join(map(re.escape, differing)) or "(?!)")
        return _T2S(converter=opencc.OpenCC("t2s"), chars=table, phrases=pattern)


def to_simplified(text: str) -> str:
    """Traditional to simplified Chinese, identical to OpenCC t2s."""
    t2s = _t2s()
    if t2s.phrases.search(text) is None:
        return text.translate(t2s.chars)
    return str(t2s.converter.convert(text))


def normalise(text: str) -> str:
    """Normalise message text for matching; keeps length-changing rules to NFKC and t2s only."""
    return to_simplified(unicodedata.normalize("NFKC", text).casefold())


@lru_cache(maxsize=4096)
def name_key(name: str) -> str:
    """Identity of a tag or dimension name: normalised, trimmed, inner whitespace collapsed."""
    # Kept for the few thousand names in use: every turn keys the same tag names over and over (the matcher's
    # suggestions, the tag policy, the rules), each time a normalisation of its own.
    return " ".join(normalise(name).split())
