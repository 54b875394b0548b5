"""Replay of the activities Microsoft's Teams documentation publishes, through the real route.

Every file under tests/payloads/teams/published/ (sources in SOURCES.md there) is posted as published —
only `serviceUrl` points at the fake Bot Connector — to POST /api/messages of the real create_app with the
real botbuilder adapter. Each kind has its expected answer: the HTTP status, whether the bot may post,
and what it posts or answers. Nothing may answer 5xx or log a traceback; an invoke kind Kebiao never declares
is refused with 400 naming the invokes it answers, before any turn runs.

The documentation publishes no whole activity for a few kinds (message edit and delete, sign-in state,
card refresh, task/fetch, querySettingUrl, a file-consent invoke with its envelope). DERIVED builds those
from a published envelope plus the documented names and fields, and says so.
"""
# ruff: noqa: F811  (every test takes the imported `kebiao` fixture)

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.teams.fake_connector import Call
from tests.teams.published import load_published, published_names
from tests.teams.test_bot_flow import kebiao, post, texts  # noqa: F401  (kebiao is a fixture)

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Expect:
    """The answer to one activity: status, what each posted card says (none: the bot stays silent), body."""

    status: int
    posts: tuple[str, ...] = ()
    answer: Check | None = None


SILENT = Expect(200)
GREETS = Expect(200, posts=("使用帮助",))  # the help card, once, when the bot itself is added to a team
# An invoke kind Kebiao never declares (no such button, card or setting): 400 naming the invokes it answers.
NOT_DECLARED = Expect(400, answer=lambda body: "not one this bot answers" in body["error"])
NO_TYPE = Expect(400, answer=lambda body: "type" in body["error"])  # published abridged, without "type"
HELP_EN = Expect(200, posts=("I did not understand",))  # a 1:1 chat: unknown text gets the help card


def _task_message(body: Any) -> bool:
    task = body["task"]
    return bool(task["type"] == "message" and ("Kebiao" in task["value"] or "客标" in task["value"]))


def _compose_message(body: Any) -> bool:
    return bool(body["composeExtension"]["type"] == "message" and "searchCmd" in body["composeExtension"]["text"])


OTHER_COMMAND = Expect(200, answer=_task_message)  # a command id that is not Kebiao's: a message, no form

EXPECTED: dict[str, Expect] = {
    # conversationUpdate: only the bot's own arrival in a team is greeted (the docs' welcome advice)
    "conversation_update_bot_added_to_team": GREETS,
    "conversation_update_bot_added_to_team_v3": GREETS,
    "conversation_update_bot_added_to_personal_chat": SILENT,  # published with placeholder bot ids that differ
    "conversation_update_channel_created": SILENT,
    "conversation_update_channel_renamed": SILENT,
    "conversation_update_channel_deleted": SILENT,
    "conversation_update_channel_restored": SILENT,
    "conversation_update_team_renamed": SILENT,
    "conversation_update_team_deleted": SILENT,
    "conversation_update_team_restored": SILENT,
    "conversation_update_team_archived": SILENT,
    "conversation_update_team_unarchived": SILENT,
    "conversation_update_team_member_removed": SILENT,
    "conversation_update_user_added_to_meeting": SILENT,
    "conversation_update_user_removed_from_meeting": SILENT,
    "installation_update_add": SILENT,  # the conversationUpdate of the same install greets
    "message_reaction_added": SILENT,
    "message_reaction_removed": SILENT,
    "event_meeting_start": SILENT,
    "event_meeting_end": SILENT,
    # messages
    "message_personal_full_inbound": HELP_EN,
    "message_personal_rich_text": HELP_EN,
    "message_channel_user_mention_v4": SILENT,  # a person @mentioned in a channel, not the bot
    "message_channel_from_bot_with_user_mention_v3": SILENT,  # from a bot
    "message_from_bot_notification": SILENT,  # from a bot
    "message_back_channel": SILENT,  # a click whose value names no Kebiao verb
    # invokes
    "invoke_card_action_without_name": NOT_DECLARED,  # legacy card "invoke" button: Kebiao's cards have none
    # Kebiao's previews have no tap action, and the published shortened form has no conversation: 400 either way.
    "compose_extension_select_item_shortened": Expect(400),
    "compose_extension_query_search_cmd": Expect(200, answer=_compose_message),
    "compose_extension_fetch_task_group_chat": OTHER_COMMAND,
    "compose_extension_fetch_task_meeting_chat": OTHER_COMMAND,
    "compose_extension_fetch_task_channel_new_post": OTHER_COMMAND,
    "compose_extension_fetch_task_message_action_in_thread": OTHER_COMMAND,
    "compose_extension_fetch_task_full": OTHER_COMMAND,
    "compose_extension_submit_action_give_kudos_shortened": NO_TYPE,
    "compose_extension_submit_action_just_in_time_install": NO_TYPE,
    "file_consent_accept_abridged": NO_TYPE,
    "file_consent_decline_abridged": NO_TYPE,
}


def _with(base: str, **changes: Any) -> Callable[[str], dict[str, Any]]:
    """A derived activity: the published envelope `base` with documented fields set."""

    def build(url: str) -> dict[str, Any]:
        body = load_published(base, url)
        for key, value in changes.items():
            body[key] = copy.deepcopy(value)
        return body

    return build


CHANNEL_DATA = {
    "channel": {"id": "19:aebd0ad4d6ab42c8b9ed19c251c2fc37@thread.skype"},
    "team": {"id": "19:aebd0ad4d6ab42c8b9ed19c251c2fc37@thread.skype"},
    "tenant": {"id": "72f988bf-86f1-41af-91ab-2d7cd011db47"},
}
REFRESH = {"action": {"type": "Action.Execute", "id": "abc", "verb": "personalDetailsCardRefresh", "data": {}}}


def _card_error(body: Any) -> bool:
    return bool(body["statusCode"] == 400 and body["type"] == "application/vnd.microsoft.error")


def _error_card(body: Any) -> bool:
    card_type = "application/vnd.microsoft.card.adaptive"
    return bool(
        body["statusCode"] == 200 and body["type"] == card_type and "personalDetailsFormSubmit" in texts(body["value"])
    )


DERIVED: dict[str, tuple[Callable[[str], dict[str, Any]], Expect]] = {
    "message_update_edit": (
        _with(
            "message_channel_user_mention_v4",
            type="messageUpdate",
            id="1481567603816",
            channelData={**CHANNEL_DATA, "eventType": "editMessage"},
        ),
        SILENT,
    ),
    "message_update_undelete": (
        _with(
            "message_channel_user_mention_v4",
            type="messageUpdate",
            id="1481567603816",
            channelData={**CHANNEL_DATA, "eventType": "undeleteMessage"},
        ),
        SILENT,
    ),
    "message_delete_soft": (
        _with(
            "message_channel_user_mention_v4",
            type="messageDelete",
            id="1481567603816",
            channelData={**CHANNEL_DATA, "eventType": "softDeleteMessage"},
        ),
        SILENT,
    ),
    "signin_verify_state": (  # Kebiao sends no sign-in cards
        _with("message_personal_full_inbound", type="invoke", name="signin/verifyState", value={"state": "123456"}),
        NOT_DECLARED,
    ),
    "adaptive_card_refresh_unknown_verb": (  # the Universal Action Model's request format, trigger automatic
        _with(
            "message_personal_full_inbound",
            type="invoke",
            name="adaptiveCard/action",
            value={**REFRESH, "trigger": "automatic"},
        ),
        Expect(200, answer=_card_error),
    ),
    "adaptive_card_click_unknown_verb": (
        _with(
            "message_personal_full_inbound",
            type="invoke",
            name="adaptiveCard/action",
            value={
                "action": {"type": "Action.Execute", "verb": "personalDetailsFormSubmit", "data": {}},
                "trigger": "manual",
            },
        ),
        Expect(200, answer=_error_card),
    ),
    "compose_extension_query_setting_url": (  # the manifest does not enable the settings menu
        _with(
            "compose_extension_query_search_cmd",
            name="composeExtension/querySettingUrl",
            value={"commandId": "searchCustomers", "parameters": []},
        ),
        NOT_DECLARED,
    ),
    "task_fetch": (  # the Action.Submit "task/fetch" invoke action of the card actions reference
        _with(
            "invoke_card_action_without_name",
            name="task/fetch",
            value={"data": {"msteams": {"type": "task/fetch"}, "Value1": "some value"}},
        ),
        NOT_DECLARED,
    ),
    "file_consent_accept": (  # Kebiao sends no file consent cards
        _with(
            "message_personal_full_inbound",
            type="invoke",
            name="fileConsent/invoke",
            value=load_published("file_consent_accept_abridged", "")["value"],
        ),
        NOT_DECLARED,
    ),
}


def test_every_published_payload_has_an_expected_answer() -> None:
    assert sorted(EXPECTED) == published_names()
    assert 40 <= len(EXPECTED) + len(DERIVED) <= 50


def _posted_cards(calls: list[Call]) -> list[str]:
    return [texts(a["content"]) for call in calls for a in call.body.get("attachments") or []]


async def _replay(kebiao: Any, build: Callable[[str], dict[str, Any]], expect: Expect, caplog: Any) -> None:
    client, fake, url = kebiao
    body = build(url)
    with caplog.at_level(logging.INFO):
        status, answer = await post(client, body)
    assert status == expect.status, answer
    assert status < 500
    if expect.answer is not None:
        assert expect.answer(answer), answer
    posted = _posted_cards(fake.calls)
    assert len(posted) == len(expect.posts), posted
    for card, says in zip(posted, expect.posts, strict=True):
        assert says in card
    conversation = (body.get("conversation") or {}).get("id", "")
    assert all(
        call.conversation_id == conversation.split(";messageid=")[0] or call.conversation_id == conversation
        for call in fake.calls
    )
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_published_activity_gets_its_expected_answer(kebiao: Any, caplog: Any, name: str) -> None:
    await _replay(kebiao, lambda url: load_published(name, url), EXPECTED[name], caplog)


@pytest.mark.parametrize("name", sorted(DERIVED))
async def test_derived_activity_gets_its_expected_answer(kebiao: Any, caplog: Any, name: str) -> None:
    build, expect = DERIVED[name]
    await _replay(kebiao, build, expect, caplog)
