"""Engine quality on the labelled message set: precision and recall ≥ 0.97, better F1 than both baselines."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.tagging import Quality, engine_tagger, labelled, score, substring_tagger, token_tagger
from tagging.builtin import load_builtin
from tagging.matcher import Matcher


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, set[str]]]:
    return labelled()


@pytest.fixture(scope="module")
def engine(rows: list[tuple[str, set[str]]]) -> Quality:
    return score(engine_tagger(Matcher.build(load_builtin())), rows)


def test_labelled_set_is_large_and_varied(rows: list[tuple[str, set[str]]]) -> None:
    import json

    from bench.tagging import LABELLED

    notes = Counter(json.loads(line)["note"] for line in LABELLED.read_text(encoding="utf-8").splitlines())
    assert len(rows) >= 180
    assert set(notes) >= {
        "plain",
        "multi",
        "negation",
        "not-yet",
        "false-friend",
        "compound",
        "variant",
        "english",
        "chatter",
    }
    known = {tag.name for tag in load_builtin().iter_tags()}
    assert all(expected <= known for _, expected in rows)


def test_engine_precision_and_recall(engine: Quality) -> None:
    assert engine.precision >= 0.97, "\n".join(engine.errors)
    assert engine.recall >= 0.97, "\n".join(engine.errors)


def test_engine_beats_both_baselines(rows: list[tuple[str, set[str]]], engine: Quality) -> None:
    taxonomy = load_builtin()
    assert engine.f1 > score(substring_tagger(taxonomy), rows).f1
    assert engine.f1 > score(token_tagger(taxonomy), rows).f1
