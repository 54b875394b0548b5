"""Taxonomy file loading: every validation rule, dump round-trips, merging, and `kebiao taxonomy validate`."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagging.loader import (
    MAX_BYTES,
    Problem,
    TaxonomyError,
    dump_taxonomy,
    load_taxonomy_file,
    load_taxonomy_text,
    merge_taxonomies,
)
from tagging.taxonomy import Visibility

ROOT = Path(__file__).resolve().parents[2]
KEBIAO = ROOT / ".venv" / "bin" / "kebiao"

GOOD = """\
version: 1
dimensions:
  - key: stage
    name: 需求阶段
    tags:
      - name: 询价客户
        color: "#2F80ED"
        description: 询问过价格的客户
        keywords: [报价, 询价, 多少钱]
        exclude: [价格战]
        ttl_days: 90
        children:
          - name: 大客户询价
            keywords: [集采报价]
            children:
              - name: 政府采购询价
                keywords: [政府采购]
  - key: risk
    name: 风险与问题
    exclusive: false
    visibility: managers
    tags:
      - name: 售后工单
        keywords: [退款, 维修]
        auto_apply: true
  - key: value
    name: 价值等级
    exclusive: true
    tags:
      - name: VIP客户
      - name: 普通客户
channels:
  expo_sh_2024: 询价客户
"""


def refused(text: str, fmt: str | None = None) -> list[tuple[str, str]]:
    """(path, reason) of every problem in `text`; fails if the text is accepted."""
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy_text(text, source="t.yaml", fmt=fmt)
    assert all(p.file == "t.yaml" for p in info.value.problems)
    return [(p.path, p.reason) for p in info.value.problems]


def one_tag(tag_yaml: str) -> str:
    """A file with one dimension holding the given tag (indented YAML mapping body)."""
    body = textwrap.indent(textwrap.dedent(tag_yaml).strip(), "        ")
    return f"version: 1\ndimensions:\n  - key: stage\n    name: 需求阶段\n    tags:\n      -\n{body}\n"


# ---------------------------------------------------------------- accepted files


def test_good_file_builds_frozen_types() -> None:
    taxonomy = load_taxonomy_text(GOOD)
    stage, risk, value = taxonomy.dimensions
    inquiry = stage.tags[0]
    assert (inquiry.name, inquiry.color, inquiry.ttl_days, inquiry.auto_apply) == (
        "询价客户",
        "#2F80ED",
        90,
        False,
    )
    assert inquiry.keywords == ("报价", "询价", "多少钱") and inquiry.exclude == ("价格战",)
    deepest = inquiry.children[0].children[0]
    assert deepest.path == ("询价客户", "大客户询价", "政府采购询价") and deepest.dimension == "stage"
    assert risk.visibility is Visibility.MANAGERS and risk.tags[0].auto_apply
    assert value.exclusive and not stage.exclusive
    assert dict(taxonomy.channels) == {"expo_sh_2024": "询价客户"}
    assert taxonomy.keyword_count == 7


def test_json_is_accepted_and_guessed() -> None:
    data = {
        "version": 1,
        "dimensions": [{"key": "basic", "name": "基础属性", "tags": [{"name": "企业客户"}]}],
    }
    text = json.dumps(data, ensure_ascii=False)
    assert (
        load_taxonomy_text(text)
        == load_taxonomy_text(text, fmt="json")
        == load_taxonomy_text(text, fmt="yaml")
    )


def test_names_and_keywords_are_trimmed_and_bom_ignored() -> None:
    text = "\ufeff" + one_tag("name: '  沉默客户 '\nkeywords: [' 很久没联系 ']")
    tag = load_taxonomy_text(text).dimensions[0].tags[0]
    assert (tag.name, tag.keywords) == ("沉默客户", ("很久没联系",))


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_dump_round_trips_and_keeps_chinese(fmt: str) -> None:
    taxonomy = load_taxonomy_text(GOOD)
    dumped = dump_taxonomy(taxonomy, fmt)
    assert "询价客户" in dumped and "\\u" not in dumped
    assert load_taxonomy_text(dumped, fmt=fmt) == taxonomy


def test_empty_optional_lists_are_null_in_yaml() -> None:
    text = (
        "version: 1\ndimensions:\n  - key: stage\n    name: 需求阶段\n    tags:\n  - key: basic\n"
        "    name: 基础属性\n    tags:\n      - name: 企业客户\n        keywords:\n"
        "        children:\nchannels:\n"
    )
    taxonomy = load_taxonomy_text(text)
    assert taxonomy.dimensions[0].tags == () and taxonomy.dimensions[1].tags[0].keywords == ()


def test_yaml_dump_writes_keyword_lists_on_one_line() -> None:
    dumped = dump_taxonomy(load_taxonomy_text(GOOD), "yaml")
    assert "    keywords: [报价, 询价, 多少钱]\n" in dumped
    assert "    exclude: [价格战]\n" in dumped


tricky = st.text(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x4E40)
    | st.sampled_from(",[]{}:#&*!|>'\"%@` -?~abcXYZ"),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() != "")


@settings(max_examples=60, deadline=None)
@given(st.lists(tricky, min_size=1, max_size=6), st.sampled_from(["yaml", "json"]))
def test_dump_round_trips_awkward_keywords(words: list[str], fmt: str) -> None:
    from tagging.normaliser import name_key

    unique = list({name_key(w): w for w in words}.values())
    data = {
        "version": 1,
        "dimensions": [
            {
                "key": "stage",
                "name": "需求阶段",
                "tags": [{"name": "询价客户", "keywords": unique, "exclude": unique[:1]}],
            }
        ],
    }
    taxonomy = load_taxonomy_text(json.dumps(data, ensure_ascii=False), fmt="json")
    assert load_taxonomy_text(dump_taxonomy(taxonomy, fmt), fmt=fmt) == taxonomy


def test_dump_refuses_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'toml'"):
        dump_taxonomy(load_taxonomy_text(GOOD), "toml")


def test_load_file_by_extension(tmp_path: Path) -> None:
    taxonomy = load_taxonomy_text(GOOD)
    (tmp_path / "a.yml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.json").write_text(dump_taxonomy(taxonomy, "json"), encoding="utf-8")
    assert load_taxonomy_file(tmp_path / "a.yml") == load_taxonomy_file(tmp_path / "b.json") == taxonomy


# ---------------------------------------------------------------- file-level problems


def test_empty_file() -> None:
    assert refused("") == [("", "the file is empty; it needs 'version: 1' and 'dimensions'")]
    assert refused("# 只有注释\n") == [("", "the file is empty; it needs 'version: 1' and 'dimensions'")]


def test_root_must_be_a_mapping() -> None:
    assert refused("- 询价客户\n") == [("", "the top level must be a mapping (key: value), got a list")]


def test_yaml_syntax_error_has_line_and_column() -> None:
    [(path, reason)] = refused("version: 1\ndimensions:\n  - key: stage\n   name: 需求阶段\n")
    assert path == "" and reason.startswith("YAML syntax error at line 4, column 4: ")


def test_json_syntax_error_has_line_and_column() -> None:
    [(_, reason)] = refused('{"version": 1,\n "dimensions": [,]}', fmt="json")
    assert reason.startswith("JSON syntax error at line 2, column 17")


def test_yaml_anchors_and_aliases_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    [(_, reason)] = refused(bomb)
    assert "line 1, column 4" in reason and "anchors and aliases" in reason


def test_duplicate_keys_are_refused() -> None:
    [(_, reason)] = refused("version: 1\nversion: 1\ndimensions: []\n")
    assert reason == "YAML syntax error at line 2, column 1: duplicate key 'version' in one mapping"
    [(_, reason)] = refused('{"version": 1, "version": 1}', fmt="json")
    assert "duplicate key 'version'" in reason


def test_deep_nesting_is_refused_not_crashing() -> None:
    [(_, reason)] = refused("[" * 5000 + "]" * 5000, fmt="json")
    assert "too deep" in reason


def test_oversized_input_is_refused() -> None:
    [(_, reason)] = refused("#" * (MAX_BYTES + 1))
    assert reason == "file is larger than 2 MB"


def test_unknown_format_name() -> None:
    assert refused(GOOD, fmt="toml") == [("", "unknown format 'toml'; use 'yaml' or 'json'")]


def test_unreadable_and_misnamed_files(tmp_path: Path) -> None:
    missing = tmp_path / "缺失.yaml"
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy_file(missing)
    assert info.value.problems == (
        Problem(str(missing), "", "cannot read the file: No such file or directory"),
    )
    with pytest.raises(TaxonomyError, match=r"unknown file extension; use \.yaml, \.yml or \.json"):
        load_taxonomy_file(tmp_path / "tags.txt")
    latin1 = tmp_path / "gbk.yaml"
    latin1.write_bytes("version: 1 # 标签".encode("gbk"))
    with pytest.raises(TaxonomyError, match="not UTF-8 text"):
        load_taxonomy_file(latin1)


# ---------------------------------------------------------------- structural rules


def test_version_must_be_1() -> None:
    text = GOOD.replace("version: 1", "version: 2")
    assert refused(text) == [("version", "unsupported version 2; this Kebiao reads version 1")]
    assert refused(GOOD.replace("version: 1", "version: '1'")) == [
        ("version", "unsupported version '1'; this Kebiao reads version 1")
    ]


def test_required_top_level_keys() -> None:
    assert refused("version: 1\n") == [
        ("dimensions", "'dimensions' is required"),
        ("dimensions", "'dimensions' is empty; a taxonomy needs at least one dimension"),
    ]
    assert ("version", "'version' is required") in refused(GOOD.replace("version: 1\n", ""))


def test_unknown_keys_name_the_allowed_ones() -> None:
    problems = refused(one_tag("name: 询价客户\ncolour: '#2F80ED'"))
    assert problems == [
        (
            "dimensions[0].tags[0].colour",
            "unknown key 'colour'; did you mean 'color'? allowed keys: name, color, description, keywords, "
            "exclude, ttl_days, auto_apply, children",
        )
    ]
    [(path, reason)] = refused(GOOD + "owner: 张三\n")
    allowed = "version, dimensions, channels, rules, webhooks"
    assert path == "owner" and reason == f"unknown key 'owner'; allowed keys: {allowed}"


def test_dimension_key_must_be_a_stable_identifier() -> None:
    [(path, reason)] = refused(GOOD.replace("key: stage", "key: 需求"))
    assert path == "dimensions[0].key"
    assert reason.startswith("key '需求' is not a stable identifier; use lower-case letters, digits and '_'")
    assert refused(GOOD.replace("key: stage", "key: 2stage"))[0][0] == "dimensions[0].key"
    assert refused(GOOD.replace("key: stage", "key: Stage"))[0][0] == "dimensions[0].key"


def test_dimension_keys_and_names_unique() -> None:
    text = GOOD.replace("key: risk", "key: stage").replace("name: 价值等级", "name: 需求阶段")
    assert refused(text) == [
        ("dimensions[1].key", "key 'stage' is already used by dimensions[0]"),
        ("dimensions[2].name", "name '需求阶段' is already used by dimensions[0]"),
    ]


def test_visibility_and_exclusive_values() -> None:
    text = GOOD.replace("visibility: managers", "visibility: 经理").replace(
        "exclusive: true", "exclusive: 是"
    )
    assert refused(text) == [
        ("dimensions[1].visibility", "visibility '经理' is not one of: all, managers"),
        ("dimensions[2].exclusive", "'exclusive' must be true or false, got a string"),
    ]


def test_wrong_container_types_are_named() -> None:
    assert refused("version: 1\ndimensions: {stage: 需求阶段}\n") == [
        ("dimensions", "'dimensions' must be a list, got a mapping")
    ]
    assert refused("version: 1\ndimensions: [需求阶段]\n") == [
        ("dimensions[0]", "a dimension must be a mapping (key: value), got a string")
    ]
    assert refused("version: 1\ndimensions:\n  - {key: stage, name: 需求阶段, tags: 询价客户}\n") == [
        ("dimensions[0].tags", "'tags' must be a list, got a string")
    ]
    assert refused(one_tag("name: 询价客户\nchildren: 大客户")) == [
        ("dimensions[0].tags[0].children", "'children' must be a list of tags, got a string")
    ]
    assert refused(one_tag("name: 询价客户\nkeywords: 报价")) == [
        ("dimensions[0].tags[0].keywords", "'keywords' must be a list of strings, got a string")
    ]


def test_tag_name_required_and_non_empty() -> None:
    assert refused(one_tag("keywords: [报价]")) == [("dimensions[0].tags[0].name", "'name' is required")]
    assert refused(one_tag("name: '  '")) == [("dimensions[0].tags[0].name", "tag name must not be empty")]
    assert refused(one_tag("name: 123")) == [
        ("dimensions[0].tags[0].name", "tag name must be a string, got a number (123); quote it in YAML")
    ]
    assert refused(one_tag("name: " + "长" * 51)) == [
        ("dimensions[0].tags[0].name", "tag name is 51 characters long; at most 50 allowed")
    ]


def test_tag_name_must_not_clash_with_command_syntax() -> None:
    for name in ("+VIP", "-沉默", "展会;官网", "stage:询价"):
        [(path, reason)] = refused(one_tag(f"name: '{name}'"))
        assert path == "dimensions[0].tags[0].name" and "must not start with '+' or '-'" in reason


def test_tag_names_unique_after_normalisation_across_levels() -> None:
    text = GOOD.replace("name: 普通客户", "name: ' ｖｉｐ客户'").replace(
        "name: 政府采购询价", "name: 询价客戶"
    )
    assert refused(text) == [
        (
            "dimensions[0].tags[0].children[0].children[0].name",
            "tag name '询价客戶' is already used by dimensions[0].tags[0].name in this dimension (same after "
            "normalisation: full-width, case and traditional/simplified forms count as equal)",
        ),
        (
            "dimensions[2].tags[1].name",
            "tag name 'ｖｉｐ客户' is already used by dimensions[2].tags[0].name in this dimension "
            "(same after normalisation: full-width, case and traditional/simplified forms count as equal)",
        ),
    ]


def test_same_name_in_two_dimensions_is_allowed() -> None:
    text = GOOD.replace("name: 普通客户", "name: 售后工单")
    assert load_taxonomy_text(text).dimension("value") is not None


def test_at_most_three_levels() -> None:
    text = GOOD.replace(
        "keywords: [政府采购]",
        "keywords: [政府采购]\n                children:\n                  - name: 第四层",
    )
    assert refused(text) == [
        (
            "dimensions[0].tags[0].children[0].children[0].children",
            "tags nest at most 3 levels; this tag is already at level 3",
        )
    ]


def test_colour_format() -> None:
    assert refused(one_tag("name: 询价客户\ncolor: '#2F80E'")) == [
        ("dimensions[0].tags[0].color", "color '#2F80E' is not #RRGGBB (e.g. \"#2F80ED\"; quote it in YAML)")
    ]
    assert refused(one_tag("name: 询价客户\ncolor: 蓝色")) == [
        ("dimensions[0].tags[0].color", "color '蓝色' is not #RRGGBB (e.g. \"#2F80ED\"; quote it in YAML)")
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0", "a number (0)"),
        ("-5", "a number (-5)"),
        ("1.5", "a number (1.5)"),
        ("'30'", "'30'"),
        ("true", "true/false (True)"),
        ("3651", "a number (3651)"),
    ],
)
def test_ttl_days_positive_whole_number(value: str, shown: str) -> None:
    assert refused(one_tag(f"name: 询价客户\nttl_days: {value}")) == [
        (
            "dimensions[0].tags[0].ttl_days",
            f"ttl_days must be a whole number of days from 1 to 3650, got {shown}",
        )
    ]


def test_auto_apply_is_bool() -> None:
    assert refused(one_tag("name: 售后工单\nauto_apply: 'yes'")) == [
        ("dimensions[0].tags[0].auto_apply", "'auto_apply' must be true or false, got a string")
    ]


def test_keywords_non_empty_strings_without_duplicates() -> None:
    problems = refused(one_tag("name: 询价客户\nkeywords: [报价, '', 报價, ＱＵＯＴＥ, quote, [x], 8848]"))
    path = "dimensions[0].tags[0].keywords"
    assert problems == [
        (f"{path}[1]", "keyword must not be empty"),
        (f"{path}[2]", f"'报價' repeats {path}[0] (same after normalisation)"),
        (f"{path}[4]", f"'quote' repeats {path}[3] (same after normalisation)"),
        (f"{path}[5]", "keyword must be a string, got a list"),
        (f"{path}[6]", "keyword must be a string, got a number (8848); quote it in YAML"),
    ]


def test_exclude_follows_keyword_rules() -> None:
    assert refused(one_tag("name: 询价客户\nexclude: [价格战, 价格战]")) == [
        (
            "dimensions[0].tags[0].exclude[1]",
            "'价格战' repeats dimensions[0].tags[0].exclude[0] (same after normalisation)",
        )
    ]


def test_control_characters_refused() -> None:
    assert refused(one_tag('name: "询价\\t客户"')) == [
        ("dimensions[0].tags[0].name", "tag name contains a control character (tab, newline …); remove it")
    ]


def test_personal_data_refused_without_echoing_it() -> None:
    text = one_tag(
        "name: 张三13812345678\ndescription: 身份证11010519491231002X\n"
        "keywords: [报价, '6222 0212 3456 7890 128']"
    )
    problems = refused(text)
    assert [p for p, _ in problems] == [
        "dimensions[0].tags[0].name",
        "dimensions[0].tags[0].description",
        "dimensions[0].tags[0].keywords[1]",
    ]
    assert problems[0][1] == (
        "tag name contains personal data (a mobile phone number at character 3); "
        "tags must never hold ID, phone or bank card numbers"
    )
    assert "an ID card number" in problems[1][1]
    joined = " ".join(r for _, r in problems)
    assert "13812345678" not in joined and "1231002X" not in joined


def test_channels_must_name_an_existing_unambiguous_tag() -> None:
    text = (
        GOOD.replace("name: 普通客户", "name: 售后工单")
        + "  '2024': 没有这个标签\n  展会: 售后工单\n  sh: 7\n"
    )
    text = text.replace("  expo_sh_2024: 询价客户\n", "  expo_sh_2024: 询价客户\n  2024: 询价客户\n")
    problems = refused(text)
    assert problems == [
        (
            "channels.2024",
            "channel state must be a non-empty string of at most 30 characters (quote numbers in "
            "YAML), got a number (2024)",
        ),
        ("channels.2024", "tag '没有这个标签' is not in the taxonomy; add it to a dimension first"),
        ("channels.展会", "tag '售后工单' exists in several dimensions (risk, value); rename one"),
        ("channels.sh", "channel tag must be a tag name (string), got a number (7)"),
    ]


def test_channel_tag_name_is_canonicalised() -> None:
    taxonomy = load_taxonomy_text(GOOD.replace("expo_sh_2024: 询价客户", "expo_sh_2024: ' 詢價客户'"))
    assert dict(taxonomy.channels) == {"expo_sh_2024": "询价客户"}


def test_every_problem_listed_in_one_error() -> None:
    text = (
        GOOD.replace("version: 1", "version: 3")
        .replace('"#2F80ED"', "blue")
        .replace("ttl_days: 90", "ttl_days: 0")
    )
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy_text(text, source="公司标签.yaml")
    message = str(info.value)
    assert message.splitlines() == [
        "taxonomy refused (3 problems):",
        "  公司标签.yaml:version: unsupported version 3; this Kebiao reads version 1",
        "  公司标签.yaml:dimensions[0](stage).tags[0](询价客户).color: color 'blue' is not #RRGGBB "
        '(e.g. "#2F80ED"; quote it in YAML)',
        "  公司标签.yaml:dimensions[0](stage).tags[0](询价客户).ttl_days: ttl_days must be a whole number of days "
        "from 1 to 3650, got a number (0)",
    ]


# ---------------------------------------------------------------- name_key collisions (property)

latin_names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=6)
chinese_names = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), min_size=1, max_size=4)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@settings(max_examples=40, deadline=None)
@given(latin_names, chinese_names, st.sampled_from(["upper", "full", "spaces", "full_upper"]))
def test_name_variants_collide(latin: str, han: str, variant: str) -> None:
    name = latin + han
    other = {
        "upper": latin.upper() + han,
        "full": _full_width(latin) + han,
        "spaces": f"  {name} ",
        "full_upper": _full_width(latin.upper()) + han,
    }[variant]
    text = (
        f"version: 1\ndimensions:\n  - key: basic\n    name: 基础属性\n    tags:\n      - name: '{name}'\n"
        f"      - name: '{other}'\n"
    )
    [(path, reason)] = refused(text)
    assert path == "dimensions[0].tags[1].name" and "is already used by dimensions[0].tags[0].name" in reason


@settings(max_examples=40, deadline=None)
@given(st.lists(chinese_names, min_size=1, max_size=5, unique=True))
def test_distinct_names_load_and_round_trip(names: list[str]) -> None:
    from tagging.normaliser import name_key

    if len({name_key(n) for n in names}) != len(names):
        return  # two characters that are traditional/simplified forms of each other
    tags = "".join(f"      - name: '{n}'\n        keywords: ['{n}']\n" for n in names)
    text = f"version: 1\ndimensions:\n  - key: basic\n    name: 基础属性\n    tags:\n{tags}"
    taxonomy = load_taxonomy_text(text)
    assert [t.name for t in taxonomy.iter_tags()] == names
    assert load_taxonomy_text(dump_taxonomy(taxonomy, "json")) == taxonomy


# ---------------------------------------------------------------- merging

EXTRA = """\
version: 1
dimensions:
  - key: stage
    name: 需求阶段
    tags:
      - name: 询价客户
        children:
          - name: 样品询价
            keywords: [样品价格]
      - name: 招投标
        keywords: [招标, 投标]
  - key: region
    name: 区域
    exclusive: true
    tags:
      - name: 长三角
channels:
  tender_2024: 招投标
"""


def test_merge_appends_dimensions_tags_children_and_channels() -> None:
    merged = merge_taxonomies(load_taxonomy_text(GOOD), load_taxonomy_text(EXTRA))
    assert [d.key for d in merged.dimensions] == ["stage", "risk", "value", "region"]
    stage = merged.dimension("stage")
    assert stage is not None
    assert [t.name for t in stage.tags] == ["询价客户", "招投标"]
    assert [c.name for c in stage.tags[0].children] == ["大客户询价", "样品询价"]
    assert stage.tags[0].children[1].path == ("询价客户", "样品询价")
    assert dict(merged.channels) == {"expo_sh_2024": "询价客户", "tender_2024": "招投标"}


def test_merge_conflicts_are_all_reported() -> None:
    extra = (
        EXTRA.replace("name: 需求阶段", "name: 阶段")
        .replace("      - name: 招投标\n", "      - name: 招投标\n      - name: 售后工单\n")
        .replace("      - name: 询价客户\n", "      - name: 询价客户\n        color: '#000000'\n")
    )
    extra = extra.replace("key: region", "key: risk").replace("name: 区域", "name: 风险与问题")
    with pytest.raises(TaxonomyError) as info:
        merge_taxonomies(load_taxonomy_text(GOOD), load_taxonomy_text(extra), source="extra.yaml")
    assert [(p.path, p.reason) for p in info.value.problems] == [
        (
            "dimensions[0].name",
            "dimension 'stage' has name '阶段' here but '需求阶段' in the base taxonomy; "
            "use the same name or another key",
        ),
        (
            "dimensions[0].tags[0].name",
            "tag '询价客户' is already defined in the base taxonomy; to add sub-tags "
            "under it give only its name and children, otherwise rename it",
        ),
        (
            "dimensions[1].exclusive",
            "dimension 'risk' has exclusive True here but False in the base taxonomy; "
            "use the same exclusive or another key",
        ),
        (
            "dimensions[1].visibility",
            "dimension 'risk' has visibility 'all' here but 'managers' in the base "
            "taxonomy; use the same visibility or another key",
        ),
    ]


def test_merge_detects_name_clash_at_another_level_and_channel_conflict() -> None:
    extra = EXTRA.replace("tender_2024: 招投标", "expo_sh_2024: 长三角")
    with pytest.raises(TaxonomyError) as info:
        merge_taxonomies(load_taxonomy_text(GOOD), load_taxonomy_text(extra))
    reasons = [p.reason for p in info.value.problems]
    assert reasons == ["state 'expo_sh_2024' maps to '长三角' here but to '询价客户' in the base taxonomy"]
    with pytest.raises(TaxonomyError) as info:
        merge_taxonomies(load_taxonomy_text(GOOD), load_taxonomy_text(EXTRA.replace("招投标", "大客户询价")))
    assert "tag name '大客户询价' is already used by" in info.value.problems[0].reason


# ---------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KEBIAO), *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


@pytest.fixture(scope="module", autouse=False)
def cli() -> None:
    if not KEBIAO.exists():
        pytest.fail(f"{KEBIAO} is missing; run `make test` to create the virtualenv", pytrace=False)


def test_cli_validate_good_file(tmp_path: Path, cli: None) -> None:
    path = tmp_path / "公司标签.yaml"
    path.write_text(GOOD, encoding="utf-8")
    result = run_cli("taxonomy", "validate", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: valid: 3 dimensions, 6 tags, 7 keywords\n"


def test_cli_validate_lists_every_problem(tmp_path: Path, cli: None) -> None:
    path = tmp_path / "bad.json"
    tag = {"name": "询价客户", "color": "blue", "ttl_days": -1}
    data = {"version": 1, "dimensions": [{"key": "Stage", "name": "需求阶段", "tags": [tag]}]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = run_cli("taxonomy", "validate", str(path))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{path}:dimensions[0](Stage).key",
        f"{path}:dimensions[0](Stage).tags[0](询价客户).color",
        f"{path}:dimensions[0](Stage).tags[0](询价客户).ttl_days",
    ]


def test_cli_validate_with_template(tmp_path: Path, cli: None) -> None:
    path = tmp_path / "extra.yaml"
    path.write_text(EXTRA, encoding="utf-8")
    ok = run_cli("taxonomy", "validate", str(path), "--template", "retail")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{path}: valid (merged over built-in + retail): 6 dimensions, ")
    clash = tmp_path / "clash.yaml"
    clash.write_text(EXTRA.replace("招投标", "咨询尺码"), encoding="utf-8")  # a retail template tag
    assert run_cli("taxonomy", "validate", str(clash)).returncode == 0
    merged = run_cli("taxonomy", "validate", str(clash), "--template", "retail")
    assert merged.returncode == 1
    assert merged.stderr == (
        f"{clash}:dimensions[0].tags[1].name: tag '咨询尺码' is already defined in the base taxonomy; "
        "to add sub-tags under it give only its name and children, otherwise rename it\n"
    )
    bad = run_cli("taxonomy", "validate", str(path), "--template", "banking")
    assert bad.returncode == 2 and "invalid choice: 'banking'" in bad.stderr


def test_cli_missing_file_and_help(cli: None) -> None:
    missing = run_cli("taxonomy", "validate", "没有.yaml")
    assert (missing.returncode, missing.stderr) == (
        1,
        "没有.yaml: cannot read the file: No such file or directory\n",
    )
    helped = run_cli("taxonomy", "validate", "--help")
    assert (
        helped.returncode == 0 and "FILE:PATH: REASON" in helped.stdout and "--template NAME" in helped.stdout
    )
    group = run_cli("taxonomy", "--help")
    assert group.returncode == 0 and "validate" in group.stdout
    assert run_cli("taxonomy").returncode == 2


def test_paths_mask_personal_numbers_used_as_keys() -> None:
    text = GOOD + "  '13812345678': 没有的标签\n"
    [(path, _)] = refused(text)
    assert path == "channels.***********"
    [(path, reason)] = refused(one_tag("name: 询价客户\n'13812345678': x"))
    assert path == "dimensions[0].tags[0].***********" and "13812345678" not in reason
