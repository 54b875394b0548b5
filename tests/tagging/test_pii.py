"""Personal data detection: ID numbers (GB 11643), mainland mobiles, Luhn bank cards."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from tagging.pii import PiiHit, PiiKind, contains_pii, find_pii, id_card_valid, luhn_valid, mask, mobile_valid

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
PROVINCES = ("11", "31", "44", "51", "65", "82")


def id_check(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def luhn_complete(body: str) -> str:
    """Append the Luhn check digit to `body`."""
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("no check digit")


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


chinese = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), max_size=12)
digit_strings = st.text(st.sampled_from("0123456789"), min_size=1, max_size=1)


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(PROVINCES))
    region = draw(st.text(st.sampled_from("0123456789"), min_size=4, max_size=4))
    born = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)))
    seq = draw(st.text(st.sampled_from("0123456789"), min_size=3, max_size=3))
    first17 = f"{province}{region}{born:%Y%m%d}{seq}"
    return first17 + id_check(first17)


@st.composite
def mobiles(draw: st.DrawFn) -> str:
    return (
        "1"
        + draw(st.sampled_from("3456789"))
        + draw(st.text(st.sampled_from("0123456789"), min_size=9, max_size=9))
    )


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(16, 19))
    body = draw(st.sampled_from("123456789")) + draw(
        st.text(st.sampled_from("0123456789"), min_size=length - 2, max_size=length - 2)
    )
    return luhn_complete(body)


# ---------------------------------------------------------------- examples


def test_id_card_with_x_check_character_in_chinese_sentence() -> None:
    text = "客户身份证11010519491231002X已登记"
    assert find_pii(text) == [PiiHit("id_card", 5, 23)]
    assert find_pii("身份证号11010519491231002x。") == [PiiHit("id_card", 4, 22)]


def test_id_card_needs_checksum_province_and_real_birth_date() -> None:
    assert id_card_valid("11010519491231002X")
    assert not id_card_valid("110105194912310021")  # wrong check character
    first17 = "11010519490230002"  # 30 February
    assert not id_card_valid(first17 + id_check(first17))
    first17 = "99010519491231002"  # no province 99
    assert not id_card_valid(first17 + id_check(first17))
    first17 = "11010518491231002"  # born 1849
    assert not id_card_valid(first17 + id_check(first17))


def test_mobile_formats() -> None:
    assert find_pii("王经理电话13812345678，请回电") == [PiiHit("mobile", 5, 16)]
    assert find_pii("电话138-1234-5678") == [PiiHit("mobile", 2, 15)]
    assert find_pii("手机 138 1234 5678 联系") == [PiiHit("mobile", 3, 16)]
    assert find_pii("+86 138 1234 5678") == [PiiHit("mobile", 0, 17)]
    assert find_pii("8613812345678") == [PiiHit("mobile", 0, 13)]
    assert find_pii("请拨＋８６－１３８１２３４５６７８") == [PiiHit("mobile", 2, 17)]


def test_mobile_rejects_wrong_prefix_and_length() -> None:
    assert not mobile_valid("12812345678")
    assert find_pii("订单号1381234567890") == []
    assert find_pii("编号21381234567") == []
    assert find_pii("23812345678") == []


def test_bank_card_in_groups() -> None:
    card = luhn_complete("622202100112345678")  # 19 digits
    grouped = f"{card[:4]} {card[4:8]} {card[8:12]} {card[12:16]} {card[16:]}"
    assert find_pii(f"工行卡号{grouped}，转账请备注") == [PiiHit("bank_card", 4, 4 + len(grouped))]
    assert find_pii("卡号4111-1111-1111-1111") == [PiiHit("bank_card", 2, 21)]
    assert find_pii("卡号4111111111111112") == []  # Luhn fails


def test_ordinary_numbers_are_not_personal_data() -> None:
    for text in (
        "合同金额 120000 元",
        "订单 2024-06-18 发货",
        "投诉热线12315",
        "客服400-820-8820",
        "第3期共12期",
    ):
        assert find_pii(text) == [], text


def test_full_width_digits_are_caught_with_original_positions() -> None:
    text = "手机：１３８１２３４５６７８"
    assert find_pii(text) == [PiiHit("mobile", 3, 14)]
    assert contains_pii(text)


def test_mask_hides_digits_but_keeps_the_rest() -> None:
    assert mask("张总 138-1234-5678 明天到") == "张总 ***-****-**** 明天到"
    assert mask("身份证11010519491231002X") == "身份证" + "*" * 18
    assert mask("没有号码的文字") == "没有号码的文字"


def test_several_hits_in_order() -> None:
    text = "手机13812345678，卡号4111111111111111，身份证11010519491231002X"
    assert [h.kind for h in find_pii(text)] == ["mobile", "bank_card", "id_card"]


# ---------------------------------------------------------------- properties


@given(id_numbers(), chinese, chinese)
def test_any_valid_id_inside_chinese_text_is_found(number: str, before: str, after: str) -> None:
    assert find_pii(before + number + after) == [PiiHit("id_card", len(before), len(before) + 18)]


@given(mobiles(), chinese, chinese, st.sampled_from(["plain", "dash", "space", "+86", "full"]))
def test_any_mobile_inside_chinese_text_is_found(number: str, before: str, after: str, style: str) -> None:
    shown = {
        "plain": number,
        "dash": f"{number[:3]}-{number[3:7]}-{number[7:]}",
        "space": f"{number[:3]} {number[3:7]} {number[7:]}",
        "+86": f"+86 {number}",
        "full": full_width(number),
    }[style]
    assert find_pii(before + shown + after) == [PiiHit("mobile", len(before), len(before) + len(shown))]


@given(cards(), chinese, chinese, st.booleans())
def test_any_luhn_card_inside_chinese_text_is_found(
    number: str, before: str, after: str, grouped: bool
) -> None:
    shown = " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if grouped else number
    kind: PiiKind = "id_card" if id_card_valid(number) else "mobile" if mobile_valid(number) else "bank_card"
    assert find_pii(before + shown + after) == [PiiHit(kind, len(before), len(before) + len(shown))]


@given(id_numbers(), chinese)
def test_id_with_broken_checksum_is_not_an_id(number: str, before: str) -> None:
    wrong = next(c for c in "0123456789X" if c != number[-1])
    hits = find_pii(before + number[:-1] + wrong)
    assert all(h.kind != "id_card" for h in hits)


@given(cards(), chinese)
def test_card_with_broken_luhn_is_not_a_card(number: str, before: str) -> None:
    broken = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert all(h.kind != "bank_card" for h in find_pii(before + broken))


@given(mobiles(), digit_strings, digit_strings)
def test_mobile_inside_a_longer_digit_run_is_not_flagged(number: str, left: str, right: str) -> None:
    assert all(h.kind != "mobile" for h in find_pii(left + number + right))
    assert all(h.kind != "mobile" for h in find_pii(number + right))


@given(st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5) | st.sampled_from(" ，。！？-+xX")))
def test_chinese_text_without_digits_has_no_personal_data(text: str) -> None:
    assert find_pii(text) == []
    assert mask(text) == text


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from([*"0123456789０１２３４５６７８９①②③ -+Xx报价退款订单号手机", "\u3000", "\n"]),
        max_size=60,
    )
)
def test_the_digit_count_prefilter_never_changes_a_result(text: str) -> None:
    import tagging.pii as pii

    fast = pii.find_pii(text)
    original = pii._FEWEST_DIGITS
    pii._FEWEST_DIGITS = 0  # the full per-character path for every text
    try:
        assert pii.find_pii(text) == fast
    finally:
        pii._FEWEST_DIGITS = original
