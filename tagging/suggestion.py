"""What the matcher finds: keyword matches inside a message and the tag suggestions built from them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Action = Literal["apply", "suggest"]
Origin = Literal["keyword", "learned"]  # which suggester found the tag


class MatchKind(StrEnum):
    """How a keyword occurrence lines up with the segmented text."""

    WORD = "word"  # the keyword is one or more whole jieba tokens
    COMPOUND = "compound"  # the keyword sits inside a longer word that keeps its meaning (报价单)
    LATIN = "latin"  # a Latin keyword bounded by non-alphanumerics (whole word)


@dataclass(frozen=True, slots=True)
class Match:
    """One accepted keyword occurrence: `start`/`end` index the normalised text."""

    keyword: str
    start: int
    end: int
    kind: MatchKind


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A tag the message points at, with its evidence (keywords or, when learned, the words that drove the
    model) and a score in [0, 1]."""

    tag: str
    dimension: str
    matched: tuple[str, ...]
    score: float
    action: Action
    excerpt: str
    source: Origin = "keyword"

    def to_json(self) -> dict[str, object]:
        """The `kebiao suggest` shape of one tag (design 3.5)."""
        return {
            "tag": self.tag,
            "dimension": self.dimension,
            "matched": list(self.matched),
            "score": self.score,
            "action": self.action,
            "source": self.source,
        }
