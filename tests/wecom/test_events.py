"""External-contact and corp-tag events through POST /wecom/callback: customers, channel tags, churn, re-import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from app import DATABASE, create_app
from core.types import Customer
from storage import tables as t
from storage.alerts import SqlAlertScans
from tests.wecom.callbacks import contact_xml, settings_for, tag_event_xml
from tests.wecom.fake_api import FakeWeComApi
from tests.wecom.test_routes import count, post, settle


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path, fake_wecom: FakeWeComApi) -> AsyncIterator[TestClient]:
    yield await aiohttp_client(create_app(settings_for(tmp_path, fake_wecom.api_base)))


async def _customer(client: TestClient, external: str) -> Customer:
    async with client.app[DATABASE].unit_of_work() as uow:
        (customer,) = await uow.customers.find_exact(external)
    return customer


async def test_add_with_state_creates_customer_and_channel_tag(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.add_contact("wmZHAOLEI001", "赵磊", ["wangwu"])
    await post(client, contact_xml("add_external_contact", external="wmZHAOLEI001", user="wangwu", state="website"))
    await settle(client)
    customer = await _customer(client, "wmZHAOLEI001")
    assert (customer.name, customer.owner) == ("赵磊", "wangwu")
    assert customer.attributes["wecom_status"] == "active" and customer.attributes["wecom_add_state"] == "website"
    async with client.app[DATABASE].unit_of_work() as uow:
        held = await uow.assignments.active_for(customer.id)
    assert [(a.tag, a.source.value) for a in held] == [("官网咨询", "channel")]


async def test_unmapped_state_creates_the_customer_without_a_tag(client: TestClient) -> None:
    await post(client, contact_xml("add_external_contact", external="wmNOMAP0001", state="poster-unknown"))
    await settle(client)
    customer = await _customer(client, "wmNOMAP0001")
    assert customer.name == "wmNOMAP0001"  # WeCom could not say a name: the external id stands in
    assert await count(client, t.tag_assignments) == 0


async def test_edit_updates_name_and_company(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.add_contact("wmSUNLI00001", "孙丽", ["zhangwei"])
    await post(client, contact_xml("add_external_contact", external="wmSUNLI00001", created=100))
    await settle(client)
    fake_wecom.contacts["wmSUNLI00001"]["external_contact"].update(name="孙丽（采购）", corp_name="苏州启航")
    await post(client, contact_xml("edit_external_contact", external="wmSUNLI00001", created=200))
    await settle(client)
    customer = await _customer(client, "wmSUNLI00001")
    assert (customer.name, customer.company) == ("孙丽（采购）", "苏州启航")


async def test_agent_deleting_customer_is_recorded_and_tags_kept(client: TestClient) -> None:
    await post(client, contact_xml("add_external_contact", external="wmZHOU00001", state="expo2025", created=100))
    await post(client, contact_xml("del_external_contact", external="wmZHOU00001", created=200))
    await settle(client)
    customer = await _customer(client, "wmZHOU00001")
    assert customer.attributes["wecom_status"] == "removed_by_agent" and "wecom_removed_at" in customer.attributes
    async with client.app[DATABASE].unit_of_work() as uow:
        assert [a.tag for a in await uow.assignments.active_for(customer.id)] == ["展会获客"]


async def test_customer_deleting_agent_then_readding_keeps_history(client: TestClient) -> None:
    await post(client, contact_xml("add_external_contact", external="wmQIAN00001", created=100))
    await post(client, contact_xml("del_follow_user", external="wmQIAN00001", user="zhangwei", created=200))
    await settle(client)
    lost = await _customer(client, "wmQIAN00001")
    assert lost.attributes["wecom_status"] == "lost_by_customer" and lost.attributes["wecom_lost_by"] == "zhangwei"
    ca = t.customer_activity.c
    async with client.app[DATABASE].engine.connect() as conn:
        (activity,) = (await conn.execute(select(ca.customer_id, ca.agent_removed_by, ca.agent_removed_at))).all()
    # The churn scan's agent-removed signal: written in the same transaction as the attributes.
    assert activity[:2] == (lost.id, "zhangwei") and activity[2].isoformat() == lost.attributes["wecom_lost_at"]
    await post(client, contact_xml("add_external_contact", external="wmQIAN00001", created=300))
    await settle(client)
    back = await _customer(client, "wmQIAN00001")
    assert back.attributes["wecom_status"] == "active"
    assert back.attributes["wecom_lost_at"] == lost.attributes["wecom_lost_at"]
    assert "wecom_readded_at" in back.attributes
    async with client.app[DATABASE].engine.connect() as conn:
        (activity,) = (await conn.execute(select(ca.customer_id, ca.agent_removed_by, ca.agent_removed_at))).all()
    assert tuple(activity) == (back.id, None, None)  # no longer on the churn scan's agent-removed list


async def test_readded_customer_leaves_the_churn_candidates(client: TestClient) -> None:
    await post(client, contact_xml("add_external_contact", external="wmSUN000001", created=100))
    await post(client, contact_xml("del_follow_user", external="wmSUN000001", created=200))
    await settle(client)
    customer = await _customer(client, "wmSUN000001")
    assert customer.id in await _agent_removed_ids(client)
    await post(client, contact_xml("add_external_contact", external="wmSUN000001", created=300))
    await settle(client)
    assert customer.id not in await _agent_removed_ids(client)


@pytest.mark.parametrize("change", ["del_follow_user", "del_external_contact", "edit_external_contact"])
async def test_events_for_an_unknown_customer_change_nothing(client: TestClient, change: str) -> None:
    status, _ = await post(client, contact_xml(change, external="wmNEVERSEEN1"))
    assert status == 200
    await settle(client)
    assert await count(client, t.customers) == 0


async def test_change_external_tag_reimports_the_corp_tag_library(client: TestClient, fake_wecom: FakeWeComApi) -> None:
    fake_wecom.tag_groups.append(
        {"group_id": "etGRP9", "group_name": "行业", "tag": [{"id": "etEDU", "name": "教育培训"}]}
    )
    await post(client, tag_event_xml("create", tag_id="etEDU"))
    await settle(client)
    async with client.app[DATABASE].unit_of_work() as uow:
        current = await uow.taxonomies.current()
    assert current is not None
    wecom = current.taxonomy.dimension("wecom")
    assert wecom is not None and [tag.name for tag in wecom.tags] == ["教育培训"]
    assert fake_wecom.calls_to("externalcontact/get_corp_tag_list")


async def _agent_removed_ids(client: TestClient) -> set[int]:
    """Customers the churn scan sees with an agent-removed signal (its own customer_facts query, not a copy)."""
    now = datetime.now(UTC)
    async with client.app[DATABASE].engine.connect() as conn:
        facts = await SqlAlertScans(conn).customer_facts(0, now - timedelta(days=30), [], "sentiment", 100)
    return {f.customer_id for f in facts if f.agent_removed_at is not None}
