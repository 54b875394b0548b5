"""Matcher rules with Chinese examples: segmentation, compounds, false friends, excludes, negation."""

from __future__ import annotations

import pytest

from tagging.builtin import load_builtin
from tagging.matcher import Matcher
from tagging.taxonomy import Dimension, TagDef, Taxonomy


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.build(load_builtin())


def _tags(matcher: Matcher, text: str) -> list[str]:
    return [s.tag for s in matcher.suggest(text)]


def _taxonomy(*tags: TagDef, key: str = "stage") -> Taxonomy:
    return Taxonomy(version=1, dimensions=(Dimension(key=key, name="需求阶段", tags=tags),))


def test_plain_keyword_gives_evidence_score_and_action(matcher: Matcher) -> None:
    [suggestion] = matcher.suggest("麻烦发一下报价，谢谢")
    assert suggestion.tag == "询价客户"
    assert suggestion.dimension == "stage"
    assert suggestion.matched == ("报价",)
    assert suggestion.action == "suggest"
    assert 0.0 < suggestion.score <= 1.0
    assert "报价" in suggestion.excerpt


def test_auto_apply_tags_are_applied(matcher: Matcher) -> None:
    [suggestion] = matcher.suggest("我要退款")
    assert (suggestion.tag, suggestion.action) == ("售后工单", "apply")


def test_more_keywords_raise_the_score(matcher: Matcher) -> None:
    [one] = matcher.suggest("请报价")
    [two] = matcher.suggest("请报价，多少钱")
    assert two.matched == ("报价", "多少钱")
    assert one.score < two.score <= 1.0


def test_results_follow_taxonomy_order(matcher: Matcher) -> None:
    text = "再不退款我就投诉，顺便问下续费价格"
    assert _tags(matcher, text) == ["询价客户", "续费意向", "售后工单", "紧急工单"]
    assert matcher.suggest(text) == matcher.suggest(text)


def test_no_keyword_no_suggestion(matcher: Matcher) -> None:
    assert matcher.suggest("周末去爬山了，天气很好") == []
    assert matcher.suggest("") == []


@pytest.mark.parametrize(
    ("text", "tag"),
    [("报价单收到了", "询价客户"), ("附近有维修点吗", "售后工单"), ("投诉电话是多少", "紧急工单")],
)
def test_compounds_that_keep_the_meaning_match(matcher: Matcher, text: str, tag: str) -> None:
    assert _tags(matcher, text) == [tag]


def test_compound_scores_below_a_whole_word(matcher: Matcher) -> None:
    [compound] = matcher.suggest("报价单收到了")
    [word] = matcher.suggest("报价收到了")
    assert compound.score < word.score


@pytest.mark.parametrize(
    "text",
    ["这台显示器对比度很高", "新团队生气勃勃", "请填写紧急联系人", "他们在打价格战", "我对这个不感兴趣"],
)
def test_false_friends_do_not_match(matcher: Matcher, text: str) -> None:
    assert _tags(matcher, text) == []


def test_a_keyword_straddling_two_words_does_not_match(matcher: Matcher) -> None:
    assert _tags(matcher, "这家店评价格外好") == []  # 评价|格外, not 价格


def test_false_friend_list_is_replaceable() -> None:
    taxonomy = _taxonomy(TagDef(name="竞品对比", dimension="stage", path=("竞品对比",), keywords=("对比",)))
    assert Matcher.build(taxonomy).suggest("对比度太低") == []
    assert [s.tag for s in Matcher.build(taxonomy, false_friends=()).suggest("对比度太低")] == ["竞品对比"]


def test_tag_exclude_is_honoured_for_that_tag_only() -> None:
    taxonomy = _taxonomy(
        TagDef(
            name="询价客户", dimension="stage", path=("询价客户",), keywords=("价格",), exclude=("价格表",)
        ),
        TagDef(name="资料需求", dimension="stage", path=("资料需求",), keywords=("价格",)),
    )
    matcher = Matcher.build(taxonomy, false_friends=())
    assert [s.tag for s in matcher.suggest("发我一份价格表")] == ["资料需求"]
    assert [s.tag for s in matcher.suggest("价格怎么算")] == ["询价客户", "资料需求"]


@pytest.mark.parametrize(
    "text", ["Our capital is limited", "We learned by trial and error", "apiary tour", "the pricey one"]
)
def test_latin_keywords_match_whole_words_only(matcher: Matcher, text: str) -> None:
    assert _tags(matcher, text) == []


@pytest.mark.parametrize(
    ("text", "tag"), [("Do you have an API?", "方案评估"), ("API对接怎么做", "方案评估")]
)
def test_latin_keywords_match_as_words(matcher: Matcher, text: str, tag: str) -> None:
    assert tag in _tags(matcher, text)


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("ＡＰＩ文檔", "方案评估"),
        ("請給我報價", "询价客户"),
        ("I need a REFUND", "售后工单"),
        ("我要投訴", "紧急工单"),
    ],
)
def test_variants_are_normalised(matcher: Matcher, text: str, tag: str) -> None:
    assert _tags(matcher, text) == [tag]


def test_excerpt_quotes_the_original_text(matcher: Matcher) -> None:
    [suggestion] = matcher.suggest("請給我報價")
    assert suggestion.excerpt == "請給我報價"
    [long] = matcher.suggest(
        "我们是一家做跨境物流的公司，最近在看各家的系统，想请你们报价一下，谢谢你们的耐心和专业的解答"
    )
    assert long.excerpt.startswith("…") and long.excerpt.endswith("…")
    assert "报价" in long.excerpt


@pytest.mark.parametrize(
    "text",
    ["我不需要退款", "不用报价了", "无需加急", "报价就不用了，谢谢", "维修不需要了", "I don't need a refund"],
)
def test_no_need_negators_cancel_the_keyword(matcher: Matcher, text: str) -> None:
    assert _tags(matcher, text) == []


@pytest.mark.parametrize(
    "text",
    ["还没退款", "为什么还不给我退款", "到现在都没退款", "不要再拖了，赶紧退款", "不用说了，为什么还没退款"],
)
def test_not_yet_complaints_keep_the_keyword(matcher: Matcher, text: str) -> None:
    assert _tags(matcher, text) == ["售后工单"]


def test_negation_is_clause_scoped(matcher: Matcher) -> None:
    assert _tags(matcher, "我不需要发票，请尽快退款") == ["售后工单"]
    assert _tags(matcher, "不用退款了。我要投诉") == ["紧急工单"]


def test_a_not_a_questions_do_not_negate(matcher: Matcher) -> None:
    assert _tags(matcher, "要不要报价？") == ["询价客户"]
    assert _tags(matcher, "需不需要加急") == ["紧急工单"]


def test_the_longest_keyword_wins(matcher: Matcher) -> None:
    assert _tags(matcher, "已签约，谢谢") == ["已成交"]
    assert _tags(matcher, "我们试用快到期了") == ["试用即将到期"]


def test_keywords_shared_by_tags_suggest_each() -> None:
    taxonomy = Taxonomy(
        version=1,
        dimensions=(
            Dimension(
                key="stage",
                name="需求阶段",
                tags=(TagDef(name="甲", dimension="stage", path=("甲",), keywords=("续费",)),),
            ),
            Dimension(
                key="risk",
                name="风险",
                tags=(TagDef(name="乙", dimension="risk", path=("乙",), keywords=("续费",)),),
            ),
        ),
    )
    assert [(s.dimension, s.tag) for s in Matcher.build(taxonomy).suggest("想续费")] == [
        ("stage", "甲"),
        ("risk", "乙"),
    ]


def test_build_counts_distinct_normalised_keywords() -> None:
    taxonomy = _taxonomy(
        TagDef(
            name="询价客户",
            dimension="stage",
            path=("询价客户",),
            keywords=("報價", "报价", "Quote", "quote"),
        )
    )
    assert Matcher.build(taxonomy).keyword_count == 2


def test_matchers_do_not_share_dictionaries() -> None:
    first = Matcher.build(_taxonomy(TagDef(name="甲", dimension="stage", path=("甲",), keywords=("官网",))))
    second = Matcher.build(_taxonomy(TagDef(name="乙", dimension="stage", path=("乙",), keywords=("网上",))))
    assert [s.tag for s in first.suggest("官网上看到的")] == ["甲"]
    assert [s.tag for s in second.suggest("官网上看到的")] == ["乙"]


@pytest.mark.parametrize(
    "text",
    [
        "不想退款了",
        "别加急了，慢慢来",
        "这不是投诉，只是建议",
        "我没有要投诉的意思",
        "并非要退货",
        "暂时不打算续费",
        "我们从来没有逾期过",
        "no refund needed, thanks",
        "the refund is not needed",
        "We are not planning to renew",
        "it's not urgent",
    ],
)
def test_dont_want_and_not_negators_cancel_the_keyword(matcher: Matcher, text: str) -> None:
    assert _tags(matcher, text) == []


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("迟迟不退款", ["售后工单"]),
        ("申请了半个月还没有要到退款", ["售后工单"]),
        ("不是不想退款，是流程太麻烦", ["售后工单"]),
        ("谁说我们不要报价了", ["询价客户"]),
        ("别人家退款都很快", ["售后工单"]),
        ("特别着急，请加急处理", ["紧急工单"]),
        ("别家都有折扣", ["询价客户", "竞品对比"]),
        ("the refund is needed today", ["售后工单"]),
        ("I did not get my refund", ["售后工单"]),
    ],
)
def test_not_yet_double_negation_and_lookalikes_keep_the_keyword(
    matcher: Matcher, text: str, tags: list[str]
) -> None:
    assert _tags(matcher, text) == tags


@pytest.mark.parametrize("text", ["试用期员工下周入职", "他是村里的上门女婿", "快递员会送货上门吗"])
def test_probation_and_son_in_law_are_false_friends(matcher: Matcher, text: str) -> None:
    assert _tags(matcher, text) == []
