"""learning: training, calibrated inference with evidence, and (de)serialisation that refuses anything odd."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from learning import serial
from learning.features import key_text, text_key, tokens, words
from learning.model import TagMetrics
from learning.serial import ModelFormatError
from learning.training import LabelledText, TrainingConfig, choose_threshold, choose_veto, label_vector, train
from tests.learning.support import messages

PRICE = ("stage", "询价客户")
REPAIR = ("stage", "售后工单")
RARE = ("value", "VIP客户")


def _data(count: int = 240) -> list[LabelledText]:
    return [
        LabelledText(text, {PRICE: kind == "price", REPAIR: kind == "repair", RARE: False})
        for text, kind in messages(count)
    ]


def test_features_are_character_ngrams_inside_meaningful_runs_without_masked_data() -> None:
    assert "便宜" in words("能便宜一点吗？")  # whole words stay for keyword discovery
    toks = tokens("能便宜点吗 ***")
    assert {"便", "便宜", "宜点", "便宜点", "能便宜"} <= set(toks)
    assert not any("*" in t or " " in t for t in toks)
    # N-grams never straddle punctuation or spaces; Latin text is folded to lower case; emoji carry nothing.
    assert not {"格，", "格便", "，便"} & set(tokens("价格，便宜"))
    assert {"ok", "k了"} <= set(tokens("OK了😀"))
    assert not any("😀" in t for t in tokens("OK了😀"))


def test_ngram_keys_round_trip() -> None:
    for gram in ("便", "便宜", "便宜点", "a", "9z", "豈"):
        assert key_text(text_key(gram)) == gram
    assert len({text_key(g) for g in ("a", "aa", "aaa", "b")}) == 4


def test_veto_level_costs_at_most_the_allowed_share_of_true_hits() -> None:
    y = np.asarray([1] * 20 + [0] * 20, dtype=np.int8)
    probs = np.concatenate((np.linspace(0.12, 0.99, 20), np.linspace(0.0, 0.4, 20)))
    # One positive in twenty (5 %) sits below 0.15: 0.15 is the highest level that holds back no more.
    assert choose_veto(probs, y, TrainingConfig()) == 0.15
    assert choose_veto(probs, y, TrainingConfig(veto_recall_cost=0.0)) == 0.0
    assert choose_veto(np.zeros(40), y, TrainingConfig()) == 0.0


def test_tags_with_data_qualify_and_others_say_what_they_lack() -> None:
    outcome = train(_data(), [PRICE, REPAIR, RARE], TrainingConfig())
    by_tag = {(m.dimension, m.tag): m for m in outcome.metrics}
    assert by_tag[PRICE].enabled and by_tag[REPAIR].enabled
    precision = by_tag[PRICE].precision
    assert precision is not None and precision >= 0.8
    assert not by_tag[RARE].enabled and "0 positive" in by_tag[RARE].reason
    assert outcome.model is not None and set(outcome.model.labels) == {PRICE, REPAIR}
    [hit] = outcome.model.predict("请问这个怎么卖，能便宜一点吗")
    assert (hit.dimension, hit.tag) == PRICE and 0.5 <= hit.probability <= 1.0
    assert hit.evidence and all(part in "请问这个怎么卖，能便宜一点吗" for part in hit.evidence)
    assert any(len(part) > 1 for part in hit.evidence)
    assert outcome.model.predict("好的收到，谢谢") == []


def test_too_few_examples_gives_no_model() -> None:
    outcome = train(_data(12), [PRICE, REPAIR], TrainingConfig())
    assert outcome.model is None
    assert all("too few examples" in m.reason for m in outcome.lacking)


def test_a_text_positive_for_another_tag_is_a_negative_unless_labelled() -> None:
    data = [LabelledText("a", {PRICE: True}), LabelledText("b", {REPAIR: False}), LabelledText("c", {REPAIR: True})]
    assert label_vector(data, REPAIR).tolist() == [0, 0, 1]
    assert label_vector(data, PRICE).tolist() == [1, -1, 0]


def test_threshold_is_raised_until_precision_holds() -> None:
    probs = np.array([0.9, 0.8, 0.7, 0.6, 0.55])
    y = np.array([1, 1, 0, 1, 0], dtype=np.int8)
    assert choose_threshold(probs, y, TrainingConfig(min_precision=0.8)) == (0.75, 1.0, 2 / 3)
    assert choose_threshold(probs, np.zeros(5, dtype=np.int8), TrainingConfig()) is None


def test_round_trip_keeps_every_prediction() -> None:
    model = train(_data(), [PRICE, REPAIR], TrainingConfig()).model
    assert model is not None
    meta, blob = serial.dump(model)
    json.dumps(meta)  # metadata is plain JSON
    again = serial.load(meta, blob)
    texts = ["能便宜一点吗", "屏幕一直闪怎么办", "你好"]
    assert np.allclose(model.probabilities(texts), again.probabilities(texts))
    assert again.labels == model.labels and again.vocabulary == model.vocabulary


def test_metrics_survive_json() -> None:
    m = TagMetrics("stage", "询价客户", 40, 12, True, "ok", 0.55, 0.9, 0.7)
    assert TagMetrics.from_json(json.loads(json.dumps(m.to_json()))) == m
    with pytest.raises(ValueError, match="examples"):
        TagMetrics.from_json({**m.to_json(), "examples": "many"})


@pytest.fixture(scope="module")
def stored() -> tuple[dict[str, object], bytes]:
    model = train(_data(), [PRICE, REPAIR], TrainingConfig()).model
    assert model is not None
    return serial.dump(model)


def _with_checksum(meta: dict[str, object], blob: bytes) -> dict[str, object]:
    import hashlib

    return {**meta, "sha256": hashlib.sha256(blob).hexdigest()}


def test_a_flipped_byte_is_refused(stored: tuple[dict[str, object], bytes]) -> None:
    meta, blob = stored
    broken = bytearray(blob)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(ModelFormatError, match="checksum"):
        serial.load(meta, bytes(broken))


def test_other_features_or_format_are_refused(stored: tuple[dict[str, object], bytes]) -> None:
    meta, blob = stored
    with pytest.raises(ModelFormatError, match="retrain"):
        serial.load({**meta, "features": "hashing/v0"}, blob)
    with pytest.raises(ModelFormatError, match="format"):
        serial.load({**meta, "format": 2}, blob)
    with pytest.raises(ModelFormatError, match="not a \\[dimension, tag\\] pair"):
        serial.load({**meta, "labels": [["stage"]]}, blob)


def test_a_pickled_array_is_never_loaded(stored: tuple[dict[str, object], bytes]) -> None:
    """An object array (which np.load could only read by unpickling) is refused, checksum or not."""
    meta, _ = stored
    buffer = io.BytesIO()
    arrays = {name: np.zeros(1, dtype=dtype) for name, dtype in serial._ARRAYS.items()}
    arrays["coef"] = np.array([{"run": "code"}], dtype=object)
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    blob = buffer.getvalue()
    with pytest.raises(ModelFormatError, match="cannot be read"):
        serial.load(_with_checksum(meta, blob), blob)


def test_wrong_shapes_and_non_finite_numbers_are_refused(stored: tuple[dict[str, object], bytes]) -> None:
    meta, blob = stored
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    shaped = dict(arrays, thresholds=np.zeros(5))
    bad_nan = dict(arrays, idf=np.full_like(arrays["idf"], np.nan))
    for changed, reason in ((shaped, "shape"), (bad_nan, "non-finite")):
        buffer = io.BytesIO()
        np.savez(buffer, **changed)  # type: ignore[arg-type]
        data = buffer.getvalue()
        with pytest.raises(ModelFormatError, match=reason):
            serial.load(_with_checksum(meta, data), data)
