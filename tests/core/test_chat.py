"""core.chat pieces that need no database: verb registry, viewer rule, card-data checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cards import verbs
from core.chat import DECISIONS, BadAction, ChatContext, _int
from core.types import Role, User


def test_every_chat_action_verb_is_a_card_verb() -> None:
    assert set(DECISIONS) <= verbs.ALL_VERBS
    assert {verbs.SUGGESTION_ACCEPT, verbs.SUGGESTION_REJECT, verbs.ASSIGNMENT_UNDO} <= set(DECISIONS)


def test_shared_conversations_are_rendered_for_the_least_privileged_reader() -> None:
    manager = User("经理-1", Role.MANAGER, display_name="张经理")
    now = datetime(2024, 11, 25, tzinfo=UTC)
    assert ChatContext("teams", "19:频道", manager, now, shared=True).viewer.role is Role.AGENT
    assert ChatContext("teams", "a:私聊", manager, now).viewer.role is Role.MANAGER


@pytest.mark.parametrize("value", [None, "十二", True, -1])
def test_bad_card_data_is_refused_with_the_key_named(value: object) -> None:
    with pytest.raises(BadAction, match="suggestion_id"):
        _int({"suggestion_id": value}, "suggestion_id")
    assert _int({"suggestion_id": "12"}, "suggestion_id") == 12
