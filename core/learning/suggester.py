"""One suggestion stream: keyword suggestions merged per tag with the learned model's, and the model in use.

Per tag the keyword suggestion wins (it carries the taxonomy's own evidence and may auto-apply); a learned
suggestion is added for a tag the keywords missed, always as `suggest` (never auto-applied), with the words
that drove the model as its evidence. In an exclusive dimension a learned tag is not added beside a keyword one.
A keyword suggestion (never an auto-applied one) of a tag the model holds back, because agents have rejected
messages like this one for it, is left out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from core.learning.ports import LearningStore
from learning.model import Assessment, LearnedModel, TagKey
from learning.serial import ModelFormatError, load
from tagging.matcher import MAX_MESSAGE_CHARS, Matcher
from tagging.normaliser import name_key, normalise
from tagging.suggestion import Suggestion
from tagging.taxonomy import Dimension, TagDef, Taxonomy

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
        by_key: dict[tuple[str, str], TagDef] = {(t.dimension, name_key(t.name)): t for t in taxonomy.iter_tags()}
        # Model labels resolved to the taxonomy's tags once, so a message costs no name normalisation.
        self._tags: dict[TagKey, tuple[TagDef, Dimension]] = {}
        self._labels: dict[tuple[str, str], TagKey] = {}  # (dimension, taxonomy tag name) → model label
        self._by_dimension: dict[str, list[TagKey]] = {}
        for label in model.labels if model is not None else ():
            tag = by_key.get((label[0], name_key(label[1])))
            dimension = taxonomy.dimension(label[0])
            if tag is not None and dimension is not None:  # else a tag no longer in the taxonomy
                self._tags[label] = (tag, dimension)
                self._labels[(tag.dimension, tag.name)] = label
                self._by_dimension.setdefault(dimension.key, []).append(label)

    def suggest(self, text: str) -> list[Suggestion]:
        """Keyword suggestions not held back, then learned ones for tags the keywords did not find."""
        if self.model is None or not text.strip():
            return list(self.keywords.suggest(text))
        found, skip, normalised = self._keyword_pass(text)
        return self._merge(text, found, self.model.assess(text, skip, normalised))

    def suggest_many(self, texts: Sequence[str]) -> list[list[Suggestion]]:
        """`suggest` of every text, the model reading them all in one batch (its fixed costs paid once)."""
        model = self.model
        if model is None or len(texts) == 1:  # one text: `assess` reads a short one without numpy
            return [self.suggest(text) for text in texts]
        out: list[list[Suggestion]] = []
        pending: list[tuple[int, list[Suggestion]]] = []  # (index, keyword suggestions) of texts for the model
        skips: list[set[TagKey]] = []
        normaliseds: list[str | None] = []
        for text in texts:
            if not text.strip():
                out.append(list(self.keywords.suggest(text)))
                continue
            found, skip, normalised = self._keyword_pass(text)
            pending.append((len(out), found))
            skips.append(skip)
            normaliseds.append(normalised)
            out.append(found)
        assessments = model.assess_many([texts[i] for i, _ in pending], skips, normaliseds)
        for (index, found), assessment in zip(pending, assessments, strict=True):
            out[index] = self._merge(texts[index], found, assessment)
        return out

    def _keyword_pass(self, text: str) -> tuple[list[Suggestion], set[TagKey], str | None]:
        """(the keyword suggestions, the model labels they already cover, the normalised text if worked out)."""
        normalised: str | None = None
        if isinstance(self.keywords, Matcher):  # normalise once for both
            normalised = normalise(text[:MAX_MESSAGE_CHARS])
            found = self.keywords.suggest_normalised(text, normalised)
        else:
            found = list(self.keywords.suggest(text))
        # Labels the keywords already cover (the tag itself, or its exclusive dimension) need no evidence.
        skip: set[TagKey] = set()
        for s in found:
            label = self._labels.get((s.dimension, s.tag))
            if label is not None:
                skip.add(label)
            dimension = self.taxonomy.dimension(s.dimension)
            # A suggest-only keyword tag may still be held back, freeing its exclusive dimension.
            if dimension is not None and dimension.exclusive and s.action != "suggest":
                skip.update(self._by_dimension.get(s.dimension, ()))
        return found, skip, normalised

    def _merge(self, text: str, found: list[Suggestion], assessment: Assessment) -> list[Suggestion]:
        """The keyword suggestions the model does not hold back, then its hits for tags they did not find."""
        if assessment.held_back and found:
            held = {(t.dimension, t.name) for label in assessment.held_back if (t := self._tag(label)) is not None}
            found = [s for s in found if s.action != "suggest" or (s.dimension, s.tag) not in held]
        have = {(s.dimension, s.tag) for s in found}
        taken = {s.dimension for s in found}
        for hit in assessment.hits:
            resolved = self._tags.get((hit.dimension, hit.tag))
            if resolved is None:
                continue
            tag, dimension = resolved
            if (tag.dimension, tag.name) in have or (dimension.exclusive and dimension.key in taken):
                continue  # the keywords already found it, or its exclusive dimension is taken
            taken.add(dimension.key)
            have.add((tag.dimension, tag.name))
            excerpt = text.strip()[:EXCERPT_CHARS]
            found.append(
                Suggestion(tag.name, dimension.key, hit.evidence, hit.probability, "suggest", excerpt, "learned")
            )
        return found

    def _tag(self, label: TagKey) -> TagDef | None:
        resolved = self._tags.get(label)
        return resolved[0] if resolved is not None else None


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
