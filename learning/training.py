"""Training: one linear SVM per tag over shared features, Platt-calibrated on out-of-fold scores (k folds;
one held-out fifth for large tags), with each tag's cross-validated precision and recall at its threshold.

A tag is enabled (gets learned suggestions) only with enough labelled texts and positives and a
cross-validated precision of at least `min_precision` at a threshold no lower than `threshold`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.svm import LinearSVC

from learning.features import tokens
from learning.model import LearnedModel, TagKey, TagMetrics, platt, vectorise

log = logging.getLogger(__name__)

THRESHOLD_STEP = 0.05


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


def build_vocabulary(
    token_lists: Sequence[Sequence[str]], config: TrainingConfig
) -> tuple[list[str], NDArray[np.float32]]:
    """Tokens seen in at least `min_df` texts (the most frequent `max_features`) and their smoothed idf."""
    df: Counter[str] = Counter()
    for toks in token_lists:
        df.update(set(toks))
    kept = [(t, n) for t, n in df.items() if n >= config.min_df]
    kept.sort(key=lambda item: (-item[1], item[0]))
    kept = kept[: config.max_features]
    n_docs = len(token_lists)
    counts = np.asarray([n for _, n in kept], dtype=np.float64)
    idf = (np.log((1.0 + n_docs) / (1.0 + counts)) + 1.0).astype(np.float32)
    return [t for t, _ in kept], idf


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


def _classifier(config: TrainingConfig) -> LinearSVC:
    return LinearSVC(C=config.c, max_iter=2000)


def _calibrate(scores: NDArray[np.float64], y: NDArray[np.int8]) -> tuple[float, float]:
    """Platt scaling: a sigmoid fitted to out-of-fold scores (a, b of sigmoid(a·score + b))."""
    fit = LogisticRegression(C=1e4, solver="lbfgs").fit(scores.reshape(-1, 1), y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _train_tag(
    matrix: sparse.csr_matrix, y: NDArray[np.int8], key: TagKey, config: TrainingConfig
) -> tuple[TagMetrics, tuple[NDArray[np.float64], float, float, float, float] | None]:
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
    for train, test in splits.split(np.zeros(examples), yl):
        oof[test] = _classifier(config).fit(x[train], yl[train]).decision_function(x[test])
        scored[test] = True
    oof, yl_scored = oof[scored], yl[scored]
    a, b = _calibrate(oof, yl_scored)
    chosen = choose_threshold(platt(oof, a, b), yl_scored, config)
    if chosen is None:
        reason = f"cross-validated precision stays below {config.min_precision:.2f} at every threshold"
        return TagMetrics(dimension, tag, examples, positives, False, reason), None
    threshold, precision, recall = chosen
    final = _classifier(config).fit(x, yl)
    metrics = TagMetrics(
        dimension, tag, examples, positives, True, "ok", threshold, round(precision, 4), round(recall, 4)
    )
    return metrics, (final.coef_[0].astype(np.float64), float(final.intercept_[0]), a, b, threshold)


def train(data: Sequence[LabelledText], tags: Sequence[TagKey], config: TrainingConfig) -> TrainingOutcome:
    """Train every tag of `tags` on `data`; the model holds only the tags that qualified."""
    token_lists = [tokens(item.text) for item in data]
    vocabulary, idf = build_vocabulary(token_lists, config)
    index = {t: i for i, t in enumerate(vocabulary)}
    matrix = vectorise(token_lists, index, idf)
    metrics: list[TagMetrics] = []
    fitted: list[tuple[TagKey, tuple[NDArray[np.float64], float, float, float, float]]] = []
    for key in tags:
        tag_metrics, fit = _train_tag(matrix, label_vector(data, key), key, config)
        metrics.append(tag_metrics)
        if fit is not None:
            fitted.append((key, fit))
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
    )
    return TrainingOutcome(model, tuple(metrics), len(data))
