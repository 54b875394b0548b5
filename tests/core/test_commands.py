"""Chat command parser shared by Teams and WeCom."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.chat.commands import HELP_TOPICS, VERBS, Command, Verb, parse_command


@pytest.mark.parametrize(
    ("text", "verb"),
    [
        ("help", Verb.HELP),
        ("帮助", Verb.HELP),
        ("?", Verb.HELP),
        ("？", Verb.HELP),
        ("/HELP", Verb.HELP),
        ("tags 华为", Verb.TAGS),
        ("查看 华为", Verb.TAGS),
        ("tag 华为 +VIP客户", Verb.TAG),
        ("打标签 华为 +VIP客户", Verb.TAG),
        ("find VIP客户", Verb.FIND),
        ("查找 VIP客户", Verb.FIND),
        ("link 华为", Verb.LINK),
        ("绑定 华为", Verb.LINK),
        ("unlink", Verb.UNLINK),
        ("解绑", Verb.UNLINK),
        ("suggest 想问下报价", Verb.SUGGEST),
        ("建议 想问下报价", Verb.SUGGEST),
    ],
)
def test_every_verb_in_english_and_chinese(text: str, verb: Verb) -> None:
    command = parse_command(text)
    assert command.verb is verb
    assert command.error is None


def test_verbs_are_case_insensitive_slash_optional_and_trimmed() -> None:
    expected = Command(Verb.TAGS, customer="深圳市腾飞科技")
    assert parse_command("TAGS 深圳市腾飞科技") == expected
    assert parse_command("/Tags 深圳市腾飞科技") == expected
    assert parse_command("／查看 深圳市腾飞科技") == expected
    assert parse_command("\u00a0 tags\u00a0深圳市腾飞科技 \u3000\n") == expected


def test_chinese_verb_glued_to_its_argument() -> None:
    assert parse_command("查看深圳市腾飞科技") == Command(Verb.TAGS, customer="深圳市腾飞科技")
    command = parse_command("打标签深圳市腾飞科技 +询价客户")
    assert (command.customer, command.add) == ("深圳市腾飞科技", ("询价客户",))


def test_tag_adds_and_removes() -> None:
    command = parse_command("tag ABC公司 +VIP客户 -沉默客户 +询价客户")
    assert command == Command(Verb.TAG, customer="ABC公司", add=("VIP客户", "询价客户"), remove=("沉默客户",))


def test_tag_with_full_width_signs_and_quoted_names() -> None:
    command = parse_command('打标签 "北京 星辰 贸易" ＋「重点 客户」 －"沉默 客户" +今日已联系')
    assert command.customer == "北京 星辰 贸易"
    assert command.add == ("重点 客户", "今日已联系")
    assert command.remove == ("沉默 客户",)
    assert command.error is None


def test_tag_customer_with_spaces_unquoted_runs_to_first_sign() -> None:
    command = parse_command("tag 上海 东方 物流 +紧急工单")
    assert (command.customer, command.add) == ("上海 东方 物流", ("紧急工单",))


def test_tag_keeps_dash_inside_names_and_duplicates_once() -> None:
    command = parse_command("tag B2B-制造 +VIP客户 +ＶＩＰ客户 -B2C-零售")
    assert command.customer == "B2B-制造"
    assert command.add == ("VIP客户",)  # the second spelling has the same name key
    assert command.remove == ("B2C-零售",)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tag 华为", "no tag to add or remove; usage: tag <customer> +标签 -标签"),
        ("打标签 +VIP客户", "missing customer"),
        ("tag", "missing customer"),
        ("tag 华为 +VIP客户 沉默客户", "沉默客户 needs + to add or - to remove it"),
        ("tag 华为 +VIP客户 -", "- is not followed by a tag name"),
        ('tag 华为 +"重点 客户', 'tag name: quote " is never closed'),
        ("tag 「华为 +VIP客户", "customer name: quote 「 is never closed"),
        ("tag 华为 +VIP客户 -VIP客户", "tag VIP客户 is both added and removed"),
        ("tags", "missing customer; usage: tags <customer>"),
        ("绑定", "missing customer; usage: link <customer>"),
        ('查看 "华为" 深圳', "unexpected text after the quoted customer name: 深圳"),
        ("find", "missing tag expression"),
        ("查找 VIP客户 且", "tag expression: operator 且 at position 7 has no right operand"),
        ("建议", "missing text; usage: suggest <text>"),
    ],
)
def test_errors_explain_how_to_write_the_command(text: str, fragment: str) -> None:
    error = parse_command(text).error
    assert error is not None
    assert fragment in error


def test_find_keeps_the_expression_text() -> None:
    command = parse_command("查找 (VIP客户 或 询价客户) 非 沉默客户")
    assert command == Command(Verb.FIND, argument="(VIP客户 或 询价客户) 非 沉默客户")


def test_quoted_customer_for_tags_and_link() -> None:
    assert parse_command('tags "北京 星辰 贸易"').customer == "北京 星辰 贸易"
    assert parse_command("绑定 「北京 星辰 贸易」").customer == "北京 星辰 贸易"


def test_unlink_takes_an_optional_customer() -> None:
    assert parse_command("解绑") == Command(Verb.UNLINK)
    assert parse_command("unlink 华为") == Command(Verb.UNLINK, customer="华为")


def test_help_topic_and_suggest_text_are_the_argument() -> None:
    assert parse_command("帮助 打标签") == Command(Verb.HELP, argument="打标签")
    assert parse_command("suggest 客户说 想要退款，请加急") == Command(
        Verb.SUGGEST, argument="客户说 想要退款，请加急"
    )


def test_plain_chat_is_unknown_without_error() -> None:
    assert parse_command("  你好，请问报价单发了吗 ") == Command(
        Verb.UNKNOWN, argument="你好，请问报价单发了吗"
    )
    assert parse_command("tagged 华为") == Command(Verb.UNKNOWN, argument="tagged 华为")
    assert parse_command("") == Command(Verb.UNKNOWN)


def test_help_topics_cover_every_verb() -> None:
    covered = {VERBS[usage.split()[0]] for usage, _, _ in HELP_TOPICS}
    assert covered == set(Verb) - {Verb.UNKNOWN}
    assert all(en and zh for _, en, zh in HELP_TOPICS)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=60)
    | st.builds(lambda v, t: f"{v} {t}", st.sampled_from(sorted(VERBS)), st.text(max_size=40))
)
def test_parse_never_raises(text: str) -> None:
    command = parse_command(text)
    assert isinstance(command.verb, Verb)
    if command.verb is Verb.TAG and command.error is None:
        assert command.customer and (command.add or command.remove)
