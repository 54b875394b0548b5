"""The excerpt's matched words in bold: the longest word at each place, left to right, whatever the script."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cards.adaptive import run
from cards.suggestion import _scan, highlighted

# Letters whose case fold is longer (ß, ﬁ, İ) next to CJK, Latin and characters regexes treat specially.
LETTERS = st.sampled_from(list("报价单格aAbBß.*()[]?+\\|^$ ﬁİ"))
TEXT = st.text(LETTERS, max_size=24)


def _by_places(excerpt: str, words: list[str], **props: Any) -> list[dict[str, Any]]:
    """The excerpt's runs found place by place (the scan every excerpt can take)."""
    found = sorted({w for w in words if w}, key=len, reverse=True)
    runs = []
    plain_from = 0
    for start, end in _scan(excerpt, excerpt.casefold(), found):
        if start > plain_from:
            runs.append(run(excerpt[plain_from:start], **props))
        runs.append(run(excerpt[start:end], **props, weight="Bolder", highlight=True))
        plain_from = end
    if plain_from < len(excerpt):
        runs.append(run(excerpt[plain_from:], **props))
    return runs


@settings(max_examples=400, deadline=None)
@given(excerpt=TEXT, words=st.lists(st.text(LETTERS, max_size=4), max_size=4))
def test_one_scan_finds_what_a_look_at_every_place_finds(excerpt: str, words: list[str]) -> None:
    assert highlighted(excerpt, words, size="Small") == _by_places(excerpt, words, size="Small")
    assert "".join(r["text"] for r in highlighted(excerpt, words)) == excerpt


def test_the_longest_word_at_a_place_wins_and_the_scan_goes_on_after_it() -> None:
    runs = highlighted("“麻烦发一下报价单，报价单.*”", ["报价", "报价单", ".*"], size="Small")
    bold = [r["text"] for r in runs if r.get("highlight")]
    assert bold == ["报价单", "报价单", ".*"]
    assert [r["text"] for r in highlighted("ABC abc", ["abc"])] == ["ABC", " ", "abc"]
    assert highlighted("报价", []) == [run("报价")]
