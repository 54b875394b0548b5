"""Keyword matcher: from a taxonomy to ordered, evidenced tag suggestions for one message.

Pipeline per message: normalise; scan for keyword / exclude / false-friend phrases with a first-character
index (messages without a candidate keyword stop here and never reach jieba); segment only the clauses that
hold a CJK candidate with a private jieba tokenizer; keep an occurrence when it lines up with the tokens
(whole words, or inside a compound that is not a false friend), is whole-word for Latin keywords, is not
covered by the tag's `exclude`, and is not cancelled by a "no need" negator of its clause.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tagging.false_friends import DEFAULT_FALSE_FRIENDS
from tagging.negation import negated
from tagging.normaliser import normalise
from tagging.suggestion import Match, MatchKind, Suggestion
from tagging.taxonomy import TagDef, Taxonomy
from tagging.tokenizer import KeywordTokenizer

# Evidence weight of one keyword by how it lines up; a tag's score combines its distinct keywords.
WEIGHTS = {MatchKind.WORD: 0.9, MatchKind.LATIN: 0.9, MatchKind.COMPOUND: 0.75}
MAX_SCORE = 0.99
EXCERPT_CONTEXT = 12
# Only this much of a message is matched (a Teams message is at most about 28 KB); the rest is ignored, so
# one enormous message costs a bounded amount of work.
MAX_MESSAGE_CHARS = 20_000
# Negation looks this far around a keyword inside its clause (negators sit within a few characters).
NEGATION_WINDOW = 64

_CLAUSE_END = re.compile(r"[,!?;。！？；、\n\r~]|\.(?=\s|$|\.)")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

_Span = tuple[int, int, str]  # start, end, phrase

_KEYWORD = 1
_FALSE_FRIEND = 2
_EXCLUDE = 4


def _is_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@dataclass(frozen=True, slots=True)
class _Target:
    """A tag a normalised keyword points at, with the taxonomy's spelling."""

    tag: int
    keyword: str


class _Message:
    """Per-message working state: clause boundaries and lazily segmented clauses."""

    __slots__ = ("_bounds", "_spans", "text", "tokenizer")

    def __init__(self, text: str, tokenizer: KeywordTokenizer) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self._bounds: list[int] = [0]
        for found in _CLAUSE_END.finditer(text):
            self._bounds.append(found.end())
        self._spans: dict[int, tuple[list[int], set[int]]] = {}

    def clause(self, position: int) -> tuple[int, int]:
        """(start, end) of the clause holding `position`."""
        index = bisect.bisect_right(self._bounds, position) - 1
        start = self._bounds[index]
        end = self._bounds[index + 1] if index + 1 < len(self._bounds) else len(self.text)
        return start, end

    def alignment(self, start: int, end: int) -> MatchKind | None:
        """WORD if text[start:end] is whole tokens, COMPOUND if inside one token, None if it straddles."""
        clause_start, clause_end = self.clause(start)
        if end > clause_end:
            return None
        if clause_start not in self._spans:
            spans = self.tokenizer.spans(self.text[clause_start:clause_end])
            starts = [clause_start + a for a, _ in spans]
            ends = {clause_start + b for _, b in spans}
            self._spans[clause_start] = (starts, ends)
        starts, ends = self._spans[clause_start]
        token = bisect.bisect_right(starts, start) - 1
        token_start = starts[token]
        token_end = starts[token + 1] if token + 1 < len(starts) else clause_end
        if token_start == start and end in ends:
            return MatchKind.WORD
        if end <= token_end:
            return MatchKind.COMPOUND
        return None

    def is_negated(self, start: int, end: int) -> bool:
        clause_start, clause_end = self.clause(start)
        # A bounded window of the clause: one long unpunctuated clause must not cost its length per keyword.
        clause_start = max(clause_start, start - NEGATION_WINDOW)
        clause_end = min(clause_end, end + NEGATION_WINDOW)
        return negated(self.text[clause_start:clause_end], start - clause_start, end - clause_start)


class _Containment:
    """Answers "is (start, end) inside a different, longer span of this set?" in O(log n) per question."""

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(spans)
        self._starts = [a for a, _ in ordered]
        self._max_end: list[int] = []  # the largest end among the first i+1 spans (by start)
        best = -1
        for _, b in ordered:
            best = max(best, b)
            self._max_end.append(best)
        self._ends_at: dict[int, int] = {}  # the largest end among spans starting exactly at a start
        for a, b in ordered:
            self._ends_at[a] = max(self._ends_at.get(a, -1), b)

    def covers(self, start: int, end: int) -> bool:
        """True when some span other than (start, end) itself contains it."""
        before = bisect.bisect_left(self._starts, start)  # spans starting strictly before `start`
        if before and self._max_end[before - 1] >= end:
            return True
        return self._ends_at.get(start, -1) > end


class _Overlaps:
    """Answers "does a span of this phrase overlap (start, end)?" in O(log n) per question."""

    def __init__(self, spans: Iterable[_Span]) -> None:
        by_phrase: dict[str, list[tuple[int, int]]] = {}
        for a, b, phrase in spans:
            by_phrase.setdefault(phrase, []).append((a, b))
        self._index: dict[str, tuple[list[int], list[int]]] = {}
        for phrase, found in by_phrase.items():
            found.sort()
            starts, max_end, best = [], [], -1
            for a, b in found:
                best = max(best, b)
                starts.append(a)
                max_end.append(best)
            self._index[phrase] = (starts, max_end)

    def any_of(self, phrases: tuple[str, ...], start: int, end: int) -> bool:
        """True when an occurrence of one of `phrases` shares a character with text[start:end]."""
        for phrase in phrases:
            found = self._index.get(phrase)
            if found is None:
                continue
            starts, max_end = found
            before = bisect.bisect_left(starts, end)  # occurrences starting before `end`
            if before and max_end[before - 1] > start:
                return True
        return False


class Matcher:
    """Immutable keyword matcher for one taxonomy; `suggest` is pure and thread-safe."""

    def __init__(
        self,
        tags: tuple[TagDef, ...],
        keywords: dict[str, tuple[_Target, ...]],
        excludes: dict[int, tuple[str, ...]],
        false_friends: frozenset[str],
    ) -> None:
        self._tags = tags
        self._keywords = keywords
        self._excludes = excludes
        phrases: dict[str, int] = {}
        for keyword in keywords:
            phrases[keyword] = phrases.get(keyword, 0) | _KEYWORD
        for phrase in false_friends:
            phrases[phrase] = phrases.get(phrase, 0) | _FALSE_FRIEND
        for tag_excludes in excludes.values():
            for phrase in tag_excludes:
                phrases[phrase] = phrases.get(phrase, 0) | _EXCLUDE
        self._phrases = phrases
        # Phrase lengths by their first two characters (one for one-character phrases): most positions of
        # a message start no phrase's first two characters, so they cost one slice and one lookup.
        lengths: dict[str, set[int]] = {}
        for phrase in phrases:
            if len(phrase) > 1:
                lengths.setdefault(phrase[:2], set()).add(len(phrase))
        self._lengths = {head: tuple(sorted(ls, reverse=True)) for head, ls in lengths.items()}
        self._single = frozenset(phrase for phrase in phrases if len(phrase) == 1)
        keyword_starts = sorted({k[0] for k in keywords})
        trigger = "[" + "".join(map(re.escape, keyword_starts)) + "]" if keyword_starts else "(?!)"
        self._trigger = re.compile(trigger)
        self._tokenizer = KeywordTokenizer(k for k in keywords if _CJK.search(k))

    @classmethod
    def build(cls, taxonomy: Taxonomy, false_friends: Iterable[str] = DEFAULT_FALSE_FRIENDS) -> Matcher:
        """Compile a taxonomy's keywords, excludes and the false-friend list into a matcher."""
        tags = tuple(taxonomy.iter_tags())
        keywords: dict[str, list[_Target]] = {}
        excludes: dict[int, tuple[str, ...]] = {}
        for index, tag in enumerate(tags):
            for keyword in tag.keywords:
                key = normalise(keyword).strip()
                if key and all(t.tag != index for t in keywords.get(key, ())):
                    keywords.setdefault(key, []).append(_Target(index, keyword))
            phrases = tuple(p for p in (normalise(e).strip() for e in tag.exclude) if p)
            if phrases:
                excludes[index] = phrases
        friends = frozenset(p for p in (normalise(f).strip() for f in false_friends) if p)
        return cls(tags, {k: tuple(v) for k, v in keywords.items()}, excludes, friends)

    @property
    def keyword_count(self) -> int:
        """Distinct normalised keywords the matcher knows."""
        return len(self._keywords)

    def _scan(self, text: str) -> tuple[list[_Span], list[tuple[int, int]], list[_Span]]:
        """Every occurrence of a keyword, a false friend and an exclude phrase in normalised text."""
        found_keywords: list[_Span] = []
        found_friends: list[tuple[int, int]] = []
        found_excludes: list[_Span] = []
        lengths, phrases, single = self._lengths, self._phrases, self._single
        size_of_text = len(text)
        for start in range(size_of_text):
            sizes = lengths.get(text[start : start + 2])
            if single and text[start] in single:
                # One-character phrases sort after the longer ones that start with the same character.
                sizes = (*(sizes or ()), 1)
            if sizes is None:
                continue
            for size in sizes:
                end = start + size
                if end > size_of_text:
                    continue
                piece = text[start:end]
                kinds = phrases.get(piece)
                if kinds is None:
                    continue
                if kinds & _KEYWORD:
                    found_keywords.append((start, end, piece))
                if kinds & _FALSE_FRIEND:
                    found_friends.append((start, end))
                if kinds & _EXCLUDE:
                    found_excludes.append((start, end, piece))
        return found_keywords, found_friends, found_excludes

    def matches(self, text: str) -> dict[int, list[tuple[Match, str]]]:
        """Accepted occurrences in normalised text per tag index, with the taxonomy's spelling.

        Only the first MAX_MESSAGE_CHARS characters are matched.
        """
        text = text[:MAX_MESSAGE_CHARS]
        if self._trigger.search(text) is None:
            return {}
        found, friends, excluded = self._scan(text)
        if not found:
            return {}
        message = _Message(text, self._tokenizer)
        # Containment and overlap are answered through sorted indexes: comparing every occurrence with
        # every other one is quadratic (seconds for one message repeating a keyword thousands of times).
        in_friend = _Containment(friends)
        aligned = []
        for start, end, keyword in found:
            kind = self._kind(message, start, end, keyword)
            if kind is None:
                continue
            if in_friend.covers(start, end):
                continue
            aligned.append((start, end, keyword, kind))
        longer = _Containment((s, e) for s, e, _, _ in aligned)
        exclusions = _Overlaps(excluded)
        accepted: dict[int, list[tuple[Match, str]]] = {}
        for start, end, keyword, kind in aligned:
            # The longest keyword is the most specific evidence: 已签约 (已成交) hides its 签约 (合同谈判).
            if longer.covers(start, end):
                continue
            if message.is_negated(start, end):
                continue
            for target in self._keywords[keyword]:
                phrases = self._excludes.get(target.tag)
                if phrases and exclusions.any_of(phrases, start, end):
                    continue
                accepted.setdefault(target.tag, []).append((Match(keyword, start, end, kind), target.keyword))
        return accepted

    @staticmethod
    def _kind(message: _Message, start: int, end: int, keyword: str) -> MatchKind | None:
        """How the occurrence lines up with words; None when it must not count."""
        text = message.text
        if _is_word_char(keyword[0]) and start > 0 and _is_word_char(text[start - 1]):
            return None
        if _is_word_char(keyword[-1]) and end < len(text) and _is_word_char(text[end]):
            return None
        if _CJK.search(keyword) is None:
            return MatchKind.LATIN
        return message.alignment(start, end)

    def suggest(self, text: str) -> list[Suggestion]:
        """Tag suggestions for one message, in taxonomy order (dimension, then tag).

        Only the first MAX_MESSAGE_CHARS characters are matched.
        """
        text = text[:MAX_MESSAGE_CHARS]
        return self.suggest_normalised(text, normalise(text))

    def suggest_many(self, texts: Sequence[str]) -> list[list[Suggestion]]:
        """`suggest` of every text, in order."""
        return [self.suggest(text) for text in texts]

    def suggest_normalised(self, text: str, normalised: str) -> list[Suggestion]:
        """`suggest` for a caller that already holds `normalise(text[:MAX_MESSAGE_CHARS])`."""
        text = text[:MAX_MESSAGE_CHARS]
        accepted = self.matches(normalised)
        if not accepted:
            return []
        # Excerpts quote the original text when normalisation kept every position in place.
        source = text if len(text) == len(normalised) else normalised
        suggestions = []
        for index in sorted(accepted):
            occurrences = accepted[index]
            tag = self._tags[index]
            weights: dict[str, float] = {}
            for match, keyword in occurrences:
                weights[keyword] = max(weights.get(keyword, 0.0), WEIGHTS[match.kind])
            miss = 1.0
            for weight in weights.values():
                miss *= 1.0 - weight
            suggestions.append(
                Suggestion(
                    tag=tag.name,
                    dimension=tag.dimension,
                    matched=tuple(weights),
                    score=round(min(MAX_SCORE, 1.0 - miss), 2),
                    action="apply" if tag.auto_apply else "suggest",
                    excerpt=_excerpt(source, [m for m, _ in occurrences]),
                )
            )
        return suggestions


def _excerpt(text: str, matches: list[Match]) -> str:
    """The message around its matched keywords, with an ellipsis where it was cut."""
    start = max(0, min(m.start for m in matches) - EXCERPT_CONTEXT)
    end = min(len(text), max(m.end for m in matches) + EXCERPT_CONTEXT)
    excerpt = text[start:end].strip()
    return ("…" if start > 0 else "") + excerpt + ("…" if end < len(text) else "")
