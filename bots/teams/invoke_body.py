"""Invoke response bodies written as JSON once, without msrest walking card JSON again or botbuilder copying it.

ActivityHandler turns a handler's result into JSON with msrest, which walks every key and value of an
attachment's `content` (an Adaptive Card that is plain JSON already): about 40 ms of CPU for the 25 cards of a
message-extension result. It then sends the response as an activity, and botbuilder deep-copies every activity
it sends. Here the cards are set aside while msrest serialises the rest and put back after, and the body is a
dict that copies as itself (nothing changes it once it is built). The rest of the body is written by
bots.teams.wire, which gives msrest's JSON without its per-node type lookups.
"""

from __future__ import annotations

from typing import Any

from botbuilder.core.serializer_helper import DEPENDICIES_DICT
from botbuilder.schema.teams import MessagingExtensionResponse
from msrest.serialization import Model, Serializer

from bots.teams.wire import model_to_wire


class WrittenBody(dict[str, Any]):
    """A response body in JSON form; never changed after it is built, so a deep copy is the body itself."""

    def __deepcopy__(self, memo: dict[int, Any]) -> WrittenBody:
        return self


def invoke_body(body: object) -> Any:
    """`body` (an SDK model, or None) as JSON; a message-extension result's cards are not walked again."""
    if body is None:
        return None
    result = body.compose_extension if isinstance(body, MessagingExtensionResponse) else None
    attachments = list(result.attachments or []) if result is not None else []
    if not attachments:
        return _written(body)
    cards = [a.content for a in attachments]
    for attachment in attachments:
        attachment.content = None
    try:
        written = _written(body)
    finally:
        for attachment, content in zip(attachments, cards, strict=True):
            attachment.content = content
    for item, content in zip(written["composeExtension"]["attachments"], cards, strict=True):
        if content is not None:
            item["content"] = content
    return WrittenBody(written)


def _written(body: object) -> Any:
    """botbuilder's serializer_helper(body), with its msrest walk done by bots.teams.wire where that is exact."""
    if not isinstance(body, Model):
        return Serializer(DEPENDICIES_DICT)._serialize(body)
    return model_to_wire(Serializer(DEPENDICIES_DICT), body)
