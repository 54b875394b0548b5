"""A trained learned suggester: vocabulary, idf, one calibrated linear classifier per tag, thresholds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from learning.features import BIGRAM, WORD, shown, tokens

TagKey = tuple[str, str]  # (dimension key, tag name)
EVIDENCE_WORDS = 3


@dataclass(frozen=True, slots=True)
class TagMetrics:
    """How one tag fared in training: examples, cross-validated precision/recall at its threshold."""

    dimension: str
    tag: str
    examples: int
    positives: int
    enabled: bool
    reason: str
    threshold: float | None = None
    precision: float | None = None
    recall: float | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-safe dict (stored beside the model, printed by `kebiao learn status`)."""
        return {
            "dimension": self.dimension,
            "tag": self.tag,
            "examples": self.examples,
            "positives": self.positives,
            "enabled": self.enabled,
            "reason": self.reason,
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> TagMetrics:
        """The inverse of `to_json`; raises ValueError on a malformed entry."""

        def number(name: str) -> float | None:
            value = data.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"metric {name} must be a number")
            return float(value)

        def count(name: str) -> int:
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"metric {name} must be an integer")
            return value

        return cls(
            dimension=str(data["dimension"]),
            tag=str(data["tag"]),
            examples=count("examples"),
            positives=count("positives"),
            enabled=bool(data["enabled"]),
            reason=str(data.get("reason") or ""),
            threshold=number("threshold"),
            precision=number("precision"),
            recall=number("recall"),
        )


@dataclass(frozen=True, slots=True)
class LearnedHit:
    """A tag the model sees in a message: calibrated probability and the words that drove it."""

    dimension: str
    tag: str
    probability: float
    evidence: tuple[str, ...]


def vectorise(
    token_lists: Iterable[Sequence[str]], index: Mapping[str, int], idf: NDArray[np.float32]
) -> sparse.csr_matrix:
    """Rows of sublinear tf × idf, L2-normalised, over the vocabulary `index` (unknown tokens ignored)."""
    indptr = [0]
    indices: list[int] = []
    counts: list[int] = []
    for toks in token_lists:
        for token, n in Counter(toks).items():
            i = index.get(token)
            if i is not None:
                indices.append(i)
                counts.append(n)
        indptr.append(len(indices))
    columns = np.asarray(indices, dtype=np.int32)
    values = (1.0 + np.log(np.asarray(counts, dtype=np.float32))) * idf[columns] if indices else np.zeros(0, np.float32)
    matrix = sparse.csr_matrix(
        (values.astype(np.float32), columns, np.asarray(indptr, dtype=np.int64)),
        shape=(len(indptr) - 1, len(idf)),
        dtype=np.float32,
    )
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1), dtype=np.float64).ravel())
    norms[norms == 0] = 1.0
    matrix = sparse.csr_matrix(sparse.diags((1.0 / norms).astype(np.float32)) @ matrix, dtype=np.float32)
    matrix.sort_indices()
    return matrix


def platt(
    scores: NDArray[np.float64], a: NDArray[np.float64] | float, b: NDArray[np.float64] | float
) -> NDArray[np.float64]:
    """Calibrated probabilities of linear scores (sigmoid of a·score + b, per column)."""
    z = np.clip(scores * a + b, -50.0, 50.0)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


class LearnedModel:
    """Immutable after construction; `predict` is safe to call from many threads."""

    def __init__(
        self,
        labels: Sequence[TagKey],
        vocabulary: Sequence[str],
        idf: NDArray[np.float32],
        coef: NDArray[np.float32],
        intercept: NDArray[np.float64],
        platt_a: NDArray[np.float64],
        platt_b: NDArray[np.float64],
        thresholds: NDArray[np.float64],
    ) -> None:
        self.labels = tuple(labels)
        self.vocabulary = tuple(vocabulary)
        self.idf = idf
        self.coef = coef
        self.intercept = intercept
        self.platt_a = platt_a
        self.platt_b = platt_b
        self.thresholds = thresholds
        self.index = {token: i for i, token in enumerate(self.vocabulary)}

    def probabilities(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated probability of every label for every text, shape (texts, labels)."""
        matrix = vectorise((tokens(t) for t in texts), self.index, self.idf)
        scores = np.asarray(matrix @ self.coef, dtype=np.float64) + self.intercept
        return platt(scores, self.platt_a, self.platt_b)

    def predict(self, text: str) -> list[LearnedHit]:
        """Labels whose probability reaches their threshold, most probable first, with their evidence."""
        index = self.index
        found = [(i, n) for token, n in Counter(tokens(text)).items() if (i := index.get(token)) is not None]
        if not found:
            return []
        columns = np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found))
        counts = np.fromiter((n for _, n in found), dtype=np.float64, count=len(found))
        weights = (1.0 + np.log(counts)) * self.idf[columns]
        norm = float(np.sqrt(weights @ weights)) or 1.0
        weights = weights / norm
        rows = self.coef[columns]  # (tokens, labels)
        scores = weights @ rows + self.intercept
        probs = platt(scores, self.platt_a, self.platt_b)
        hits: list[LearnedHit] = []
        for label in np.flatnonzero(probs >= self.thresholds):
            evidence = _evidence(weights * rows[:, label], columns, self.vocabulary)
            dimension, tag = self.labels[label]
            hits.append(LearnedHit(dimension, tag, round(float(probs[label]), 3), evidence))
        hits.sort(key=lambda h: -h.probability)
        return hits


def _evidence(
    contributions: NDArray[np.float64], columns: NDArray[np.int64], vocabulary: Sequence[str]
) -> tuple[str, ...]:
    """The few message words (or character pairs) that pushed a label up most."""
    order = np.argsort(-contributions)
    out: list[str] = []
    for i in order:
        if contributions[i] <= 0 or len(out) >= EVIDENCE_WORDS:
            break
        token = vocabulary[int(columns[i])]
        text = shown(token)
        if token.startswith(BIGRAM) and any(text in w for w in out):
            continue
        if token.startswith(WORD):
            out = [w for w in out if w not in text]
        if text not in out:
            out.append(text)
    return tuple(out)
