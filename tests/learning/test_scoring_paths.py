"""learning: a message is scored the same whichever path reads its n-grams, and decided as its probability says.

Short messages look their n-grams up one by one (`gram_texts` and a dictionary), long ones with numpy
(`gram_keys` and a binary search); the two must give the same suggestions, probabilities, evidence and
hold-backs. Decisions are taken on the Platt argument rather than the probability; they must match what the
calibrated probabilities (`LearnedModel.probabilities`, the training path) say against thresholds and veto.
A batch (`assess_many`, for `kebiao suggest` and other streams of lines) must assess every text as `assess` does.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learning import model as model_module
from learning.features import gram_keys, gram_positions, gram_texts, key_text, prepared, text_key
from learning.model import Assessment, LearnedModel
from learning.training import LabelledText, TrainingConfig, train
from tagging.normaliser import normalise
from tests.learning.support import CHAT, PRICE, REPAIR, messages

PRICE_TAG = ("stage", "询价客户")
REPAIR_TAG = ("stage", "售后工单")

# Characters of the training phrases (so random texts hit the vocabulary), with spaces, punctuation, Latin,
# digits, masked data, traditional forms, full-width letters and characters outside the BMP.
_ALPHABET = sorted(set("".join(PRICE + REPAIR + CHAT))) + list(" ，。！？*aZ9Ｂ機😀𠀀\t")
texts = st.text(alphabet=st.sampled_from(_ALPHABET), max_size=120)


@pytest.fixture(scope="module")
def model() -> LearnedModel:
    data = [
        LabelledText(text, {PRICE_TAG: kind == "price", REPAIR_TAG: kind == "repair"}) for text, kind in messages(240)
    ]
    trained = train(data, [PRICE_TAG, REPAIR_TAG], TrainingConfig()).model
    assert trained is not None
    return trained


def _assess(model: LearnedModel, text: str, short_up_to: int) -> Assessment:
    saved = model_module.SHORT_TEXT
    model_module.SHORT_TEXT = short_up_to
    try:
        return model.assess(text)
    finally:
        model_module.SHORT_TEXT = saved


@given(texts)
def test_ngram_strings_are_the_ngram_keys(text: str) -> None:
    norm = prepared(text)
    assert Counter(map(text_key, gram_texts(norm))) == Counter(gram_keys(norm).tolist())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts)
def test_short_and_long_paths_assess_alike(model: LearnedModel, text: str) -> None:
    assert _assess(model, text, 10**6) == _assess(model, text, -1)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts)
def test_decisions_follow_the_calibrated_probabilities(model: LearnedModel, text: str) -> None:
    [probs] = model.probabilities([text]).tolist()
    assessment = model.assess(text)
    if not set(gram_texts(prepared(text))) & set(model.vocabulary):
        assert assessment == Assessment()  # nothing the model knows: it says nothing (nor holds anything back)
        return
    hits = {(h.dimension, h.tag): h.probability for h in assessment.hits}
    for label, p, threshold, veto in zip(model.labels, probs, model.thresholds, model.veto, strict=True):
        if abs(p - threshold) < 1e-9 or abs(p - veto) < 1e-9:
            continue  # on the line itself rounding may go either way
        assert (label in hits) == (p >= threshold), (label, p, threshold)
        if label in hits:
            assert hits[label] == pytest.approx(round(p, 3), abs=1e-3)
        assert (label in assessment.held_back) == (p < veto and p < threshold), (label, p, veto)


def test_both_paths_are_taken_by_the_real_messages(model: LearnedModel) -> None:
    short, long = "你好，能便宜一点吗", "你好，能便宜一点吗" * 8
    assert len(prepared(short)) <= model_module.SHORT_TEXT < len(prepared(long))
    assert [h.tag for h in model.assess(short).hits] == [PRICE_TAG[1]]
    assert [h.tag for h in model.assess(long).hits] == [PRICE_TAG[1]]
    assert model.assess("").hits == () and model.assess("😀 ***").hits == ()


# A text of the batch: random characters, a masked phone number or name, or a very long repetition.
batch_texts = st.one_of(
    texts,
    st.builds(lambda a, b: f"{a}138****5678{b}", texts, texts),
    st.builds(lambda a, n: a * n, texts, st.integers(min_value=1, max_value=300)),
)
labels = st.sampled_from([PRICE_TAG, REPAIR_TAG, ("stage", "其他")])


@given(texts)
def test_ngram_positions_are_where_the_ngrams_start(text: str) -> None:
    norm = prepared(text)
    keys, at = gram_positions(norm)
    assert keys.tolist() == gram_keys(norm).tolist()
    grams = [key_text(k) for k in keys.tolist()]
    assert [norm[i : i + len(g)] for g, i in zip(grams, at.tolist(), strict=True)] == grams


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(batch_texts, st.frozensets(labels), st.booleans()), max_size=40))
def test_a_batch_assesses_every_text_as_alone(model: LearnedModel, batch: list[tuple[str, frozenset, bool]]) -> None:
    texts_ = [text for text, _, _ in batch]
    skips = [skip for _, skip, _ in batch]
    normaliseds = [normalise(text[:20_000]) if given_ else None for text, _, given_ in batch]
    expected = [model.assess(text, skip, norm) for text, skip, norm in zip(texts_, skips, normaliseds, strict=True)]
    assert model.assess_many(texts_, skips, normaliseds) == expected
    assert model.assess_many(texts_) == [model.assess(text) for text in texts_]


def test_a_batch_is_read_in_passes_of_bounded_size(model: LearnedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = [text for text, _ in messages(60)] + ["", "😀 ***", "你好，能便宜一点吗" * 400]
    expected = [model.assess(text) for text in batch]
    assert model.assess_many(batch) == expected
    monkeypatch.setattr(model_module, "BATCH_CHARS", 30)  # a pass per few texts, one for a text longer than that
    assert model.assess_many(batch) == expected
    assert [h.tag for h in expected[-1].hits] == [PRICE_TAG[1]]
    assert sum(bool(a.hits) for a in expected) > 20  # the batch is not all misses
    assert model.assess_many([]) == []
