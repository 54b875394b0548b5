"""Hostile input costs bounded work: linear-time patterns, bounded windows, clean errors from the parsers.

Work is measured by counting, never by the clock: Python-level calls seen by a profiler hook (a quadratic
scan shows up as calls growing with the square of the input), or the size of what reaches a step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import tagging.matcher as matcher_module
from bots.teams.bot import strip_mentions
from cards.text import MAX_ESCAPE_CHARS, escape
from tagging.builtin import load_builtin
from tagging.loader import MAX_YAML_NODES, TaxonomyError, load_taxonomy_text
from tagging.matcher import MAX_MESSAGE_CHARS, NEGATION_WINDOW, Matcher


def python_calls(work: Callable[[], Any]) -> int:
    """How many Python-level calls (generator resumptions included) `work` makes."""
    count = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.build(load_builtin())


def test_repeated_keywords_cost_linear_work(matcher: Matcher) -> None:
    """`退款 ` × n: twice the keywords, about twice the calls (a pairwise containment check would be ×4)."""
    small = python_calls(lambda: matcher.suggest("退款 " * 1000))
    large = python_calls(lambda: matcher.suggest("退款 " * 2000))
    assert large < 2.6 * small, (small, large)
    [suggestion] = matcher.suggest("退款 " * 9000)
    assert suggestion.tag == "售后工单"


def test_negation_sees_a_bounded_window_of_a_long_clause(matcher: Matcher, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = matcher_module.negated

    def spy(clause: str, start: int, end: int) -> bool:
        seen.append(len(clause))
        return real(clause, start, end)

    monkeypatch.setattr(matcher_module, "negated", spy)
    matcher.suggest("退款 " * 3000)
    assert seen and max(seen) <= 2 * NEGATION_WINDOW + 10
    assert matcher.suggest("我不需要退款") == []  # negation still works inside the window


def test_only_the_first_part_of_an_enormous_message_is_matched(matcher: Matcher) -> None:
    assert matcher.suggest("好" * MAX_MESSAGE_CHARS + "退款") == []
    assert [s.tag for s in matcher.suggest("好" * (MAX_MESSAGE_CHARS - 10) + "退款")] == ["售后工单"]


def test_escaping_a_long_letter_run_takes_one_pattern_match_per_run() -> None:
    from cards.text import _SCHEME_RUN

    run = "a" * 28_000
    [match] = list(_SCHEME_RUN.finditer("suggest " + run))[1:]
    assert match.group(0) == run  # the whole run at once: no restart at every letter
    assert escape("suggest " + run) == ("suggest " + run)[: MAX_ESCAPE_CHARS - 1] + "…"
    assert escape("see http://x.example and 1ftp://y") == "see http:∕∕x.example and 1ftp:∕∕y"
    long = escape("b" * (MAX_ESCAPE_CHARS * 3))
    assert len(long) == MAX_ESCAPE_CHARS and long.endswith("…")


def test_mentions_are_stripped_in_one_pass() -> None:
    calls = python_calls(lambda: strip_mentions("<at>" * 40_000))
    assert calls < 10
    assert strip_mentions("<at>Kebiao</at> tag <AT id='x'>A</AT>B <at>x") == "  tag  B <at>x"
    assert strip_mentions("İstanbul <at>客标</at> hi") == "İstanbul   hi"  # "İ".lower() is two characters


def test_tag_stripping_is_linear_on_a_run_of_angle_brackets() -> None:
    from bots.teams.bot import _TAGS

    assert _TAGS.sub(" ", "<" * 120_000 + "b>") == "<" * 119_999 + " "
    assert "[^<>]" in _TAGS.pattern  # a tag never spans another "<": each start scans to the next one


# ---------------------------------------------------------------- taxonomy parser roots


def _refused(text: str) -> str:
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy_text(text)
    [problem] = info.value.problems
    return problem.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\ndimensions:\n  - key: a\n    name: " + "9" * 5000 + "\n", "a number with 5000 digits"),
        ("version: 1\ndimensions:\n  - key: a\n    name: 2001-13-45\n", "'2001-13-45' looks like a date"),
        ('{"version": ' + "9" * 5000 + "}", "a number has too many digits"),
        ('{"version": 1, "dimensions": ' + "[" * 1000 + "]" * 1000 + "}", "JSON nesting is too deep"),
        ("[" * 100_000 + "]" * 100_000, "JSON nesting is too deep"),
        ("a: " + "[" * 40 + "]" * 40, "YAML nesting is deeper than 32 levels"),
        ("a: &x [1]\nb: *x\n", "anchors and aliases"),
    ],
)
def test_bad_scalars_and_shapes_are_clean_errors(text: str, expected: str) -> None:
    assert expected in _refused(text)


def test_lone_surrogates_in_names_are_refused() -> None:
    text = '{"version": 1, "dimensions": [{"key": "a", "name": "\\udc00", "tags": [{"name": "A\\ud800"}]}]}'
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy_text(text)
    assert [p.path for p in info.value.problems] == ["dimensions[0].name", "dimensions[0].tags[0].name"]
    assert all("unpaired surrogate" in p.reason for p in info.value.problems)


def test_a_huge_yaml_stops_at_the_node_cap_before_composing(monkeypatch: pytest.MonkeyPatch) -> None:
    import tagging.loader as loader

    monkeypatch.setattr(loader, "MAX_YAML_NODES", 2000)
    composed: list[bool] = []
    real = loader._StrictLoader.get_single_data

    def spy(self: Any) -> Any:
        composed.append(True)
        return real(self)

    monkeypatch.setattr(loader._StrictLoader, "get_single_data", spy)
    flow = "version: 1\ndimensions:\n" + "".join(f"  - {{key: k{i}, name: n{i}}}\n" for i in range(5000))
    assert "more than 2,000 YAML values" in _refused(flow)
    assert composed == []
    assert MAX_YAML_NODES >= 50_000  # the real cap leaves room for large real taxonomies
