"""A regional manager saving taxonomy drafts in the console: their region's part is saved, the rest is 403."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp.test_utils import TestClient

from app import DATABASE
from core.tags.users import set_role
from core.taxonomy.store import import_taxonomy
from core.types import Role
from tagging.loader import load_taxonomy_text, taxonomy_to_data
from tests.console.conftest import csrf_of
from tests.console.test_signin import _post_token, jwks_url, mint, teams_client
from tests.tagging.test_regions import REGIONAL

__all__ = ["jwks_url", "teams_client"]


async def test_regional_manager_saves_only_their_regions_part(teams_client: TestClient) -> None:
    async with teams_client.app[DATABASE].unit_of_work() as uow:
        now = datetime.now(UTC)
        version = (await import_taxonomy(uow, load_taxonomy_text(REGIONAL), "cli", now)).version.version
        await set_role(uow, "north-mgr", Role.MANAGER, ("华北",), now, "北区经理")
    status, _ = await _post_token(teams_client, mint("north-mgr"))
    assert status == 200
    csrf = await csrf_of(teams_client, "/console/taxonomy")

    async def save(text: str, base: int) -> tuple[int, str]:
        draft = json.dumps(taxonomy_to_data(load_taxonomy_text(text)), ensure_ascii=False)
        response = await teams_client.post(
            "/console/taxonomy/save",
            data={"csrf": csrf, "base_version": str(base), "draft": draft},
            allow_redirects=False,
        )
        return response.status, await response.text()

    status, body = await save(REGIONAL.replace("keywords: [报价]", "keywords: [报价, 价格]"), version)
    assert status == 403
    assert "you may change only dimensions and tags scoped to 华北" in body and "询价客户" in body
    status, _ = await save(REGIONAL.replace("keywords: [保供]", "keywords: [保供, 供暖保障]"), version)
    assert status == 303
