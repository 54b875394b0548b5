"""Regional tag libraries and tag icons in the taxonomy file: loading, validation, scope and round trip."""

from __future__ import annotations

import pytest

from tagging.loader import TaxonomyError, dump_taxonomy, load_taxonomy_text
from tagging.policy import PolicyRefusal, refuse_out_of_scope
from tagging.regions import in_scope, is_single_emoji, tag_scope

REGIONAL = """
version: 1
regions: [华北, 华东, 华南]
dimensions:
  - key: need
    name: 需求
    tags:
      - name: 采暖设备意向
        icon: "🔥"
        regions: [华北]
        keywords: [暖气, 采暖]
        children:
          - name: 地暖
            keywords: [地暖]
      - name: 询价客户
        icon: "💰"
        keywords: [报价]
  - key: north
    name: 华北专项
    regions: [华北]
    tags:
      - name: 冬季保供
        keywords: [保供]
"""


def test_regions_and_icons_load_and_round_trip() -> None:
    taxonomy = load_taxonomy_text(REGIONAL)
    need, north = taxonomy.dimensions
    heating, ask = need.tags
    floor = heating.children[0]
    assert taxonomy.regions == ("华北", "华东", "华南")
    assert (heating.icon, heating.regions, ask.icon, ask.regions) == ("🔥", ("华北",), "💰", ())
    assert tag_scope(need, floor) == ("华北",)  # a sub-tag inherits its parent's scope
    assert tag_scope(north, north.tags[0]) == ("华北",)  # and a tag its dimension's
    assert in_scope(need, floor, "华北") and not in_scope(need, floor, "华东") and not in_scope(need, floor, "")
    assert in_scope(need, ask, "华东") and in_scope(need, ask, "")
    assert load_taxonomy_text(dump_taxonomy(taxonomy)) == taxonomy


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        (
            ("regions: [华北]\n        keywords", "regions: [西北]\n        keywords"),
            "regions[0]",
            "not in the taxonomy's regions list (华北, 华东, 华南)",
        ),
        (("regions: [华北]\n        keywords", "regions: []\n        keywords"), ".regions", "non-empty list"),
        (
            ("regions: [华北]\n        keywords", "regions: [华北, 华北]\n        keywords"),
            "regions[1]",
            "listed twice",
        ),
        (
            ("          - name: 地暖\n", "          - name: 地暖\n            regions: [华东]\n"),
            "children[0].regions",
            "outside the enclosing scope (华北)",
        ),
        (('icon: "🔥"', 'icon: "热"'), ".icon", "exactly one emoji"),
        (('icon: "🔥"', 'icon: "🔥🔥"'), ".icon", "exactly one emoji"),
        (('icon: "🔥"', "icon: 5"), ".icon", "exactly one emoji"),
    ],
)
def test_bad_regions_and_icons_are_refused_with_their_place(change: tuple[str, str], where: str, reason: str) -> None:
    text = REGIONAL.replace(*change, 1)
    assert text != REGIONAL
    with pytest.raises(TaxonomyError) as caught:
        load_taxonomy_text(text)
    assert any(where in p.path and reason in p.reason for p in caught.value.problems), caught.value.problems


def test_any_region_name_without_a_known_list() -> None:
    taxonomy = load_taxonomy_text(REGIONAL.replace("regions: [华北, 华东, 华南]\n", "").replace("[华北]", "[西北]"))
    assert taxonomy.regions == () and taxonomy.dimensions[0].tags[0].regions == ("西北",)


def test_refusal_names_the_scope_and_the_customer_region() -> None:
    taxonomy = load_taxonomy_text(REGIONAL)
    need = taxonomy.dimensions[0]
    refuse_out_of_scope(need, need.tags[0], "华北")
    with pytest.raises(PolicyRefusal, match="only for customers of 华北; this customer is of region 华东") as caught:
        refuse_out_of_scope(need, need.tags[0], "华东")
    assert "只用于华北的客户" in caught.value.zh  # type: ignore[attr-defined]


@pytest.mark.parametrize("icon", ["🔥", "👍🏽", "🇨🇳", "👨‍👩‍👧", "❤️", "⭐"])
def test_single_emoji(icon: str) -> None:
    assert is_single_emoji(icon)


@pytest.mark.parametrize("icon", ["", "a", "🔥🔥", "😀x", "1️⃣", "\u200d", "🔥 "])
def test_not_single_emoji(icon: str) -> None:
    assert not is_single_emoji(icon)
