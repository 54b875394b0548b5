"""Features of a message: jieba words (a private tokenizer) plus character bigrams of the normalised text."""

from __future__ import annotations

import re
import threading

from tagging.normaliser import normalise
from tagging.tokenizer import KeywordTokenizer

WORD = "w:"
BIGRAM = "c:"
# A character that carries meaning: CJK, Latin letters and digits (punctuation and spaces never form features).
_MEANINGFUL = re.compile(r"[\u3400-\u9fff\uf900-\ufaffa-z0-9]")
_NOT_MEANINGFUL = re.compile(r"[^\u3400-\u9fff\uf900-\ufaffa-z0-9]")
_MASK = re.compile(r"\*+")

_lock = threading.Lock()
_tokenizer: KeywordTokenizer | None = None


def _shared_tokenizer() -> KeywordTokenizer:
    """One private jieba tokenizer (jieba's dictionary, no taxonomy words) per process."""
    global _tokenizer
    with _lock:
        if _tokenizer is None:
            _tokenizer = KeywordTokenizer(())
        return _tokenizer


def words(text: str) -> list[str]:
    """The meaningful jieba words of `text` after normalisation (masked personal data dropped)."""
    norm = _MASK.sub(" ", normalise(text))
    out: list[str] = []
    for start, end in _shared_tokenizer().spans(norm):
        word = norm[start:end]
        if _MEANINGFUL.search(word):
            out.append(word)
    return out


def tokens(text: str) -> list[str]:
    """Feature tokens: `w:` + each word and `c:` + each bigram of adjacent meaningful characters."""
    norm = _MASK.sub(" ", normalise(text))
    marked = _NOT_MEANINGFUL.sub("\0", norm)
    out = [WORD + norm[a:b] for a, b in _shared_tokenizer().spans(norm) if marked[a:b].strip("\0")]
    out.extend(BIGRAM + pair for i in range(len(marked) - 1) if "\0" not in (pair := marked[i : i + 2]))
    return out


def shown(token: str) -> str:
    """The text a feature token stands for (without its kind prefix)."""
    return token[2:]
