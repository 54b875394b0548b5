"""Training: one linear SVM per tag over shared features, Platt-calibrated on out-of-fold scores (k folds;
one held-out fifth for large tags), with each tag's cross-validated precision and recall at its threshold.

A tag is enabled (gets learned suggestions) only with enough labelled texts and positives and a
cross-validated precision of at least `min_precision` at a threshold no lower than `threshold`. Its veto
level (below which its keyword suggestions are held back) is the highest that would have held back at most
`veto_recall_cost` of its positives out of fold. Tags are fitted in parallel threads (liblinear releases
the GIL); a tag calibrated on a held-out fifth keeps the classifier fitted on the other four fifths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.svm import LinearSVC

from learning.features import Keys, gram_keys, key_text, prepared
from learning.model import KeyIndex, LearnedModel, TagKey, TagMetrics, platt, vectorise

log = logging.getLogger(__name__)

THRESHOLD_STEP = 0.05
VETO_LEVELS = (0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.02)  # tried highest first


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """What "enough" means and how hard the classifiers fit."""

    min_examples: int = 30  # labelled texts for a tag (positive or negative)
    min_positives: int = 10
    min_precision: float = 0.8  # cross-validated, at the chosen threshold
    threshold: float = 0.5  # lowest probability that suggests; raised per tag until precision holds
    folds: int = 3
    holdout_above: int = 20_000  # a tag with more labelled texts is calibrated on one held-out fifth
    min_df: int = 2  # a feature must occur in this many texts
    max_features: int = 200_000
    c: float = 0.5  # inverse regularisation strength of the SVM
    veto_recall_cost: float = 0.05  # share of a tag's true hits its veto may hold back (0: no veto)
    workers: int = 0  # parallel fits; 0: one per core (at most 4)


Fit = tuple[NDArray[np.float64], float, float, float, float, float]  # coef, intercept, platt a, b, threshold, veto


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One text and its explicit labels (True: the tag applies, False: it does not)."""

    text: str
    labels: Mapping[TagKey, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    """The model (None when no tag qualified) and every tag's metrics."""

    model: LearnedModel | None
    metrics: tuple[TagMetrics, ...]
    texts: int

    @property
    def lacking(self) -> tuple[TagMetrics, ...]:
        """Tags that did not qualify, with the reason."""
        return tuple(m for m in self.metrics if not m.enabled)


def label_vector(data: Sequence[LabelledText], key: TagKey) -> NDArray[np.int8]:
    """Per text: 1 positive, 0 negative, -1 unlabelled for `key`.

    An explicit label wins; a text positive for some other tag but silent on this one is a negative
    (one-vs-rest); a text with no positive label at all and no word on this tag stays unlabelled.
    """
    out = np.full(len(data), -1, dtype=np.int8)
    for i, item in enumerate(data):
        explicit = item.labels.get(key)
        if explicit is not None:
            out[i] = 1 if explicit else 0
        elif any(item.labels.values()):
            out[i] = 0
    return out


CHUNK = 5_000  # texts handled at once while counting and vectorising: bounds the memory of large trainings


def _document_frequencies(key_arrays: Sequence[Keys]) -> tuple[Keys, NDArray[np.int64]]:
    """Every distinct key of these texts and the number of texts it occurs in."""
    lengths = np.fromiter((k.size for k in key_arrays), dtype=np.int64, count=len(key_arrays))
    keys = np.concatenate(key_arrays) if key_arrays else np.zeros(0, dtype=np.uint64)
    docs = np.repeat(np.arange(len(key_arrays), dtype=np.int32), lengths)
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    first = np.ones(keys.shape, dtype=bool)  # the first occurrence of a key in a text
    first[1:] = (keys[1:] != keys[:-1]) | (docs[1:] != docs[:-1])
    return np.unique(keys[first], return_counts=True)


def build_vocabulary(key_arrays: Sequence[Keys], config: TrainingConfig) -> tuple[Keys, NDArray[np.float32]]:
    """N-gram keys seen in at least `min_df` texts (the most frequent `max_features`) and their smoothed idf."""
    parts = [_document_frequencies(key_arrays[i : i + CHUNK]) for i in range(0, len(key_arrays), CHUNK)]
    if not parts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32)
    unique, inverse = np.unique(np.concatenate([keys for keys, _ in parts]), return_inverse=True)
    df = np.bincount(inverse, weights=np.concatenate([n for _, n in parts]), minlength=unique.size).astype(np.int64)
    keep = df >= config.min_df
    unique, df = unique[keep], df[keep]
    ranked = np.lexsort((unique, -df))[: config.max_features]  # most frequent first, then by key
    n_docs = len(key_arrays)
    idf = (np.log((1.0 + n_docs) / (1.0 + df[ranked].astype(np.float64))) + 1.0).astype(np.float32)
    return unique[ranked], idf


def choose_threshold(
    probs: NDArray[np.float64], y: NDArray[np.int8], config: TrainingConfig
) -> tuple[float, float, float] | None:
    """The lowest threshold ≥ config.threshold whose precision reaches min_precision: (t, precision, recall)."""
    positives = int(y.sum())
    step = 0
    while (t := round(config.threshold + step * THRESHOLD_STEP, 4)) < 1.0:
        predicted = probs >= t
        if predicted.any():
            hits = int((predicted & (y == 1)).sum())
            precision = hits / int(predicted.sum())
            if precision >= config.min_precision:
                return t, precision, hits / positives if positives else 0.0
        step += 1
    return None


def choose_veto(probs: NDArray[np.float64], y: NDArray[np.int8], config: TrainingConfig) -> float:
    """The highest veto level that holds back at most `veto_recall_cost` of the positives (0.0: none)."""
    positives = probs[y == 1]
    if config.veto_recall_cost <= 0 or not positives.size:
        return 0.0
    for level in VETO_LEVELS:
        if float((positives < level).mean()) <= config.veto_recall_cost:
            return level
    return 0.0


def _classifier(config: TrainingConfig) -> LinearSVC:
    return LinearSVC(C=config.c, max_iter=2000)


def _calibrate(scores: NDArray[np.float64], y: NDArray[np.int8]) -> tuple[float, float]:
    """Platt scaling: a sigmoid fitted to out-of-fold scores (a, b of sigmoid(a·score + b))."""
    fit = LogisticRegression(C=1e4, solver="lbfgs").fit(scores.reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _train_tag(
    matrix: sparse.csr_matrix, y: NDArray[np.int8], key: TagKey, config: TrainingConfig
) -> tuple[TagMetrics, Fit | None]:
    """Metrics for one tag and, when it qualifies, (coef, intercept, platt a, platt b, threshold)."""
    labelled = np.flatnonzero(y >= 0)
    yl = y[labelled]
    examples, positives = len(labelled), int(yl.sum())
    negatives = examples - positives
    dimension, tag = key
    if examples < config.min_examples or positives < config.min_positives or negatives < config.folds:
        reason = (
            f"too few examples: {examples} labelled ({positives} positive); needs at least "
            f"{config.min_examples} labelled and {config.min_positives} positive"
        )
        return TagMetrics(dimension, tag, examples, positives, False, reason), None
    x = matrix[labelled]
    if examples > config.holdout_above:
        splits = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
    else:
        splits = StratifiedKFold(n_splits=min(config.folds, positives, negatives), shuffle=True, random_state=0)
    scored = np.zeros(examples, dtype=bool)
    oof = np.zeros(examples, dtype=np.float64)
    held_out: LinearSVC | None = None
    for train, test in splits.split(np.zeros(examples), yl):
        held_out = _classifier(config).fit(x[train], yl[train])
        oof[test] = held_out.decision_function(x[test])
        scored[test] = True
    oof, yl_scored = oof[scored], yl[scored]
    a, b = _calibrate(oof, yl_scored)
    chosen = choose_threshold(platt(oof, a, b), yl_scored, config)
    if chosen is None:
        reason = f"cross-validated precision stays below {config.min_precision:.2f} at every threshold"
        return TagMetrics(dimension, tag, examples, positives, False, reason), None
    threshold, precision, recall = chosen
    veto = choose_veto(platt(oof, a, b), yl_scored, config)
    # Four fifths of a large tag is plenty; refitting on all of it would double the cost for nothing.
    final = held_out if examples > config.holdout_above and held_out is not None else _classifier(config).fit(x, yl)
    metrics = TagMetrics(
        dimension, tag, examples, positives, True, "ok", threshold, round(precision, 4), round(recall, 4), veto
    )
    return metrics, (final.coef_[0].astype(np.float64), float(final.intercept_[0]), a, b, threshold, veto)


def train(data: Sequence[LabelledText], tags: Sequence[TagKey], config: TrainingConfig) -> TrainingOutcome:
    """Train every tag of `tags` on `data`; the model holds only the tags that qualified."""
    key_arrays = [gram_keys(prepared(item.text)) for item in data]
    keys, idf = build_vocabulary(key_arrays, config)
    vocabulary = [key_text(int(k)) for k in keys]
    index = KeyIndex(keys)
    matrix = sparse.vstack(
        [vectorise(key_arrays[i : i + CHUNK], index, idf) for i in range(0, len(key_arrays), CHUNK)], format="csr"
    )
    del key_arrays, index  # the matrix holds all the fitting needs
    workers = config.workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda key: _train_tag(matrix, label_vector(data, key), key, config), tags))
    metrics = [tag_metrics for tag_metrics, _ in results]
    fitted = [(key, fit) for key, (_, fit) in zip(tags, results, strict=True) if fit is not None]
    log.info("trained on %d texts: %d of %d tags qualified", len(data), len(fitted), len(tags))
    if not fitted or not vocabulary:
        return TrainingOutcome(None, tuple(metrics), len(data))
    model = LearnedModel(
        labels=[key for key, _ in fitted],
        vocabulary=vocabulary,
        idf=idf,
        coef=np.stack([fit[0] for _, fit in fitted], axis=1).astype(np.float32),
        intercept=np.asarray([fit[1] for _, fit in fitted], dtype=np.float64),
        platt_a=np.asarray([fit[2] for _, fit in fitted], dtype=np.float64),
        platt_b=np.asarray([fit[3] for _, fit in fitted], dtype=np.float64),
        thresholds=np.asarray([fit[4] for _, fit in fitted], dtype=np.float64),
        veto=np.asarray([fit[5] for _, fit in fitted], dtype=np.float64),
    )
    return TrainingOutcome(model, tuple(metrics), len(data))
