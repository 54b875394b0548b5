"""Built-in taxonomy and the six industry templates."""

from __future__ import annotations

from importlib import resources

import pytest

from tagging.builtin import TEMPLATES, load_builtin
from tagging.loader import TaxonomyError, dump_taxonomy, load_taxonomy_text
from tagging.normaliser import name_key
from tagging.pii import contains_pii
from tagging.taxonomy import Visibility

STANDARD = {
    "basic": "基础属性",
    "value": "价值等级",
    "behavior": "行为特征",
    "stage": "需求阶段",
    "risk": "风险与问题",
}


def template_text(name: str) -> str:
    return resources.files("tagging.builtin").joinpath(f"templates/{name}.yaml").read_text(encoding="utf-8")


def test_template_names() -> None:
    assert TEMPLATES == ("saas", "consulting", "retail", "manufacturing", "education", "finance")


def test_default_has_the_five_standard_dimensions() -> None:
    taxonomy = load_builtin()
    assert {d.key: d.name for d in taxonomy.dimensions} == STANDARD
    value, risk = taxonomy.dimension("value"), taxonomy.dimension("risk")
    assert value is not None and value.exclusive
    assert risk is not None and risk.visibility is Visibility.MANAGERS


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_file_is_valid_on_its_own(name: str) -> None:
    template = load_taxonomy_text(template_text(name), source=f"{name}.yaml", fmt="yaml")
    for dim in template.dimensions:
        if dim.key in STANDARD:
            assert dim.name == STANDARD[dim.key]
    keys = [d.key for d in template.dimensions]
    assert set(STANDARD) <= set(keys), f"{name} should add tags to every standard dimension"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_merges_over_default_and_adds_industry_tags(name: str) -> None:
    base = load_builtin()
    merged = load_builtin(name)
    base_names = {(t.dimension, name_key(t.name)) for t in base.iter_tags()}
    added = [t for t in merged.iter_tags() if (t.dimension, name_key(t.name)) not in base_names]
    assert len(added) >= 10
    assert sum(len(t.keywords) for t in added) >= 25
    assert all(t.color is not None and t.color.startswith("#") for t in added)
    assert all(t.level <= 3 for t in merged.iter_tags())
    # Every base tag survives unchanged apart from children added under it.
    for old in base.iter_tags():
        new = next(t for t in merged.iter_tags() if t.dimension == old.dimension and t.name == old.name)
        assert (new.keywords, new.color, new.ttl_days, new.auto_apply) == (
            old.keywords,
            old.color,
            old.ttl_days,
            old.auto_apply,
        )


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_text_is_chinese_and_free_of_personal_data(name: str) -> None:
    merged = load_builtin(name)
    for tag in merged.iter_tags():
        for text in (tag.name, tag.description or "", *tag.keywords, *tag.exclude):
            assert not contains_pii(text), (tag.name, text)
    assert sum(any("\u4e00" <= c <= "\u9fa5" for c in t.name) for t in merged.iter_tags()) >= 40


@pytest.mark.parametrize("name", [None, *TEMPLATES])
def test_builtin_round_trips_through_dump(name: str | None) -> None:
    taxonomy = load_builtin(name)
    assert load_taxonomy_text(dump_taxonomy(taxonomy, "yaml")) == taxonomy
    assert load_taxonomy_text(dump_taxonomy(taxonomy, "json")) == taxonomy


def test_manufacturing_adds_sub_industries_under_the_default_industry_tag() -> None:
    basic = load_builtin("manufacturing").dimension("basic")
    assert basic is not None
    auto = next(t for t in basic.iter_tags() if t.name == "汽车零部件")
    assert auto.path == ("行业", "制造业", "汽车零部件")
    assert "主机厂" in auto.keywords


def test_saas_adds_an_industry_dimension() -> None:
    product = load_builtin("saas").dimension("product")
    assert product is not None and product.name == "产品模块"
    assert [t.name for t in product.tags] == ["CRM模块", "审批流模块", "数据报表模块"]


def test_finance_compliance_tags_are_managers_only() -> None:
    risk = load_builtin("finance").dimension("risk")
    assert risk is not None and risk.visibility is Visibility.MANAGERS
    compliance = next(t for t in risk.tags if t.name == "合规敏感")
    assert "保本" in compliance.keywords and compliance.auto_apply


def test_unknown_template_lists_the_valid_names() -> None:
    with pytest.raises(TaxonomyError) as info:
        load_builtin("银行")
    [problem] = info.value.problems
    assert problem.reason == (
        "unknown template '银行'; choose one of: saas, consulting, retail, manufacturing, education, finance"
    )
