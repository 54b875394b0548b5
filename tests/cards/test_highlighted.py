"""The excerpt's matched words in bold: the longest word at each place, left to right, whatever the script."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cards.adaptive import run
from cards.suggestion import _scan, highlighted, places

# Letters whose case fold is longer (ß, ﬁ, İ) next to CJK, Latin and characters regexes treat specially.
LETTERS = st.sampled_from(list("报价单格aAbBß.*()[]?+\\|^$ ﬁİ"))
TEXT = st.text(LETTERS, max_size=24)


@settings(max_examples=400, deadline=None)
@given(excerpt=TEXT, words=st.lists(st.text(LETTERS, max_size=4), max_size=4))
def test_one_scan_finds_what_a_look_at_every_place_finds(excerpt: str, words: list[str]) -> None:
    found = sorted({w for w in words if w}, key=len, reverse=True)
    assert places(excerpt, words) == _scan(excerpt, excerpt.casefold(), found)
    runs = highlighted(excerpt, words, size="Small")
    assert "".join(r["text"] for r in runs) == excerpt
    assert [r["text"] for r in runs if r.get("highlight")] == [excerpt[a:b] for a, b in places(excerpt, words)]


def test_the_longest_word_at_a_place_wins_and_the_scan_goes_on_after_it() -> None:
    runs = highlighted("“麻烦发一下报价单，报价单.*”", ["报价", "报价单", ".*"], size="Small")
    bold = [r["text"] for r in runs if r.get("highlight")]
    assert bold == ["报价单", "报价单", ".*"]
    assert [r["text"] for r in highlighted("ABC abc", ["abc"])] == ["ABC", " ", "abc"]
    assert highlighted("报价", []) == [run("报价")]
