"""A trained learned suggester: vocabulary, idf, one calibrated linear classifier per tag, thresholds.

Besides suggesting, a tag's model can hold a keyword suggestion back: below the tag's `veto` probability
(learned from rejections, set where it costs at most a few per cent of the tag's true hits) a keyword hit
is almost always rejected by agents, so it is not shown. Auto-applied keyword tags are never held back.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter, mul, neg

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from learning.features import Keys, gram_keys, gram_positions, gram_texts, prepared, text_key

TagKey = tuple[str, str]  # (dimension key, tag name)
EVIDENCE_WORDS = 3
EVIDENCE_TOKENS = 8  # strongest n-grams looked at; overlapping ones merge into one stretch of text


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
    veto: float | None = None

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
            "veto": self.veto,
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
            veto=number("veto"),
        )


@dataclass(frozen=True, slots=True)
class LearnedHit:
    """A tag the model sees in a message: calibrated probability and the words that drove it."""

    dimension: str
    tag: str
    probability: float
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the model makes of one message: the tags it suggests and the keyword tags it holds back."""

    hits: tuple[LearnedHit, ...] = ()
    held_back: frozenset[TagKey] = frozenset()


class KeyIndex:
    """N-gram keys of a vocabulary (in column order) → their columns, looked up a whole message at a time."""

    def __init__(self, keys: Keys) -> None:
        order = np.argsort(keys, kind="stable")
        self.sorted: Keys = keys[order]
        self.columns: NDArray[np.int64] = order.astype(np.int64)

    def positions(self, keys: Keys) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
        """(which keys are in the vocabulary, their columns)."""
        if not self.sorted.size or not keys.size:
            return np.zeros(keys.shape, dtype=bool), np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self.sorted, keys)
        pos[pos == self.sorted.size] = 0
        found = self.sorted[pos] == keys
        return found, self.columns[pos[found]]


def vectorise(key_arrays: Sequence[Keys], index: KeyIndex, idf: NDArray[np.float32]) -> sparse.csr_matrix:
    """Rows of sublinear tf × idf, L2-normalised, over the vocabulary of `index` (unknown n-grams ignored)."""
    size = len(idf)
    lengths = np.fromiter((k.size for k in key_arrays), dtype=np.int64, count=len(key_arrays))
    keys = np.concatenate(key_arrays) if key_arrays else np.zeros(0, dtype=np.uint64)
    docs = np.repeat(np.arange(len(key_arrays), dtype=np.int64), lengths)
    found, columns = index.positions(keys)
    # One code per (document, column): unique() counts each n-gram's occurrences per document at once.
    codes, counts = np.unique(docs[found] * size + columns, return_counts=True)
    rows, cols = np.divmod(codes, size) if size else (codes, codes)
    values = ((1.0 + np.log(counts.astype(np.float32))) * idf[cols]).astype(np.float32)
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(key_arrays), size), dtype=np.float32)
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
        veto: NDArray[np.float64] | None = None,
    ) -> None:
        self.labels = tuple(labels)
        self.vocabulary = tuple(vocabulary)
        self.idf = idf
        self.coef = coef
        self.intercept = intercept
        self.platt_a = platt_a
        self.platt_b = platt_b
        self.thresholds = thresholds
        self.veto = veto if veto is not None else np.zeros(len(self.labels), dtype=np.float64)
        self.index = KeyIndex(np.fromiter(map(text_key, self.vocabulary), dtype=np.uint64, count=len(vocabulary)))
        # Scoring reads, per n-gram of a message, its coefficients and idf, kept in key order: a long message
        # costs one sort, one binary search and one gather; a short one looks its n-grams up by text instead.
        order = self.index.columns
        self._keys = self.index.sorted
        # The sorted keys and one past the largest possible key (21 bits × 3 < 64): a search never runs off the end.
        self._bounded = np.append(self._keys, np.uint64(np.iinfo(np.uint64).max))
        self._coef = np.ascontiguousarray(coef[order], dtype=np.float32).reshape(len(order), len(self.labels))
        self._idf = idf[order].astype(np.float64)
        self._idf_list: list[float] = self._idf.tolist()
        self._sorted_vocabulary = [self.vocabulary[int(i)] for i in order]
        self._rows = {gram: row for row, gram in enumerate(self._sorted_vocabulary)}
        # Calibration is monotonic, so a label is decided on its Platt argument a·score + b against the logits
        # of its threshold and veto; a probability is worked out only for a label that is shown.
        self._decide_arrays = tuple(
            np.array(column, dtype=np.float64)
            for column in (
                self.intercept,
                self.platt_a,
                self.platt_b,
                [_logit(p) for p in self.thresholds.tolist()],
                [_logit(p) for p in self.veto.tolist()],
            )
        )
        self._decide = list(
            zip(
                self.intercept.tolist(),
                self.platt_a.tolist(),
                self.platt_b.tolist(),
                map(_logit, self.thresholds.tolist()),
                map(_logit, self.veto.tolist()),
                strict=True,
            )
        )

    def probabilities(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Calibrated probability of every label for every text, shape (texts, labels)."""
        matrix = vectorise([gram_keys(prepared(t)) for t in texts], self.index, self.idf)
        scores = np.asarray(matrix @ self.coef, dtype=np.float64) + self.intercept
        return platt(scores, self.platt_a, self.platt_b)

    def predict(self, text: str) -> list[LearnedHit]:
        """Labels whose probability reaches their threshold, most probable first, with their evidence."""
        return list(self.assess(text).hits)

    def assess(self, text: str, skip: Container[TagKey] = (), normalised: str | None = None) -> Assessment:
        """The suggested labels (most probable first, with evidence) and the labels held back.

        Labels in `skip` (already suggested by other means) are never returned as hits, which spares
        working out their evidence. `normalised` spares normalising again (see `prepared`).
        """
        norm = prepared(text, normalised)
        scored = self._short(norm) if len(norm) <= SHORT_TEXT else self._long(norm)
        if scored is None:
            return Assessment()
        scores, scale, evidence = scored
        hits: list[LearnedHit] = []
        held: list[TagKey] = []
        for label, (score, (intercept, a, b, suggest_at, veto_below)) in enumerate(
            zip(scores, self._decide, strict=True)
        ):
            z = a * (score * scale + intercept) + b
            if z >= suggest_at:
                if self.labels[label] in skip:
                    continue
                hits.append(LearnedHit(*self.labels[label], round(_sigmoid(z), 3), _stretches(norm, evidence(label))))
            elif z < veto_below:
                held.append(self.labels[label])
        hits.sort(key=lambda h: -h.probability)
        return Assessment(tuple(hits), frozenset(held))

    def assess_many(
        self,
        texts: Sequence[str],
        skips: Sequence[Container[TagKey]] | None = None,
        normaliseds: Sequence[str | None] | None = None,
    ) -> list[Assessment]:
        """`assess` of every text (same hits, probabilities, evidence and hold-backs), numpy's fixed costs paid
        once per batch: the texts' n-grams are keyed, looked up, counted and scored together."""
        norms = [prepared(t, n) for t, n in zip(texts, normaliseds or [None] * len(texts), strict=True)]
        out: list[Assessment] = []
        start = 0
        while start < len(norms):  # batches of bounded size, so a run of very long texts costs bounded memory
            end, chars = start + 1, len(norms[start])
            while end < len(norms) and chars + len(norms[end]) <= BATCH_CHARS:
                chars += len(norms[end])
                end += 1
            out += self._assess_batch(norms[start:end], skips[start:end] if skips is not None else None)
            start = end
        return out

    def _assess_batch(self, norms: Sequence[str], skips: Sequence[Container[TagKey]] | None) -> list[Assessment]:
        """`assess_many` for texts short enough together to be read in one pass."""
        out = [Assessment()] * len(norms)
        docs, rows, counts = _batch_rows(norms, self._bounded)
        if not rows.size:
            return out
        # `_long`'s weights and pushes, text by text: the rows of each text are distinct and sorted, as there.
        weights = (1.0 + np.log(counts)) * self._idf[rows]
        pushes = weights[:, None] * self._coef[rows]  # (n-grams, labels)
        starts = np.flatnonzero(np.diff(docs, prepend=-1))  # each text's first n-gram
        scores = np.add.reduceat(pushes, starts, axis=0)
        scales = 1.0 / np.sqrt(np.add.reduceat(weights * weights, starts))
        intercept, a, b, suggest_at, veto_below = self._decide_arrays
        z = a * (scores * scales[:, None] + intercept) + b
        hit = z >= suggest_at
        texts = docs[starts].tolist()
        held: dict[int, frozenset[TagKey]] = {}
        sets: dict[tuple[bool, ...], frozenset[TagKey]] = {}  # a batch holds back the same few sets over and over
        for text, row in zip(texts, (~hit & (z < veto_below)).tolist(), strict=True):
            if any(row):
                key = tuple(row)
                if key not in sets:
                    sets[key] = frozenset(label for label, on in zip(self.labels, row, strict=True) if on)
                held[text] = sets[key]
        found, labels = np.nonzero(hit)
        pairs = [
            (at, label)
            for at, label in zip(found.tolist(), labels.tolist(), strict=True)
            if skips is None or self.labels[label] not in skips[texts[at]]
        ]
        hits: dict[int, list[LearnedHit]] = {}
        evidence = self._batch_evidence(pushes, rows, starts, pairs)
        for (at, label), pushed in zip(pairs, evidence, strict=True):
            text = texts[at]
            probability = round(_sigmoid(float(z[at, label])), 3)
            hits.setdefault(text, []).append(
                LearnedHit(*self.labels[label], probability, _stretches(norms[text], pushed))
            )
        for text in held.keys() | hits.keys():
            found_hits = hits.get(text, [])
            found_hits.sort(key=lambda h: -h.probability)
            out[text] = Assessment(tuple(found_hits), held.get(text, frozenset()))
        return out

    def _batch_evidence(
        self,
        pushes: NDArray[np.float64],
        rows: NDArray[np.int64],
        starts: NDArray[np.int64],
        pairs: list[tuple[int, int]],
    ) -> list[list[tuple[float, str]]]:
        """Per (text, label) pair, its strongest n-grams as `_long`'s evidence gives them, sorted all at once."""
        if not pairs:
            return []
        at, labels = (np.array(column, dtype=np.int64) for column in zip(*pairs, strict=True))
        lengths = np.diff(starts, append=rows.size)[at]
        firsts = np.cumsum(lengths) - lengths  # where each pair's n-grams begin among all pairs' n-grams
        entries = np.repeat(starts[at] - firsts, lengths) + np.arange(int(lengths.sum()))
        pushed = pushes[entries, np.repeat(labels, lengths)]
        grams = rows[entries]
        group = np.repeat(np.arange(len(pairs)), lengths)
        order = np.lexsort((grams, -pushed, group))  # per pair: strongest first, ties broken by n-gram, as `_long`
        keep = order[np.arange(order.size) - np.repeat(firsts, lengths) < EVIDENCE_TOKENS]
        vocabulary = self._sorted_vocabulary
        flat = list(zip(pushed[keep].tolist(), [vocabulary[row] for row in grams[keep].tolist()], strict=True))
        out: list[list[tuple[float, str]]] = []
        begin = 0
        for size in np.minimum(lengths, EVIDENCE_TOKENS).tolist():
            out.append(flat[begin : begin + size])
            begin += size
        return out

    def _short(self, norm: str) -> Scored | None:
        """`_long` by dictionary look-ups and plain floats: for a short message, numpy's fixed cost per call
        outweighs the work, so it is called twice (one gather, one product) instead of a dozen times."""
        get, idf = self._rows.get, self._idf_list
        rows: list[int] = []
        weights: list[float] = []
        for gram, count in Counter(gram_texts(norm)).items():
            row = get(gram)
            if row is not None:
                rows.append(row)
                weights.append(idf[row] if count == 1 else (1.0 + math.log(count)) * idf[row])
        if not rows:
            return None
        coef = self._coef[rows]  # (n-grams, labels)
        vocabulary = self._sorted_vocabulary

        def evidence(label: int) -> list[tuple[float, str]]:
            pushes = zip(map(mul, weights, coef[:, label].tolist()), map(neg, rows), strict=True)
            return [(push, vocabulary[-row]) for push, row in heapq.nlargest(EVIDENCE_TOKENS, pushes)]

        return np.dot(weights, coef).tolist(), 1.0 / (math.hypot(*weights) or 1.0), evidence

    def _long(self, norm: str) -> Scored | None:
        """(score of every label before its intercept, the L2 scale of the message's tf × idf, its evidence),
        or None when the model knows none of its n-grams; n-grams found by one binary search over sorted keys."""
        keys = gram_keys(norm)
        if not keys.size:
            return None
        keys.sort()
        at = np.searchsorted(self._bounded, keys)
        at = at[self._bounded[at] == keys]  # sorted: repeats of an n-gram sit side by side
        if not at.size:
            return None
        first = np.empty(at.size, dtype=bool)
        first[0] = True
        np.not_equal(at[1:], at[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        rows = at[starts]
        weights = (1.0 + np.log(np.diff(starts, append=at.size))) * self._idf[rows]
        coef = self._coef[rows]
        vocabulary = self._sorted_vocabulary

        def evidence(label: int) -> list[tuple[float, str]]:
            pushes = weights * coef[:, label]
            top = np.lexsort((rows, -pushes))[:EVIDENCE_TOKENS]  # ties broken by n-gram, as `_short` does
            return [(push, vocabulary[row]) for push, row in zip(pushes[top].tolist(), rows[top].tolist(), strict=True)]

        return (weights @ coef).tolist(), 1.0 / (float(np.sqrt(weights @ weights)) or 1.0), evidence


# (score of every label before intercept and scale, the scale, the strongest pushes up for a label)
Scored = tuple[list[float], float, Callable[[int], list[tuple[float, str]]]]

SHORT_TEXT = 40  # characters of prepared text up to which `_short` reads a message (measured: cheaper below)
BATCH_CHARS = 1 << 16  # prepared characters `assess_many` reads in one numpy pass (bounds its memory)


def _batch_rows(norms: Sequence[str], bounded: Keys) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(text, row of the sorted vocabulary, occurrences) of every known n-gram of every text, by text then row.

    The texts are joined by a separator that is no feature character, so no n-gram spans two texts.
    """
    lengths = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
    keys, at = gram_positions(SEPARATOR.join(norms))
    doc_of = np.repeat(np.arange(len(norms), dtype=np.int64), lengths + 1)
    rows = np.searchsorted(bounded, keys)
    found = bounded[rows] == keys
    size = bounded.size
    codes, counts = np.unique(doc_of[at[found]] * size + rows[found], return_counts=True)
    docs, rows = np.divmod(codes, size)
    return docs, rows, counts


SEPARATOR = "\n"  # between the texts of a batch: not a feature character, so n-grams stop at it


def _logit(p: float) -> float:
    """The Platt argument at which the calibrated probability reaches `p` (±inf outside (0, 1))."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


def _sigmoid(z: float) -> float:
    """`platt`'s probability for one Platt argument (clipped alike)."""
    return 1.0 / (1.0 + math.exp(-min(50.0, max(-50.0, z))))


def _stretches(norm: str, pushes: Sequence[tuple[float, str]]) -> tuple[str, ...]:
    """The stretches of the message whose n-grams pushed a label up most (overlapping n-grams merged), from
    its strongest n-grams, strongest first."""
    spans: list[tuple[int, int, float]] = []
    for weight, token in pushes:
        if weight <= 0:
            break
        at = norm.find(token)
        if at >= 0:
            spans.append((at, at + len(token), weight))
    if not spans:
        return ()
    spans.sort()
    merged: list[tuple[int, int, float]] = []
    start, end, weight = spans[0]
    for next_start, next_end, next_weight in spans[1:]:
        if next_start <= end:
            end = max(end, next_end)
            weight += next_weight
        else:
            merged.append((start, end, weight))
            start, end, weight = next_start, next_end, next_weight
    merged.append((start, end, weight))
    # A lone character says little beside a longer stretch; it is shown only when nothing longer drove the label.
    longer = [m for m in merged if m[1] - m[0] > 1] or merged
    longer.sort(key=itemgetter(2), reverse=True)  # stable: equal weights keep their order in the message
    return tuple(norm[a:b] for a, b, _ in longer[:EVIDENCE_WORDS])
