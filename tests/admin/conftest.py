"""The real create_app on a tmp SQLite database, with the sample taxonomy and an admin token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import create_app
from config import Settings
from tagging.loader import dump_taxonomy
from tests.conftest import build_sample_taxonomy

TOKEN = "kb-admin-测试-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

ClientFactory = Callable[..., Awaitable[TestClient]]


def admin_settings(tmp_path: Path, token: str | None = TOKEN) -> Settings:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(dump_taxonomy(build_sample_taxonomy()), encoding="utf-8")
    env = {
        "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'admin.db'}",
        "KEBIAO_SCHEDULER": "off",
        "KEBIAO_TAXONOMY": str(taxonomy),
    }
    if token:
        env["KEBIAO_ADMIN_TOKEN"] = token
    return Settings.from_env(env, dotenv=None)


@pytest.fixture
async def app(tmp_path: Path) -> web.Application:
    return create_app(admin_settings(tmp_path))


@pytest.fixture
async def client(aiohttp_client: ClientFactory, app: web.Application) -> TestClient:
    return await aiohttp_client(app)
