"""The taxonomy's `sync` and `crm_fields` keys: validated, dumped and stored like every other key."""

from __future__ import annotations

import pytest

from storage.taxonomy_document import from_document, to_document
from tagging.loader import TaxonomyError, dump_taxonomy, load_taxonomy_text
from tagging.taxonomy import SyncMode
from tests.crm.conftest import TAXONOMY


def test_sync_keys_round_trip_through_file_and_store() -> None:
    taxonomy = load_taxonomy_text(TAXONOMY)
    basic = taxonomy.dimension("basic")
    assert basic is not None and basic.sync is SyncMode.CRM
    assert dict(basic.crm_fields["kb_industry"]) == {"Manufacturing": "制造业", "Retail": "零售电商"}
    assert load_taxonomy_text(dump_taxonomy(taxonomy)) == taxonomy
    assert from_document(to_document(taxonomy), 1) == taxonomy


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("sync: crm\n    crm_fields", "sync: master\n    crm_fields", "sync 'master' is not one of: crm, kebiao, none"),
        ("Retail: 零售电商", "Retail: 金融", "value 'Retail' maps to '金融', which is not a tag of this dimension"),
        (
            "name: 价值等级\n    exclusive: true\n    sync: kebiao",
            "name: 价值等级\n    exclusive: true\n    sync: kebiao\n    crm_fields: {x: {a: VIP客户}}",
            "'crm_fields' needs 'sync: crm'",
        ),
    ],
)
def test_bad_sync_keys_are_refused_with_where_and_why(old: str, new: str, reason: str) -> None:
    assert old in TAXONOMY
    with pytest.raises(TaxonomyError) as caught:
        load_taxonomy_text(TAXONOMY.replace(old, new), source="crm.yaml")
    assert any(reason in p.reason for p in caught.value.problems), caught.value
