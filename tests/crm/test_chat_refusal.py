"""A chat command that edits a CRM-mastered dimension is refused with a clear message and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from core.chat.commands import parse_command
from core.chat.service import ChatContext, ChatService, ErrorResult, TagResult
from core.records import CustomerDraft
from core.tags.assignments import TaggingRules
from core.types import Role, User
from storage.channels import SqlChannelStore
from storage.database import Database
from tagging.matcher import Matcher
from tagging.taxonomy import Taxonomy

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_chat_cannot_edit_a_crm_mastered_dimension(database: Database, crm_taxonomy: Taxonomy) -> None:
    matcher = Matcher.build(crm_taxonomy)
    chat = ChatService(
        database, SqlChannelStore(database.engine), lambda: crm_taxonomy, lambda: matcher, TaggingRules()
    )
    async with database.unit_of_work() as uow:
        customer = await uow.customers.add(CustomerDraft(name="甲公司", crm_id="A-1"), NOW)
    ctx = ChatContext("teams", "a:chat", User("agent-1", Role.AGENT), NOW, False)
    refused = await chat.run(ctx, parse_command("tag 甲公司 +制造业 +VIP客户"))
    assert isinstance(refused, ErrorResult)
    assert "come from the CRM" in refused.detail and "基础属性" in refused.detail, refused
    async with database.unit_of_work(read_only=True) as uow:
        assert await uow.assignments.active_for(customer.id) == []  # VIP客户 was not applied either
    allowed = await chat.run(ctx, parse_command("tag 甲公司 +VIP客户"))
    assert isinstance(allowed, TagResult)
