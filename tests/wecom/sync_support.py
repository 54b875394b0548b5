"""Shared pieces of the tag-sync tests: clock, no-wait sleep, a customer, a tag change, a reopened database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from bots.wecom.sync import TAG_CHANNEL
from core.records import CustomerDraft
from core.tags.assignments import TagChange, TaggingRules, apply_tag
from core.types import Customer, Source
from storage.channels import SqlChannelStore
from storage.database import Database, open_database
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy
from tests.wecom.fake_api import FakeWeComApi

NOW = datetime(2025, 3, 1, 9, tzinfo=UTC)
TAG, TAG_ID = "企业客户", "etQIYE"  # basic dimension of the sample taxonomy


class Clock:
    """A settable clock: retries become due by moving it, never by waiting."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def no_sleep(_: float) -> None:
    return None


async def add_customer(
    database: Database, name: str = "王芳", external: str = "wmWANGFANG01", owner: str = "lisi"
) -> Customer:
    """A customer the sync can push: it has an owner and a WeCom external user id."""
    async with database.unit_of_work() as uow:
        return await uow.customers.add(
            CustomerDraft(name=name, company="杭州云帆", owner=owner, wecom_external_userid=external), NOW
        )


async def apply(database: Database, taxonomy: Taxonomy, customer: Customer, tag: str = TAG) -> TagChange:
    """What the Teams chat service and the admin API do: apply_tag in a unit of work, and nothing else."""
    async with database.unit_of_work() as uow:
        return await apply_tag(
            uow, taxonomy, TaggingRules(), customer.id, tag, actor="lisi", source=Source.MANUAL, now=NOW
        )


async def reopen(database: Database) -> Database:
    """A second Database on the same data (what a restarted process or another replica opens)."""
    url = database.engine.url.render_as_string(hide_password=False)
    if database.dialect == "postgresql":
        async with database.engine.connect() as conn:
            schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
        return await open_database(url, schema=schema)
    return await open_database(url)


async def known_corp_tag(fake: FakeWeComApi, database: Database, tag: str = TAG) -> str:
    """Make the corp tag exist on the fake and in Kebiao's id map (no add_corp_tag races between replicas)."""
    fake.tag_groups.append({"group_id": "etGRP1", "group_name": "基础属性", "tag": [{"id": TAG_ID, "name": tag}]})
    await SqlChannelStore(database.engine).save_reference(
        TAG_CHANNEL, name_key(tag), {"tag_id": TAG_ID, "group_id": "etGRP1", "name": tag}, None, NOW
    )
    return TAG_ID
