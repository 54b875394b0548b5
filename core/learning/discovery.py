"""Keyword discovery: words that set a tag's accepted messages apart from its rejected and untagged ones.

Per tag, the jieba words of its positive texts are compared with a background of every other text
(rejected or undone for the tag, labelled for other tags, untagged) by the log-odds ratio with an
informative Dirichlet prior (Monroe, Colaresi and Quinn 2008), as a z-score. A candidate needs a minimum
support (positive texts holding it), is not already a keyword of the tag, and comes with its precision on
stored history (of the labelled texts holding it, the share positive for the tag) and two example texts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from core.learning.ports import LearningStore, NewExample
from learning.features import words
from learning.model import TagKey
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

PRIOR_STRENGTH = 100.0  # α0: how many pseudo-texts the corpus-wide prior is worth
EXAMPLE_CHARS = 80


@dataclass(frozen=True, slots=True)
class KeywordCandidate:
    """A proposed keyword with its evidence."""

    word: str
    score: float  # z-score of the log-odds ratio
    support: int  # positive texts holding the word
    precision: float  # of labelled texts holding it, the share positive for the tag
    examples: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "word": self.word,
            "score": round(self.score, 3),
            "support": self.support,
            "precision": round(self.precision, 3),
            "examples": list(self.examples),
        }


@dataclass(frozen=True, slots=True)
class TagCandidates:
    dimension: str
    tag: str
    positives: int
    candidates: tuple[KeywordCandidate, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "dimension": self.dimension,
            "tag": self.tag,
            "positives": self.positives,
            "candidates": [c.to_json() for c in self.candidates],
        }


def _meaningful(word: str) -> bool:
    """Words worth proposing: two characters or more, not a bare number."""
    return len(word) >= 2 and not word.isdigit()


def mine_keywords(
    examples: Sequence[NewExample],
    unlabelled: Sequence[str],
    taxonomy: Taxonomy,
    only: TagKey | None = None,
    limit: int = 10,
    min_support: int = 3,
) -> list[TagCandidates]:
    """Candidates per tag of `taxonomy` (or just `only`), best first."""
    tags = {(t.dimension, name_key(t.name)): t for t in taxonomy.iter_tags()}
    labels: dict[str, dict[TagKey, bool]] = {}
    for example in examples:
        tag = tags.get((example.dimension, name_key(example.tag)))
        if tag is not None:
            labels.setdefault(example.text, {})[(tag.dimension, tag.name)] = example.positive
    texts = list(labels) + [t for t in dict.fromkeys(unlabelled) if t not in labels]
    bags = {text: {w for w in words(text) if _meaningful(w)} for text in texts}
    corpus: Counter[str] = Counter()
    for bag in bags.values():
        corpus.update(bag)
    total = sum(corpus.values()) or 1
    out: list[TagCandidates] = []
    for tag in taxonomy.iter_tags():
        key = (tag.dimension, tag.name)
        if only is not None and key != only:
            continue
        positive = [t for t in texts if labels.get(t, {}).get(key) is True]
        if not positive:
            out.append(TagCandidates(tag.dimension, tag.name, 0, ()))
            continue
        known = {name_key(k) for k in tag.keywords}
        out.append(
            TagCandidates(
                tag.dimension,
                tag.name,
                len(positive),
                _candidates(key, positive, texts, bags, labels, corpus, total, known, limit, min_support),
            )
        )
    return out


def _candidates(
    key: TagKey,
    positive: list[str],
    texts: list[str],
    bags: dict[str, set[str]],
    labels: dict[str, dict[TagKey, bool]],
    corpus: Counter[str],
    total: int,
    known: set[str],
    limit: int,
    min_support: int,
) -> tuple[KeywordCandidate, ...]:
    positive_set = set(positive)
    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    for text in texts:
        (inside if text in positive_set else outside).update(bags[text])
    n_in, n_out = sum(inside.values()), sum(outside.values())
    scored: list[tuple[float, str]] = []
    for word, y_in in inside.items():
        if y_in < min_support or name_key(word) in known:
            continue
        alpha = PRIOR_STRENGTH * corpus[word] / total
        y_out = outside[word]
        delta = math.log((y_in + alpha) / (n_in + PRIOR_STRENGTH - y_in - alpha)) - math.log(
            (y_out + alpha) / (n_out + PRIOR_STRENGTH - y_out - alpha)
        )
        z = delta / math.sqrt(1.0 / (y_in + alpha) + 1.0 / (y_out + alpha))
        if z > 0:
            scored.append((z, word))
    scored.sort(key=lambda item: (-item[0], item[1]))
    out: list[KeywordCandidate] = []
    for z, word in scored[:limit]:
        holding = [
            t for t in texts if word in bags[t] and (key in labels.get(t, {}) or any(labels.get(t, {}).values()))
        ]
        hits = sum(1 for t in holding if labels[t].get(key) is True)
        precision = hits / len(holding) if holding else 0.0
        samples = tuple(t[:EXAMPLE_CHARS] for t in positive if word in bags[t])[:2]
        out.append(KeywordCandidate(word, z, inside[word], precision, samples))
    return tuple(out)


async def keyword_candidates(
    store: LearningStore,
    taxonomy: Taxonomy,
    only: TagKey | None = None,
    limit: int = 10,
    min_support: int = 3,
    background: int = 5000,
) -> list[TagCandidates]:
    """Stored examples plus up to `background` untagged messages, mined by `mine_keywords`."""
    examples = await store.examples()
    unlabelled = await store.unlabelled_texts(background)
    return mine_keywords(examples, unlabelled, taxonomy, only, limit, min_support)
