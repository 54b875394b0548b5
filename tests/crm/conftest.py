"""Fixtures: the fake Dataverse on 127.0.0.1 over HTTPS, a connector pointed at it, a synced taxonomy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from crm.dynamics.connector import DynamicsConnector, DynamicsSettings
from crm.zoho.connector import ZohoConnector, ZohoSettings
from tagging.loader import load_taxonomy_text
from tagging.taxonomy import Taxonomy
from tests.crm import fake_dynamics as fd
from tests.crm import fake_zoho as fz
from tests.crm.tls import make_certificate

TAXONOMY = """
version: 1
dimensions:
  - key: basic
    name: 基础属性
    sync: crm
    crm_fields:
      kb_industry: {Manufacturing: 制造业, Retail: 零售电商}
    tags:
      - name: 行业
        children:
          - {name: 制造业}
          - {name: 零售电商}
      - {name: 华东}
  - key: value
    name: 价值等级
    exclusive: true
    sync: kebiao
    tags:
      - {name: VIP客户}
      - {name: 普通客户}
  - key: behaviour
    name: 行为特征
    sync: kebiao
    tags:
      - {name: 今日已联系, ttl_days: 1}
      - {name: 高频咨询}
  - key: risk
    name: 风险与问题
    visibility: managers
    sync: kebiao
    tags:
      - {name: 投诉风险}
  - key: stage
    name: 需求阶段
    tags:
      - {name: 询价客户, keywords: [报价]}
"""

OPTIONS = {
    100000000: "制造业",
    100000001: "零售电商",
    100000002: "华东",
    100000003: "VIP客户",
    100000004: "普通客户",
    100000005: "高频咨询",
    100000006: "今日已联系",
    100000007: "投诉风险",
    100000008: "询价客户",
}


@dataclass
class DynamicsFixture:
    fake: fd.FakeDataverse
    settings: DynamicsSettings

    def connector(self, **changes: object) -> DynamicsConnector:
        from dataclasses import replace

        return DynamicsConnector(replace(self.settings, **changes))  # type: ignore[arg-type]


@pytest.fixture
def crm_taxonomy() -> Taxonomy:
    return load_taxonomy_text(TAXONOMY, source="crm.yaml")


@pytest.fixture
async def dynamics(tmp_path: Path) -> AsyncIterator[DynamicsFixture]:
    ca, context = make_certificate(tmp_path)
    fake = fd.FakeDataverse(options=dict(OPTIONS))
    runner = web.AppRunner(fd.build_app(fake))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    fake.base = f"https://127.0.0.1:{port}"
    settings = DynamicsSettings(
        url=fake.base,
        tenant_authority=f"{fake.base}/{fd.TENANT}",
        client_id=fd.CLIENT_ID,
        client_secret=fd.CLIENT_SECRET,
        tags_field=fd.TAGS_FIELD,
        page_size=2,
        ca_bundle=str(ca),
    )
    try:
        yield DynamicsFixture(fake, settings)
    finally:
        await runner.cleanup()


@dataclass
class ZohoFixture:
    fake: fz.FakeZoho
    settings: ZohoSettings

    def connector(self, **changes: object) -> ZohoConnector:
        from dataclasses import replace

        return ZohoConnector(replace(self.settings, **changes))  # type: ignore[arg-type]


@pytest.fixture
async def zoho() -> AsyncIterator[ZohoFixture]:
    fake = fz.FakeZoho()
    runner = web.AppRunner(fz.build_app(fake))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    settings = ZohoSettings(fake.base, fake.base, fz.CLIENT_ID, fz.CLIENT_SECRET, fz.REFRESH_TOKEN, per_page=2)
    try:
        yield ZohoFixture(fake, settings)
    finally:
        await runner.cleanup()
