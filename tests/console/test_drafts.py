"""Pure parts of the console: tag drafts with field problems, version diffs, preview comparison, language."""

from __future__ import annotations

from datetime import UTC, datetime

from console.i18n import choose_language, translator
from core.taxonomy.diff import diff_taxonomies
from core.taxonomy.drafts import GENERAL, TagForm, edit_tag, form_for
from core.taxonomy.preview import StoredMessage, compare
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy


def test_edit_maps_loader_problems_to_fields(sample_taxonomy: Taxonomy) -> None:
    form = form_for(sample_taxonomy, "stage", "询价客户")
    assert form is not None and form.keywords == "报价、询价、多少钱" and form.ttl_days == "90"
    bad = TagForm(dimension="stage", name="售后工单", color="red", ttl_days="soon", keywords="a\x01b")
    result = edit_tag(sample_taxonomy, ("stage", "询价客户"), bad)
    assert result.taxonomy is None
    assert set(result.problems) >= {"name", "color", "ttl_days", "keywords"}
    assert "already used" in result.problems["name"][0]


def test_move_under_a_parent_and_depth_limit(sample_taxonomy: Taxonomy) -> None:
    moved = edit_tag(sample_taxonomy, ("basic", "企业客户"), TagForm(dimension="basic", parent="上海", name="企业客户"))
    assert moved.taxonomy is not None
    tag = next(t for t in moved.taxonomy.iter_tags() if t.name == "企业客户")
    assert tag.path == ("华东", "上海", "企业客户")
    too_deep = edit_tag(moved.taxonomy, None, TagForm(dimension="basic", parent="企业客户", name="更深"))
    assert too_deep.taxonomy is None and "parent" in too_deep.problems
    elsewhere = edit_tag(sample_taxonomy, None, TagForm(dimension="value", parent="上海", name="新"))
    assert "parent" in elsewhere.problems
    gone = edit_tag(sample_taxonomy, ("stage", "不存在"), TagForm(dimension="stage", name="x"))
    assert GENERAL in gone.problems


def test_diff_names_added_removed_moved_and_changed_fields(sample_taxonomy: Taxonomy) -> None:
    draft = edit_tag(
        sample_taxonomy,
        ("stage", "询价客户"),
        TagForm(dimension="stage", name="询价客户", keywords="询价", ttl_days="30"),
    ).taxonomy
    assert draft is not None
    draft = edit_tag(draft, None, TagForm(dimension="behavior", name="新客户")).taxonomy
    assert draft is not None
    draft = edit_tag(draft, ("basic", "企业客户"), TagForm(dimension="basic", parent="华东", name="企业客户")).taxonomy
    assert draft is not None
    diff = {(d.tag, d.kind): d for d in diff_taxonomies(sample_taxonomy, draft)}
    changed = diff[("询价客户", "changed")]
    assert [(c.field, c.before, c.after) for c in changed.changes] == [
        ("keywords", "报价、询价、多少钱", "询价"),
        ("ttl_days", "90", "30"),
    ]
    assert ("新客户", "added") in diff and ("企业客户", "moved") in diff
    assert diff_taxonomies(draft, sample_taxonomy)[-1].kind == "removed"


def test_compare_counts_gains_and_losses(sample_taxonomy: Taxonomy) -> None:
    draft = edit_tag(
        sample_taxonomy, ("stage", "询价客户"), TagForm(dimension="stage", name="询价客户", keywords="询价、价格")
    ).taxonomy
    assert draft is not None
    at = datetime(2026, 12, 1, tzinfo=UTC)
    messages = [
        StoredMessage(f"m{i}", 1, text, at) for i, text in enumerate(["给我报价", "价格多少", "你好", "报价单"])
    ]
    preview = compare(Matcher.build(sample_taxonomy), Matcher.build(draft), messages)
    assert (preview.messages, preview.changed) == (4, 3)
    shift = preview.shifts[0]
    assert (shift.tag, shift.gained, shift.lost) == ("询价客户", 1, 2)
    assert {c.message.text for c in preview.examples} == {"给我报价", "价格多少", "报价单"}


def test_language_choice() -> None:
    assert choose_language(None) == "zh"
    assert choose_language("en-US,en;q=0.9") == "en"
    assert choose_language("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert choose_language("en;q=0.5, zh-TW;q=0.8") == "zh"
    assert choose_language("fr-FR, en;q=0.3") == "en"
    assert choose_language("de") == "zh"
    assert translator("en")("version_n", n=3) == "Version 3" and translator("zh")("version_n", n=3) == "版本 3"
