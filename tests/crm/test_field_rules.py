"""CRM field rules: numeric ranges and value lists map CRM fields to tags, checked when the taxonomy loads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.crm.mapping import SyncRules, crm_values
from core.crm.port import CrmRecord, CrmRef
from storage.database import Database
from storage.taxonomy_document import from_document, to_document
from tagging.loader import TaxonomyError, dump_taxonomy, load_taxonomy_text
from tests.crm.conftest import DynamicsFixture

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

TAXONOMY = """
version: 1
dimensions:
  - key: basic
    name: 基础属性
    sync: crm
    crm_fields:
      industry:
        - {values: [Manufacturing, Machinery, 制造], tag: 制造业}
        - {values: [Retail, E-commerce], tag: 零售电商}
      kb_region: {East: 华东}
    tags: [{name: 制造业}, {name: 零售电商}, {name: 华东}]
  - key: value
    name: 价值等级
    exclusive: true
    sync: crm
    crm_fields:
      revenue:
        - {range: ">= 10000000", tag: 大客户}
        - {range: "1000000..10000000", tag: 中等价值}
        - {range: "< 1_000_000", tag: 低价值}
    tags: [{name: 大客户}, {name: 中等价值}, {name: 低价值}]
"""


def _record(**fields: str) -> CrmRecord:
    return CrmRecord(CrmRef("A-1", "account"), "甲公司", datetime(2026, 12, 1, tzinfo=UTC), fields=fields)


@pytest.mark.parametrize(
    ("revenue", "tag"),
    [
        ("10000000", "大客户"),
        ("25000000.50", "大客户"),
        ("1e+16", "大客户"),
        ("9999999.99", "中等价值"),
        ("1,000,000", "中等价值"),
        ("¥999999", "低价值"),
        ("-5", "低价值"),
        ("", None),
        ("unknown", None),
    ],
)
def test_ranges_pick_one_value_tag_and_bounds_meet_without_gaps(revenue: str, tag: str | None) -> None:
    rules = SyncRules.of(load_taxonomy_text(TAXONOMY))
    assert set(rules.fields) == {"industry", "kb_region", "revenue"}
    values = crm_values(rules, _record(revenue=revenue))
    assert values["value"] == ((tag,) if tag else ())


def test_value_lists_match_normalised_values_and_exact_maps_still_work() -> None:
    rules = SyncRules.of(load_taxonomy_text(TAXONOMY))
    assert crm_values(rules, _record(industry="  machinery ", kb_region="East"))["basic"] == ("制造业", "华东")
    assert crm_values(rules, _record(industry="ＲＥＴＡＩＬ"))["basic"] == ("零售电商",)
    assert crm_values(rules, _record(industry="Finance", kb_region="east"))["basic"] == ()


def test_rules_round_trip_through_file_and_store() -> None:
    taxonomy = load_taxonomy_text(TAXONOMY)
    again = load_taxonomy_text(dump_taxonomy(taxonomy))
    assert again == taxonomy and from_document(to_document(taxonomy), 1) == taxonomy
    assert dict(again.dimension("basic").crm_fields) == {"kb_region": {"East": "华东"}}  # type: ignore[union-attr]


def test_every_problem_is_listed_in_one_run_with_its_path() -> None:
    broken = (
        TAXONOMY.replace('"1000000..10000000"', '"1000000..20000000"')  # overlaps >= 10000000
        .replace('"< 1_000_000"', '"< lots"')
        .replace("{values: [Retail, E-commerce], tag: 零售电商}", "{values: [Retail], tag: 金融}")
        .replace("kb_region: {East: 华东}", "kb_size: [{range: 100, tag: 华东}, {range: '5..1', tag: 华东}]")
    )
    with pytest.raises(TaxonomyError) as caught:
        load_taxonomy_text(broken, source="crm.yaml")
    found = {(p.path, p.reason.split(";")[0]) for p in caught.value.problems}
    assert found == {
        (
            "dimensions[1].crm_fields.revenue[1].range",
            "range '1000000..20000000' (中等价值) overlaps '>= 10000000' (大客户) at "
            "dimensions[1].crm_fields.revenue[0] in an exclusive dimension",
        ),
        ("dimensions[1].crm_fields.revenue[2].range", "bound 'lots' is not a number"),
        ("dimensions[0].crm_fields.industry[1].tag", "'金融' is not a tag of this dimension"),
        (
            "dimensions[0].crm_fields.kb_size[0].range",
            "range must be text such as '>= 10000000' or '1000000..10000000', got a number (100)",
        ),
        (
            "dimensions[0].crm_fields.kb_size[1].range",
            "range '5..1' is empty: the lower end must be below the upper end",
        ),
    }
    assert "crm.yaml:dimensions[1](value).crm_fields.revenue[1].range" in str(caught.value)


def test_overlaps_are_allowed_outside_exclusive_dimensions_but_not_shared_values_inside() -> None:
    open_dim = TAXONOMY.replace('"1000000..10000000"', '"1000000..20000000"').replace(
        "exclusive: true", "exclusive: false"
    )
    rules = SyncRules.of(load_taxonomy_text(open_dim))
    assert crm_values(rules, _record(revenue="15000000"))["value"] == ("中等价值", "大客户")
    shared = TAXONOMY.replace("key: basic\n    name: 基础属性", "key: basic\n    name: 基础属性\n    exclusive: true")
    shared = shared.replace("[Retail, E-commerce]", "[Retail, machinery]")
    with pytest.raises(TaxonomyError, match=r"industry\[1\]\.values: value 'machinery' gives 零售电商 here and 制造业"):
        load_taxonomy_text(shared)
    with pytest.raises(TaxonomyError, match="give exactly one of 'values'"):
        load_taxonomy_text(TAXONOMY.replace('{range: ">= 10000000", tag: 大客户}', "{tag: 大客户}"))


async def test_a_sync_maps_money_by_value_and_choices_by_label_from_account_only_columns(
    database: Database, dynamics: DynamicsFixture
) -> None:
    from core.crm.sync import CrmSync
    from core.tags.assignments import TaggingRules
    from storage.crm import SqlCrmStore

    # Dataverse names; revenue and industrycode exist on accounts only, kb_region on neither table
    taxonomy = load_taxonomy_text(TAXONOMY.replace("industry:", "industrycode:").replace("kb_region", "kb_industry"))
    fake = dynamics.fake
    big = fake.add("accounts", "甲公司", revenue=25_000_000.0, industrycode=12)  # formatted "¥25,000,000.00"
    mid = fake.add("accounts", "乙公司", revenue=1_000_000.0, industrycode=27, kb_industry="East")
    contact = fake.add("contacts", "张三", kb_industry="East")
    connector = dynamics.connector()
    sync = CrmSync(SqlCrmStore(database.engine), connector, lambda: taxonomy, TaggingRules(), "replica-a")
    report = await sync.run(NOW)
    assert report.error is None, report.error
    assert await _held(database, big) == {("value", "大客户"), ("basic", "制造业")}
    assert await _held(database, mid) == {("value", "中等价值"), ("basic", "零售电商"), ("basic", "华东")}
    assert await _held(database, contact) == {("basic", "华东")}
    nowhere = load_taxonomy_text(TAXONOMY.replace("kb_region", "kb_nowhere"))
    sync = CrmSync(SqlCrmStore(database.engine), connector, lambda: nowhere, TaggingRules(), "replica-a")
    report = await sync.run(NOW)
    await connector.close()
    assert report.error is not None and "field industry does not exist" in report.error


async def _held(database: Database, crm_id: str) -> set[tuple[str, str]]:
    async with database.unit_of_work(read_only=True) as uow:
        (customer,) = await uow.customers.find_exact(crm_id)
        return {(a.dimension, a.tag) for a in await uow.assignments.active_for(customer.id)}
