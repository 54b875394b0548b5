"""The real app with the console on a tmp SQLite database: sample taxonomy, customers, stored messages."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from app import DATABASE, MATCHERS, TAXONOMY, create_app
from config import Settings
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules, apply_tag
from core.tags.suggestions import decide_suggestion, suggest_for_message
from core.tags.users import set_role
from core.types import Role, Source
from tagging.loader import dump_taxonomy
from tests.conftest import build_sample_taxonomy

TOKEN = "kb-console-admin-token-0123456789"
SECRET = "console-secret-for-tests-0123456789abcdef"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MESSAGES = ("能给我报价吗", "我要投诉你们", "东西坏了要维修", "多少钱一台", "今天天气不错", "加急处理一下")

ClientFactory = Callable[..., Awaitable[TestClient]]


def console_settings(tmp_path: Path, **extra: str) -> Settings:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(dump_taxonomy(build_sample_taxonomy()), encoding="utf-8")
    env = {
        "KEBIAO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'console.db'}",
        "KEBIAO_SCHEDULER": "off",
        "KEBIAO_TAXONOMY": str(taxonomy),
        "KEBIAO_ADMIN_TOKEN": TOKEN,
        "KEBIAO_CONSOLE_SECRET": SECRET,
        **extra,
    }
    return Settings.from_env(env, dotenv=None)


async def seed(app: web.Application) -> dict[str, Any]:
    """Users of each role, customers with tags, and stored messages (suggestions) for previews."""
    database, taxonomy = app[DATABASE], app[TAXONOMY].taxonomy
    matcher = app[MATCHERS].current
    assert matcher is not None
    rules = TaggingRules()
    ids = []
    async with database.unit_of_work() as uow:
        await set_role(uow, "manager-1", Role.MANAGER, [], NOW, "王经理")
        await set_role(uow, "agent-1", Role.AGENT, [], NOW, "李坐席")
        for i in range(30):
            customer = await uow.customers.add(CustomerDraft(name=f"测试客户{i:02d}", company="ABC公司"), NOW)
            ids.append(customer.id)
            await apply_tag(
                uow,
                taxonomy,
                rules,
                customer.id,
                "VIP客户" if i % 2 else "普通客户",
                actor="agent-1",
                source=Source.MANUAL,
                now=NOW,
            )
            if i % 3 == 0:
                await apply_tag(
                    uow, taxonomy, rules, customer.id, "高危流失", actor="manager-1", source=Source.MANUAL, now=NOW
                )
        decided = 0
        for n, text in enumerate(MESSAGES * 2):
            outcome = await suggest_for_message(uow, matcher, taxonomy, rules, ids[n], f"msg-{n}", text, NOW)
            for record in outcome.pending:  # people accept two of every three suggestions
                await decide_suggestion(
                    uow, taxonomy, rules, record.id, accept=decided % 3 != 2, actor="agent-1", now=NOW
                )
                decided += 1
    return {"customers": ids}


@pytest.fixture
async def console_app(tmp_path: Path) -> web.Application:
    return create_app(console_settings(tmp_path))


@pytest.fixture
async def client(aiohttp_client: ClientFactory, console_app: web.Application) -> TestClient:
    client = await aiohttp_client(console_app)
    client.seeded = await seed(console_app)  # type: ignore[attr-defined]
    return client


CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


async def csrf_of(client: TestClient, path: str = "/console/signin") -> str:
    response = await client.get(path)
    match = CSRF.search(await response.text())
    assert match, f"no CSRF token on {path}"
    return match.group(1)


async def sign_in(client: TestClient) -> str:
    """Sign in with the admin token; returns the session's CSRF token."""
    token = await csrf_of(client)
    response = await client.post("/console/signin/token", data={"csrf": token, "token": TOKEN}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return await csrf_of(client, "/console/taxonomy")
