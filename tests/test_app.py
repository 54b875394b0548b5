"""The composed application: health, readiness, and taxonomy changes taking effect without a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiohttp.test_utils import TestClient

from app import DATABASE, MATCHERS, TAXONOMY, _refresh_taxonomy, create_app
from config import Settings
from core.taxonomy.store import import_taxonomy
from storage.statements import count_statements
from tagging.loader import load_taxonomy_text

NEW_TAXONOMY = """
version: 1
dimensions:
  - key: stage
    name: 需求阶段
    tags:
      - name: 展会线索
        keywords: [展会, 展位]
"""


def _settings(tmp_path: Path) -> Settings:
    env = {"KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", "KEBIAO_SCHEDULER": "off"}
    return Settings.from_env(env, dotenv=None)


async def test_health_and_readiness(aiohttp_client, tmp_path: Path) -> None:
    client: TestClient = await aiohttp_client(create_app(_settings(tmp_path)))
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["taxonomy_version"] == 1


async def test_taxonomy_import_elsewhere_takes_effect_without_restart(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    client: TestClient = await aiohttp_client(app)
    before = app[MATCHERS].current
    assert before is not None
    assert not [s for s in before.suggest("我们下周去展会看看展位") if s.tag == "展会线索"]

    async with app[DATABASE].unit_of_work() as uow:
        await import_taxonomy(uow, load_taxonomy_text(NEW_TAXONOMY), "admin", datetime.now(UTC))
    assert await _refresh_taxonomy(app[DATABASE], app[MATCHERS], app[TAXONOMY]) is True

    version, matcher = app[TAXONOMY].version, app[MATCHERS].current
    assert version is not None and version.version == 2
    assert matcher is not None
    tags = [s.tag for s in matcher.suggest("我们下周去展会看看展位")]
    assert tags == ["展会线索"]
    with count_statements(app[DATABASE].engine) as poll:
        assert await _refresh_taxonomy(app[DATABASE], app[MATCHERS], app[TAXONOMY]) is False
    assert (poll.writes, poll.reads) == (0, 1)  # a poll never queues at SQLite's writer …
    assert poll.statements <= 5  # … and reads the version number, not the document: BEGIN, query_only, SELECT …
    assert (await (await client.get("/readyz")).json())["taxonomy_version"] == 2


async def test_served_heap_is_settled_again_after_a_taxonomy_swap(aiohttp_client, tmp_path: Path) -> None:
    """`kebiao serve` freezes what start-up built, so no full collection walks jieba's dictionary and the matcher
    again; a matcher built for a new taxonomy is frozen too."""
    import gc

    from app import YOUNG_OBJECTS, settle_heap

    def frozen(obj: object) -> bool:
        return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())

    app = create_app(_settings(tmp_path))
    app.on_startup.append(settle_heap)  # as cli/serve.py does
    thresholds = gc.get_threshold()
    try:
        await aiohttp_client(app)
        assert gc.get_freeze_count() > 0
        assert frozen(app[MATCHERS].current)
        assert gc.get_threshold() == (YOUNG_OBJECTS, *thresholds[1:])  # young collections are rarer
        async with app[DATABASE].unit_of_work() as uow:
            await import_taxonomy(uow, load_taxonomy_text(NEW_TAXONOMY), "admin", datetime.now(UTC))
        assert await _refresh_taxonomy(app[DATABASE], app[MATCHERS], app[TAXONOMY]) is True
        assert frozen(app[MATCHERS].current)
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        gc.set_threshold(*thresholds)
