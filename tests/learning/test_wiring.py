"""Settings, the scheduled jobs and the app's model watcher (every replica loads the newest model)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from app import LEARNING, MODELS, create_app
from config import ConfigError, LearningSettings, Settings
from core.learning.history import import_history
from core.learning.trainer import train_model
from scheduler import JOB_LEARN_PURGE, JOB_LEARN_TRAIN, add_learning_jobs, training_config
from storage.database import Database
from storage.learning import SqlLearningStore
from tagging.loader import dump_taxonomy
from tagging.taxonomy import Taxonomy
from tests.admin.conftest import ClientFactory
from tests.conftest import build_sample_taxonomy
from tests.learning.support import messages

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _lines(count: int = 240) -> list[str]:
    names = {"price": ["询价客户"], "repair": ["售后工单"], None: []}
    return [json.dumps({"text": t, "tags": names[k]}, ensure_ascii=False) for t, k in messages(count)]


def test_learning_settings_from_the_environment() -> None:
    settings = Settings.from_env({"KEBIAO_LEARN_RETENTION_DAYS": "30", "KEBIAO_LEARN_MIN_PRECISION": "0.9"}, None)
    assert settings.learning.retention_days == 30 and settings.learning.min_precision == 0.9
    assert Settings.from_env({}, None).learning == LearningSettings()
    assert training_config(settings.learning).min_precision == 0.9
    with pytest.raises(ConfigError, match="KEBIAO_LEARN_MIN_PRECISION"):
        Settings.from_env({"KEBIAO_LEARN_MIN_PRECISION": "1.5"}, None)
    with pytest.raises(ConfigError, match="KEBIAO_LEARN_RETENTION_DAYS"):
        Settings.from_env({"KEBIAO_LEARN_RETENTION_DAYS": "0"}, None)
    with pytest.raises(ConfigError, match="not an integer"):
        Settings.from_env({"KEBIAO_LEARN_TRAIN_AFTER": "many"}, None)


async def test_scheduled_jobs_train_when_enough_decisions_arrived(
    database: Database, sample_taxonomy: Taxonomy
) -> None:
    store = SqlLearningStore(database.engine)
    scheduler = AsyncIOScheduler(timezone=ZoneInfo("Asia/Shanghai"))
    settings = LearningSettings(train_after=500)
    add_learning_jobs(scheduler, store, lambda: sample_taxonomy, settings, ZoneInfo("Asia/Shanghai"), lambda: NOW)
    train_job, purge_job = scheduler.get_job(JOB_LEARN_TRAIN), scheduler.get_job(JOB_LEARN_PURGE)
    assert train_job is not None and purge_job is not None
    await import_history(store, _lines(20), sample_taxonomy, NOW)  # 20 × 12 tags = 240 examples < 500
    await train_job.func()
    assert await store.latest_model_version() is None
    await import_history(store, _lines(), sample_taxonomy, NOW)
    await train_job.func()
    assert await store.latest_model_version() == 1
    await purge_job.func()  # nothing is older than 365 days
    assert await store.count_examples() > 0


async def test_the_app_loads_the_newest_model_and_picks_up_a_new_one(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(dump_taxonomy(build_sample_taxonomy()), encoding="utf-8")
    env = {
        "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'k.db'}",
        "KEBIAO_SCHEDULER": "off",
        "KEBIAO_TAXONOMY": str(taxonomy),
        "KEBIAO_LEARN_POLL_SECONDS": "0.2",
    }
    client = await aiohttp_client(create_app(Settings.from_env(env, dotenv=None)))
    app = client.app
    assert app[MODELS].model is None  # nothing trained yet: keyword suggestions only
    store = app[LEARNING]
    await import_history(store, _lines(), build_sample_taxonomy(), NOW)
    report = await train_model(store, build_sample_taxonomy(), training_config(LearningSettings()), NOW)
    for _ in range(50):
        if app[MODELS].version == report.version:
            break
        await asyncio.sleep(0.1)
    assert app[MODELS].version == report.version and app[MODELS].model is not None
