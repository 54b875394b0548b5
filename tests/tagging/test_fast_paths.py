"""The matcher's fast paths (and the taxonomy's tag index) give exactly what the straightforward pipeline gives.

Fast paths: `KeywordTokenizer.spans` reimplements jieba's no-HMM cut, the phrase scan indexes phrases by their
first two characters, and negation skips clauses without any negator. The reference run swaps each back for
the plain version (jieba's own `cut`, every substring looked up, every negator searched) on the benchmark
corpus and the labelled messages.
"""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from bench import corpus
from bench.tagging import labelled
from tagging import negation
from tagging.matcher import Matcher
from tagging.normaliser import name_key, normalise
from tagging.taxonomy import Dimension, TagDef
from tagging.tokenizer import KeywordTokenizer

_Spans = list[tuple[int, int]]


def _jieba_spans(tokenizer: KeywordTokenizer, text: str) -> _Spans:
    """Token boundaries straight from jieba's `cut(text, HMM=False)`."""
    spans, position = [], 0
    for word in tokenizer.words(text):
        spans.append((position, position + len(word)))
        position += len(word)
    return spans


def _every_substring_scan(
    self: Matcher, text: str
) -> tuple[list[tuple[int, int, str]], list[tuple[int, int]], list[tuple[int, int, str]]]:
    """Look up every substring, longest first at each start: the scan without an index."""
    phrases = self._phrases  # the reference needs the matcher's own phrase table
    longest = max(map(len, phrases))
    keywords, friends, excludes = [], [], []
    for start in range(len(text)):
        for end in range(min(len(text), start + longest), start, -1):
            piece = text[start:end]
            kinds = phrases.get(piece, 0)
            if kinds & 1:
                keywords.append((start, end, piece))
            if kinds & 2:
                friends.append((start, end))
            if kinds & 4:
                excludes.append((start, end, piece))
    return keywords, friends, excludes


def _sample() -> list[str]:
    rng = random.Random(11)
    odd = ["报价单\r\n维修点", "sku12x和API对接", "不紧急", "a1b2报价c3", "　全角ＡＰＩ报价", "没有要退款\r\r\n吧"]
    odd += ["".join(rng.choice("报价单维修点对比度不用退款 \r\nab1_-.#，。") for _ in range(20)) for _ in range(300)]
    return corpus.messages(2_000, seed=3) + [text for text, _ in labelled()] + odd


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.build(corpus.taxonomy(10_000))


def test_spans_are_jiebas_own_tokens(matcher: Matcher) -> None:
    tokenizer = matcher._tokenizer  # the tokenizer holding 10,000 keywords
    for text in map(normalise, _sample()):
        assert tokenizer.spans(text) == _jieba_spans(tokenizer, text), text


def test_suggestions_match_the_straightforward_pipeline(
    matcher: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = _sample()
    fast = [matcher.suggest(text) for text in texts]
    monkeypatch.setattr(KeywordTokenizer, "spans", _jieba_spans)
    monkeypatch.setattr(Matcher, "_scan", _every_substring_scan)
    everywhere = re.compile("")
    monkeypatch.setattr(negation, "_ANY_NO_NEED", everywhere)
    monkeypatch.setattr(negation, "_ANY_ADJACENT", everywhere)
    plain = [matcher.suggest(text) for text in texts]
    assert sum(1 for suggestions in plain if suggestions) > len(texts) // 2
    for text, got, expected in zip(texts, fast, plain, strict=True):
        assert got == expected, text


def test_phrase_at_the_end_of_a_message_is_found_once() -> None:
    matcher = Matcher.build(corpus.taxonomy(100))
    [suggestion] = matcher.suggest("能发一下报价")
    assert suggestion.matched == ("报价",)
    assert [m.end for m, _ in next(iter(matcher.matches(normalise("能发一下报价")).values()))] == [6]


def _tag(name: str, *children: TagDef, path: tuple[str, ...] = ()) -> TagDef:
    return TagDef(name, "product", (*path, name), children=children)


def test_tag_look_ups_by_name_find_what_a_walk_of_every_tag_finds() -> None:
    """A dimension's tag index gives what comparing the name key of every tag (depth first) gives."""
    child = _tag("華南 大客戶", path=("渠道",))
    dimension = Dimension("product", "产品", tags=(_tag("渠道", child), _tag("Sku-1"), _tag("报价")))
    probes = ["渠道", "华南  大客户", "sku-1", " SKU-1 ", "报价", "报价单", ""]
    for probe in probes:
        walked = tuple(t for t in dimension.iter_tags() if name_key(t.name) == name_key(probe))
        assert dimension.tags_keyed(name_key(probe)) == walked, probe
        assert dimension.tag_like(probe) == (walked[0] if walked else None), probe
    assert dimension.tag_named("華南 大客戶") is child and dimension.tag_named("华南 大客户") is None
    renamed = dataclasses.replace(dimension, tags=(_tag("报价单"),))  # a changed copy indexes its own tags
    assert renamed.tags_keyed(name_key("报价单")) == renamed.tags and renamed.tags_keyed(name_key("报价")) == ()
    assert renamed == dataclasses.replace(renamed)  # the index takes no part in equality
