"""Training service: stored examples → learning.train → a new stored model, or the current one kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from core.learning.ports import LearningStore, NewExample
from learning.model import TagKey, TagMetrics
from learning.serial import FEATURES, dump
from learning.training import LabelledText, TrainingConfig, train
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What `kebiao learn train` prints: the new version (None: current kept), per-tag metrics."""

    version: int | None
    texts: int
    examples: int
    metrics: tuple[TagMetrics, ...]

    @property
    def enabled(self) -> tuple[TagMetrics, ...]:
        return tuple(m for m in self.metrics if m.enabled)

    @property
    def lacking(self) -> tuple[TagMetrics, ...]:
        return tuple(m for m in self.metrics if not m.enabled)


def labelled_texts(examples: Sequence[NewExample], taxonomy: Taxonomy) -> tuple[list[LabelledText], list[TagKey]]:
    """Examples grouped by text; the latest decision on a (text, tag) wins; tags outside `taxonomy` are left out."""
    tags = {(t.dimension, name_key(t.name)): (t.dimension, t.name) for t in taxonomy.iter_tags()}
    by_text: dict[str, dict[TagKey, bool]] = {}
    for example in examples:  # oldest first
        key = tags.get((example.dimension, name_key(example.tag)))
        if key is None:
            continue
        by_text.setdefault(example.text, {})[key] = example.positive
    data = [LabelledText(text, labels) for text, labels in by_text.items()]
    return data, list(tags.values())


async def train_model(store: LearningStore, taxonomy: Taxonomy, config: TrainingConfig, now: datetime) -> TrainReport:
    """Train on every stored example; store the model when at least one tag qualified."""
    examples = await store.examples()
    data, tags = labelled_texts(examples, taxonomy)
    if not data:
        metrics = tuple(TagMetrics(d, t, 0, 0, False, "no examples yet") for d, t in tags)
        return TrainReport(None, 0, len(examples), metrics)
    outcome = await asyncio.to_thread(train, data, tags, config)
    if outcome.model is None:
        log.info("training on %d texts: no tag qualified; the current model stays", len(data))
        return TrainReport(None, len(data), len(examples), outcome.metrics)
    meta, blob = await asyncio.to_thread(dump, outcome.model)
    version = await store.save_model(meta, blob, [m.to_json() for m in outcome.metrics], len(data), now)
    log.info("learned model %d stored: %d texts, %d tags enabled", version, len(data), len(outcome.model.labels))
    return TrainReport(version, len(data), len(examples), outcome.metrics)


async def train_if_due(
    store: LearningStore, taxonomy: Taxonomy, config: TrainingConfig, min_new: int, now: datetime
) -> TrainReport | None:
    """Train when at least `min_new` examples arrived since the newest model (or since the start), or when the
    newest model was made for other features (after an upgrade) and cannot be used."""
    latest = await store.latest_model(with_arrays=False)
    outdated = latest is not None and latest.meta.get("features") != FEATURES
    fresh = await store.count_examples(since=None if outdated or latest is None else latest.created_at)
    if fresh < (1 if outdated else min_new):
        return None
    return await train_model(store, taxonomy, config, now)
