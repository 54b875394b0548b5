"""One suggestion stream: keyword suggestions merged per tag with the learned model's, and the model in use.

Per tag the keyword suggestion wins (it carries the taxonomy's own evidence and may auto-apply); a learned
suggestion is added for a tag the keywords missed, always as `suggest` (never auto-applied), with the words
that drove the model as its evidence. In an exclusive dimension a learned tag is not added beside a keyword one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from core.learning.ports import LearningStore
from learning.model import LearnedModel
from learning.serial import ModelFormatError, load
from tagging.normaliser import name_key
from tagging.suggestion import Suggestion
from tagging.taxonomy import TagDef, Taxonomy

log = logging.getLogger(__name__)

EXCERPT_CHARS = 60


class KeywordSource(Protocol):
    def suggest(self, text: str) -> Sequence[Suggestion]: ...


class MergedSuggester:
    """Keyword matcher + learned model over one taxonomy; `suggest` is what every flow calls."""

    def __init__(self, keywords: KeywordSource, model: LearnedModel | None, taxonomy: Taxonomy) -> None:
        self.keywords = keywords
        self.model = model
        self.taxonomy = taxonomy
        self._tags: dict[tuple[str, str], TagDef] = {(t.dimension, name_key(t.name)): t for t in taxonomy.iter_tags()}

    def suggest(self, text: str) -> list[Suggestion]:
        """Keyword suggestions, then learned ones for tags the keywords did not find."""
        found = list(self.keywords.suggest(text))
        if self.model is None or not text.strip():
            return found
        have = {(s.dimension, name_key(s.tag)) for s in found}
        taken = {s.dimension for s in found}
        for hit in self.model.predict(text):
            key = (hit.dimension, name_key(hit.tag))
            tag = self._tags.get(key)
            dimension = self.taxonomy.dimension(hit.dimension)
            if tag is None or dimension is None or key in have:
                continue  # a tag no longer in the taxonomy, or one the keywords already found
            if dimension.exclusive and hit.dimension in taken:
                continue
            taken.add(hit.dimension)
            have.add(key)
            excerpt = text.strip()[:EXCERPT_CHARS]
            found.append(
                Suggestion(tag.name, dimension.key, hit.evidence, hit.probability, "suggest", excerpt, "learned")
            )
        return found


def merged(keywords: KeywordSource | None, cell: ModelCell, taxonomy: Taxonomy) -> KeywordSource | None:
    """The suggestion source for this moment (None while the keyword matcher is still loading).

    Without a model it is the keyword matcher itself; the merged suggester is built once per
    (matcher, model, taxonomy) and reused.
    """
    if keywords is None or cell.model is None:
        return keywords
    key = (id(keywords), id(cell.model), id(taxonomy))
    cached = cell.merged
    if cached is not None and cached[0] == key:
        return cached[1]
    source = MergedSuggester(keywords, cell.model, taxonomy)
    cell.merged = (key, source)
    return source


class ModelCell:
    """The learned model in use in this process; `refresh` loads a newer stored one (every replica polls)."""

    def __init__(self) -> None:
        self.model: LearnedModel | None = None
        self.version: int | None = None
        self.seen: int | None = None  # the newest version looked at, usable or not
        self.merged: tuple[tuple[int, int, int], MergedSuggester] | None = None

    async def refresh(self, store: LearningStore) -> bool:
        """Load the newest stored model if it changed; a corrupt or mismatched one is ignored with a warning."""
        newest = await store.latest_model_version()
        if newest is None or newest == self.seen:
            return False
        stored = await store.latest_model()
        if stored is None or stored.arrays is None:
            return False
        self.seen = stored.version
        try:
            model = await asyncio.to_thread(load, stored.meta, stored.arrays)
        except ModelFormatError as exc:
            log.warning(
                "learned model %d ignored: %s; %s",
                stored.version,
                exc,
                f"model {self.version} stays in use" if self.model else "keyword suggestions carry on alone",
            )
            return False
        self.model, self.version = model, stored.version
        log.info("learned model %d in use (%d tags)", stored.version, len(model.labels))
        return True
