"""Tag report rules a first look got wrong: near-duplicate names, parent tags, and the text rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from core.reports.tag_health import (
    HolderRow,
    ReportRows,
    build_tag_report,
    display_width,
    pad,
    render_report_text,
    similar_names,
)
from tagging.taxonomy import Dimension, TagDef, Taxonomy

NOW = datetime(2026, 12, 5, 22, 22, 7, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("vip客户", "vlp客户"),  # a Latin typo
        ("询价客户", "询价的客户"),  # an extra particle
        ("企业客户", "企业客户群"),
        ("saas客户", "saas客户s"),
    ],
)
def test_names_one_harmless_edit_apart_are_merge_candidates(a: str, b: str) -> None:
    assert similar_names(a, b) and similar_names(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("大型企业", "中型企业"),  # one Chinese character swapped: a different size class
        ("高价值客户", "低价值客户"),
        ("意向客户", "无意向客户"),  # an added negator flips the meaning
        ("已续费", "未续费"),
        ("询价客户", "售后工单"),
        ("询价客户", "询价客户"),
    ],
)
def test_names_that_differ_in_meaning_are_not(a: str, b: str) -> None:
    assert not similar_names(a, b) and not similar_names(b, a)


def _tag(name: str, *children: TagDef, parent: tuple[str, ...] = ()) -> TagDef:
    return TagDef(name=name, dimension="basic", path=(*parent, name), children=children)


def _taxonomy() -> Taxonomy:
    region = _tag("地区", _tag("华东", parent=("地区",)), _tag("华南", parent=("地区",)), parent=())
    size = _tag("公司规模", _tag("大型企业", parent=("公司规模",)), _tag("中型企业", parent=("公司规模",)))
    return Taxonomy(
        version=1,
        dimensions=(
            Dimension(key="basic", name="基础属性", tags=(region, size, _tag("企业客户"), _tag("企业客户群"))),
        ),
    )


def test_parent_tags_are_never_retire_candidates_and_size_classes_never_merge() -> None:
    report = build_tag_report(ReportRows(holders=(HolderRow("basic", "华东", "华东", 3),)), _taxonomy(), NOW, 100)
    retire = {r.tag for r in report.retire}
    assert "地区" not in retire and "公司规模" not in retire
    assert {"华南", "大型企业", "中型企业", "企业客户"} <= retire and "华东" not in retire  # 华东 is held
    assert [(m.tag_a, m.tag_b) for m in report.merge] == [("企业客户", "企业客户群")]


def test_display_width_counts_chinese_characters_twice() -> None:
    assert display_width("VIP客户") == 7 and display_width("ＶＩＰ") == 6
    assert pad("客户", 6) == "客户  " and display_width(pad("abc", 6)) == 6


def test_text_report_header_is_local_without_microseconds_and_columns_line_up() -> None:
    report = build_tag_report(ReportRows(), _taxonomy(), NOW, 100)
    text = render_report_text(report, ZoneInfo("Asia/Shanghai"))
    lines = text.splitlines()
    assert lines[0] == "tag health at 2026-12-06 06:22:07 Asia/Shanghai"
    table = lines[2 : lines.index("", 2)]
    ends = {display_width(row[: row.index(" 0 ") + 2]) for row in table[1:]}
    assert ends == {display_width(table[0][: table[0].index("holders") + len("holders")])}
