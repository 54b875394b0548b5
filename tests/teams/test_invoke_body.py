"""Invoke bodies: the same JSON msrest writes, cards untouched, and a deep copy that is the body itself."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from botbuilder.core import CardFactory
from botbuilder.core.serializer_helper import serializer_helper
from botbuilder.schema import ThumbnailCard
from botbuilder.schema.teams import (
    MessagingExtensionAttachment,
    MessagingExtensionResponse,
    MessagingExtensionResult,
    TaskModuleContinueResponse,
    TaskModuleTaskInfo,
)
from msrest.serialization import Serializer

from bots.teams.invoke_body import invoke_body
from tests.cards.samples import all_cards


def _result(cards: list[dict[str, object]]) -> MessagingExtensionResponse:
    attachments = [
        MessagingExtensionAttachment(
            content_type=CardFactory.content_types.adaptive_card,
            content=card,
            preview=CardFactory.thumbnail_card(ThumbnailCard(title=f"客户{i}", subtitle="华东")),
        )
        for i, card in enumerate(cards)
    ]
    result = MessagingExtensionResult(type="result", attachment_layout="list", attachments=attachments)
    return MessagingExtensionResponse(compose_extension=result)


def test_a_message_extension_result_is_written_as_msrest_writes_it() -> None:
    cards = [card for _, card in all_cards()]
    response = _result(cards)
    expected = serializer_helper(response)
    written = invoke_body(response)
    assert written == expected
    assert [a.content for a in response.compose_extension.attachments] == cards  # the model is left as it was
    assert copy.deepcopy(written) is written


def test_other_bodies_are_written_by_msrest() -> None:
    task = TaskModuleContinueResponse(value=TaskModuleTaskInfo(title="选择客户", height=200, width=400))
    assert invoke_body(task) == serializer_helper(task)
    assert invoke_body(None) is None
    empty = MessagingExtensionResponse(compose_extension=MessagingExtensionResult(type="message", text="没有匹配"))
    assert invoke_body(empty) == serializer_helper(empty)


def test_a_message_extension_result_is_written_without_msrests_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The equality above is not msrest compared with itself: only the previews' card models (plain objects
    inside an attachment) are left to msrest; the response and its attachments are written by bots.teams.wire."""
    response = _result([card for _, card in all_cards()][:3])
    expected = serializer_helper(response)
    walked: list[str] = []
    original = Serializer._serialize

    def recording(self: Serializer, target: Any, *args: Any, **kwargs: Any) -> Any:
        walked.append(type(target).__name__)
        return original(self, target, *args, **kwargs)

    monkeypatch.setattr(Serializer, "_serialize", recording)
    assert invoke_body(response) == expected
    assert walked and set(walked) == {"ThumbnailCard"}
