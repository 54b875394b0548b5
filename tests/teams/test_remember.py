"""Conversation references: written when the address changes, recognised without being rebuilt when it does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botbuilder.schema import Activity

import bots.teams.bot as bot_module
from bots.teams.bot import KebiaoBot
from bots.teams.from_wire import from_wire
from bots.teams.references import StoredReference, address_of
from tests.teams.conftest import load_payload

NOW = datetime(2024, 11, 25, 3, 20, tzinfo=UTC)
AGENT = "6c1b5c2e-1f0a-4c55-9d55-3a5c2f1e0a11"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


class Channels:
    """The one ChannelStore call _remember makes, recorded."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, str, dict[str, Any], str | None]] = []

    async def save_reference(
        self, channel: str, key: str, reference: dict[str, Any], tenant_id: str | None, now: datetime
    ) -> None:
        self.saved.append((channel, key, reference, tenant_id))


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Conversation ids whose reference was built (and serialised) the long way."""
    calls: list[str] = []
    original = StoredReference.from_activity.__func__  # type: ignore[attr-defined]

    def counting(cls: type[StoredReference], activity: Activity, key: str | None = None) -> StoredReference:
        calls.append(key or "")
        return original(cls, activity, key)  # type: ignore[no-any-return]

    monkeypatch.setattr(StoredReference, "from_activity", classmethod(counting))
    return calls


def _bot(channels: Channels) -> KebiaoBot:
    return KebiaoBot(chat=None, channels=channels, clock=lambda: NOW)  # type: ignore[arg-type]


def _message(activity_id: str, **changes: Any) -> Activity:
    body = load_payload("personal_message")
    body.update(id=activity_id, **changes)
    return from_wire(Activity, body)


def _expected(activity: Activity) -> dict[str, Any]:
    """The reference as it was always stored: the SDK's ConversationReference with service URL and tenant."""
    stored = StoredReference.from_activity(activity, key=activity.conversation.id)
    reference: dict[str, Any] = json.loads(stored.reference_json)
    reference["serviceUrl"] = stored.service_url
    return reference


async def test_an_unchanged_address_is_neither_rebuilt_nor_written(built: list[str]) -> None:
    channels = Channels()
    bot = _bot(channels)
    first = _message("1")
    await bot._remember(first)
    keys = [key for _, key, _, _ in channels.saved]
    assert keys == ["conversation:a:1Qy8XcPersonalWangLi", AGENT]
    assert [reference for _, _, reference, _ in channels.saved] == [_expected(first)] * 2
    assert {tenant for _, _, _, tenant in channels.saved} == {TENANT}
    built.clear()
    for n in range(2, 6):
        await bot._remember(_message(str(n)))
    assert len(channels.saved) == 2
    assert built == []  # recognised from the activity's fields alone


CHANGES: dict[str, dict[str, Any]] = {
    "service URL": {"serviceUrl": "https://smba.trafficmanager.net/emea/"},
    "tenant in channelData": {"channelData": {"tenant": {"id": "11111111-2222-3333-4444-555555555555"}}},
    "tenant of the conversation only": {
        "channelData": {},
        "conversation": {"conversationType": "personal", "tenantId": "t-2", "id": "a:1Qy8XcPersonalWangLi"},
    },
    "user name": {"from": {"id": "29:1z4V8mNqF3kAgentWangLi", "name": "王丽丽", "aadObjectId": AGENT}},
    "bot name": {"recipient": {"id": "28:00000000-0000-0000-0000-00000000b07a", "name": "Kebiao"}},
    "locale": {"locale": "en-US"},
    "channel": {"channelId": "msteams-gov"},
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_changed_address_is_written_again(change: str) -> None:
    channels = Channels()
    bot = _bot(channels)
    await bot._remember(_message("1"))
    changed = _message("2", **CHANGES[change])
    await bot._remember(changed)
    assert len(channels.saved) == 4
    rewritten = channels.saved[2:]
    assert [reference for _, _, reference, _ in rewritten] == [_expected(changed)] * 2
    tenant = StoredReference.from_activity(changed).tenant_id
    assert [tenant_id for _, _, _, tenant_id in rewritten] == [tenant or None] * 2
    await bot._remember(_message("3", **CHANGES[change]))
    assert len(channels.saved) == 4  # and then recognised again


async def test_account_properties_are_compared_the_long_way(built: list[str]) -> None:
    """An address with a dict inside has no plain fingerprint: it is rebuilt, and still written once."""
    channels = Channels()
    bot = _bot(channels)
    sender = {"id": "29:1z4V8mNqF3kAgentWangLi", "name": "王丽", "aadObjectId": AGENT, "properties": {"k": 1}}
    for n in range(3):
        activity = _message(str(n), **{"from": sender})
        assert address_of(activity, activity.conversation.id) is None
        await bot._remember(activity)
    assert len(channels.saved) == 2
    assert len(built) == 3


async def test_an_address_that_cannot_be_stored_is_refused_every_time() -> None:
    channels = Channels()
    bot = _bot(channels)
    for n in range(2):
        await bot._remember(_message(str(n), serviceUrl=""))
    assert channels.saved == []


async def test_the_memory_of_saved_addresses_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot_module, "SAVED_LIMIT", 3)
    channels = Channels()
    bot = _bot(channels)
    for n in range(10):
        conversation = {"conversationType": "personal", "tenantId": TENANT, "id": f"a:{n}"}
        await bot._remember(_message(str(n), conversation=conversation))
        assert len(bot._saved) <= 3
    assert len(channels.saved) == 20
