"""Tag search expressions: grammar, errors, evaluation and canonical rendering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.tags.expression import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_TERMS,
    And,
    Expr,
    ExpressionError,
    Not,
    Or,
    TagRef,
    evaluate,
    parse_expression,
    render,
    tag_names,
)
from tagging.normaliser import name_key

VIP, ASK, QUIET = TagRef("VIP客户"), TagRef("询价客户"), TagRef("沉默客户")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("VIP客户", VIP),
        ("VIP客户 AND 询价客户", And((VIP, ASK))),
        ("VIP客户 and 询价客户", And((VIP, ASK))),
        ("VIP客户 且 询价客户", And((VIP, ASK))),
        ("VIP客户 & 询价客户", And((VIP, ASK))),
        ("VIP客户 询价客户", And((VIP, ASK))),
        ("VIP客户 OR 询价客户", Or((VIP, ASK))),
        ("VIP客户 或 询价客户", Or((VIP, ASK))),
        ("VIP客户|询价客户", Or((VIP, ASK))),
        ("VIP客户 AND 询价客户 NOT 沉默客户", And((VIP, ASK, Not(QUIET)))),
        ("VIP客户 非 沉默客户", And((VIP, Not(QUIET)))),
        ("VIP客户 !沉默客户", And((VIP, Not(QUIET)))),
        ("VIP客户 -沉默客户", And((VIP, Not(QUIET)))),
        ("VIP客户 －沉默客户", And((VIP, Not(QUIET)))),
        ("NOT 沉默客户", Not(QUIET)),
        ("Not Not 沉默客户", Not(Not(QUIET))),
    ],
)
def test_operators_in_english_chinese_and_symbols(text: str, expected: Expr) -> None:
    assert parse_expression(text) == expected


def test_precedence_not_binds_tighter_than_and_tighter_than_or() -> None:
    assert parse_expression("VIP客户 OR 询价客户 AND NOT 沉默客户") == Or((VIP, And((ASK, Not(QUIET)))))
    assert parse_expression("NOT VIP客户 AND 询价客户") == And((Not(VIP), ASK))


def test_parentheses_ascii_and_full_width_group() -> None:
    expected = And((Or((VIP, ASK)), Not(QUIET)))
    assert parse_expression("(VIP客户 OR 询价客户) AND NOT 沉默客户") == expected
    assert parse_expression("（VIP客户 或 询价客户）且 非 沉默客户") == expected
    assert parse_expression("NOT (VIP客户 OR 沉默客户)") == Not(Or((VIP, QUIET)))


def test_nested_same_operator_is_flattened() -> None:
    assert parse_expression("VIP客户 AND (询价客户 AND 沉默客户)") == And((VIP, ASK, QUIET))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('"重点 客户"', "重点 客户"),
        ("「研发&测试」", "研发&测试"),
        ("“NOT 客户”", "NOT 客户"),
        ("『(华东)区域』", "(华东)区域"),
        ('"引号\\"内"', '引号"内'),
    ],
)
def test_quoted_names_hold_spaces_and_operators(text: str, name: str) -> None:
    assert parse_expression(text) == TagRef(name)


def test_chinese_operators_are_whole_words_only() -> None:
    assert parse_expression("非洲客户") == TagRef("非洲客户")
    assert parse_expression("或许客户 且慢") == And((TagRef("或许客户"), TagRef("且慢")))
    assert parse_expression("B2B-制造") == TagRef("B2B-制造")  # a dash inside a word is part of the name


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("", "empty expression", None),
        ("   ", "empty expression", None),
        ("VIP客户 AND", "operator AND at position 7 has no right operand", 6),
        ("OR 询价客户", "operator OR at position 1 has no left operand", 0),
        ("VIP客户 或 或 询价客户", "operator 或 at position 7 has no right operand", 6),
        ("VIP客户 非", "operator 非 at position 7 has no operand", 6),
        ("(VIP客户 OR 询价客户", "unbalanced parenthesis: ( at position 1 is never closed", 0),
        ("VIP客户）", "unbalanced parenthesis: ） at position 6 has no matching (", 5),
        ("VIP客户 AND ()", "empty parentheses at position 11", 10),
        ('"重点 客户', 'quote " at position 1 is never closed', 0),
        ("「」", "empty tag name in quotes at position 1", 0),
    ],
)
def test_errors_say_what_and_where(text: str, fragment: str, position: int | None) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert fragment in str(caught.value)
    assert caught.value.position == position


def test_length_term_and_depth_caps() -> None:
    with pytest.raises(ExpressionError, match=f"too long: {MAX_LENGTH + 1} characters"):
        parse_expression("客" * (MAX_LENGTH + 1))
    with pytest.raises(ExpressionError, match=f"{MAX_TERMS + 1} tag names"):
        parse_expression(" ".join(f"标签{i}" for i in range(MAX_TERMS + 1)))
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_expression("(" * (MAX_DEPTH + 1) + "VIP客户" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_expression("!" * 200 + "VIP客户")


def test_evaluate_uses_name_keys() -> None:
    expr = parse_expression("ＶＩＰ客户 AND NOT 沉默客戶")  # full-width Latin, traditional 戶
    assert evaluate(expr, {name_key("VIP客户")})
    assert not evaluate(expr, {name_key("VIP客户"), name_key("沉默客户")})
    assert not evaluate(expr, [])


def test_only_negations_match_customers_without_tags() -> None:
    assert evaluate(parse_expression("NOT 沉默客户"), ())
    assert not evaluate(parse_expression("NOT 沉默客户"), {"沉默客户"})


def test_tag_names_lists_every_name_once() -> None:
    expr = parse_expression("(VIP客户 OR 询价客户) AND NOT VIP客户")
    assert tag_names(expr) == frozenset({"VIP客户", "询价客户"})


def test_render_is_canonical() -> None:
    assert (
        render(parse_expression("（VIP客户 或 询价客户）且 非 沉默客户"))
        == "(VIP客户 OR 询价客户) AND NOT 沉默客户"
    )
    assert render(parse_expression("「重点 客户」 -「且」")) == '"重点 客户" AND NOT "且"'
    assert render(Not(And((VIP, ASK)))) == "NOT (VIP客户 AND 询价客户)"


# ---------------------------------------------------------------- properties

_NAMES = st.sampled_from(
    [
        "VIP客户",
        "询价客户",
        "沉默客户",
        "重点 客户",
        "且",
        "NOT",
        "-负面",
        "研发&测试",
        '引"号',
        "a\\b",
        "非洲客户",
    ]
)


def _flat(kind: type[And] | type[Or], ops: list[Expr]) -> Expr:
    flat: list[Expr] = []
    for op in ops:
        flat.extend(op.operands if isinstance(op, kind) else (op,))
    return kind(tuple(flat))


_EXPRS: st.SearchStrategy[Expr] = st.recursive(
    _NAMES.map(TagRef),
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda ops: _flat(And, ops)),
        st.lists(inner, min_size=2, max_size=3).map(lambda ops: _flat(Or, ops)),
    ),
    max_leaves=8,
)


def _reference(expr: Expr, held: frozenset[str]) -> bool:
    if isinstance(expr, TagRef):
        return name_key(expr.name) in held
    if isinstance(expr, Not):
        return not _reference(expr.operand, held)
    if isinstance(expr, And):
        return all(_reference(op, held) for op in expr.operands)
    return any(_reference(op, held) for op in expr.operands)


@settings(max_examples=150, deadline=None)
@given(_EXPRS)
def test_render_parse_round_trips(expr: Expr) -> None:
    assert parse_expression(render(expr)) == expr


@settings(max_examples=150, deadline=None)
@given(_EXPRS, st.frozensets(_NAMES.map(name_key)))
def test_evaluate_agrees_with_reference(expr: Expr, held: frozenset[str]) -> None:
    assert evaluate(expr, held) == _reference(expr, held)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab 且或非()（）"「」&|!-\\客户')), max_size=40))
def test_parse_only_ever_raises_expression_error(text: str) -> None:
    try:
        expr = parse_expression(text)
    except ExpressionError:
        return
    assert parse_expression(render(expr)) == expr
