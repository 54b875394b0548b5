"""Normaliser: NFKC, case-folding, traditional→simplified, and the fast path equal to OpenCC."""

from __future__ import annotations

import unicodedata

import opencc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagging.builtin import load_builtin
from tagging.false_friends import DEFAULT_FALSE_FRIENDS
from tagging.normaliser import _read_pairs, _t2s, name_key, normalise, to_simplified

_REFERENCE = opencc.OpenCC("t2s")


def _reference(text: str) -> str:
    return str(_REFERENCE.convert(unicodedata.normalize("NFKC", text).casefold()))


def _traditional_alphabet() -> str:
    """Characters of OpenCC's t2s dictionaries plus common simplified ones and separators."""
    import os

    folder = os.path.join(os.path.dirname(opencc.__file__), "dictionary")
    chars = set("".join(_read_pairs(os.path.join(folder, "TSPhrases.txt"))))
    chars |= set(list(_read_pairs(os.path.join(folder, "TSCharacters.txt")))[:800])
    return "".join(sorted(chars)) + "报价退款维修投诉，。！？ ,.!?AaＡｂ１"


_ALPHABET = _traditional_alphabet()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＰＩ對接", "api对接"),
        ("請問報價單什麼時候發？", "请问报价单什么时候发?"),
        ("我要投訴！", "我要投诉!"),
        ("REFUND", "refund"),
        ("一目瞭然", "一目了然"),  # a phrase OpenCC converts differently from its characters
        ("乾坤", "乾坤"),
    ],
)
def test_normalise_examples(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_name_key_trims_and_collapses_whitespace() -> None:
    assert name_key("  ＶＩＰ　 客戶 ") == "vip 客户"


def test_fast_path_equals_opencc_on_every_builtin_keyword_and_phrase() -> None:
    taxonomy = load_builtin()
    phrases = [k for tag in taxonomy.iter_tags() for k in (*tag.keywords, *tag.exclude, tag.name)]
    phrases += list(DEFAULT_FALSE_FRIENDS)
    converter = opencc.OpenCC("s2t")
    for phrase in phrases:
        traditional = str(converter.convert(phrase))
        assert normalise(traditional) == _reference(traditional), traditional
        assert normalise(phrase) == _reference(phrase), phrase


def test_fast_path_equals_opencc_on_every_dictionary_entry() -> None:
    import os

    folder = os.path.join(os.path.dirname(opencc.__file__), "dictionary")
    for name in ("TSPhrases.txt", "TSCharacters.txt"):
        for key in _read_pairs(os.path.join(folder, name)):
            assert to_simplified(key) == _REFERENCE.convert(key), key


def test_phrase_guard_only_lists_phrases_that_differ() -> None:
    assert _t2s().phrases.search("请问企业版价格是多少") is None
    assert _t2s().phrases.search("一目瞭然") is not None


@given(st.text(alphabet=_ALPHABET, max_size=30))
def test_fast_path_equals_opencc_on_random_text(text: str) -> None:
    assert normalise(text) == _reference(text)


@given(st.text(max_size=40))
def test_normalise_is_idempotent(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30))
def test_full_width_ascii_equals_half_width(text: str) -> None:
    full = "".join(chr(ord(ch) + 0xFEE0) for ch in text)
    assert normalise(full) == normalise(text)


@given(st.text(alphabet=st.characters(min_codepoint=0x41, max_codepoint=0x7A), max_size=30))
def test_latin_is_case_folded(text: str) -> None:
    assert normalise(text.upper()) == normalise(text.lower()) == text.lower()
