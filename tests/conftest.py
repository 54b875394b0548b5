"""Shared fixtures: a `database` on SQLite and PostgreSQL (fresh schema per test), a small taxonomy."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg.transaction
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from storage.database import Database, open_database
from tagging.taxonomy import Dimension, TagDef, Taxonomy, Visibility

POSTGRES_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _reachable(url: str) -> bool:
    parts = urlsplit(url.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def postgres_url() -> str | None:
    """The test PostgreSQL URL; None (skip) only when the env var is unset and the default server is down."""
    configured = os.environ.get("KEBIAO_TEST_POSTGRES_URL")
    if configured:
        return configured  # required: an unreachable server makes the tests fail, never skip
    return POSTGRES_DEFAULT if _reachable(POSTGRES_DEFAULT) else None


@asynccontextmanager
async def scratch_database_url(prefix: str) -> AsyncIterator[str]:
    """A new PostgreSQL database (for servers that take a plain URL, where a schema would not do); dropped after."""
    from bench.scratch import scratch_postgres

    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable at the default URL and KEBIAO_TEST_POSTGRES_URL is unset")
    async with scratch_postgres(url, prefix) as scratch:
        yield scratch


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database URL for a whole app or a server subprocess: a SQLite file, or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}"
        return
    async with scratch_database_url("kebiao_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An open, migrated database; PostgreSQL tests get their own schema (parallel-safe)."""
    if request.param == "sqlite":
        db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'kebiao.db'}")
        try:
            yield db
        finally:
            await db.close()
        return
    url = postgres_url()
    if url is None:
        pytest.skip("PostgreSQL not reachable at the default URL and KEBIAO_TEST_POSTGRES_URL is unset")
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        db = await open_database(url, schema=schema)
        try:
            yield db
        finally:
            await db.close()
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
def postgres_transactions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that grows by one for every transaction asyncpg starts (BEGIN round trips on PostgreSQL)."""
    started: list[str] = []
    original = asyncpg.transaction.Transaction.start

    async def counted(self: asyncpg.transaction.Transaction) -> None:
        started.append("BEGIN")
        await original(self)

    monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counted)
    return started


def _tag(dimension: str, name: str, *, parents: tuple[str, ...] = (), **kw: object) -> TagDef:
    return TagDef(name=name, dimension=dimension, path=(*parents, name), **kw)  # type: ignore[arg-type]


def build_sample_taxonomy(version: int = 1) -> Taxonomy:
    """Five dimensions in the spirit of the product brief, small enough to reason about in tests."""
    return Taxonomy(
        version=version,
        dimensions=(
            Dimension(
                key="basic",
                name="基础属性",
                tags=(
                    _tag("basic", "企业客户", keywords=("公司采购",)),
                    _tag("basic", "今日已联系", ttl_days=1),
                    _tag(
                        "basic",
                        "华东",
                        children=(
                            _tag("basic", "上海", parents=("华东",)),
                            _tag("basic", "杭州", parents=("华东",)),
                        ),
                    ),
                ),
            ),
            Dimension(
                key="value",
                name="价值等级",
                exclusive=True,
                tags=(
                    _tag("value", "VIP客户", color="#D4AF37"),
                    _tag("value", "普通客户"),
                    _tag("value", "潜在客户"),
                ),
            ),
            Dimension(
                key="behavior",
                name="行为特征",
                tags=(_tag("behavior", "活跃客户"), _tag("behavior", "沉默客户", ttl_days=30)),
            ),
            Dimension(
                key="stage",
                name="需求阶段",
                tags=(
                    _tag("stage", "询价客户", keywords=("报价", "询价", "多少钱"), ttl_days=90),
                    _tag("stage", "售后工单", keywords=("退款", "维修"), auto_apply=True),
                    _tag("stage", "紧急工单", keywords=("投诉", "加急"), auto_apply=True),
                ),
            ),
            Dimension(
                key="risk",
                name="风险与问题",
                visibility=Visibility.MANAGERS,
                tags=(_tag("risk", "高危流失"), _tag("risk", "投诉风险")),
            ),
        ),
    )


@pytest.fixture
def sample_taxonomy() -> Taxonomy:
    return build_sample_taxonomy()
