"""Kebiao's turn context: an outgoing activity is copied one level deep before it is addressed, not whole.

botbuilder's TurnContext.send_activities deep-copies every outgoing activity so that addressing it (channel,
service URL, conversation, from, recipient, replyToId, input hint, id) never changes the caller's object.
Every change the SDK, its adapter and Kebiao's send handlers make on the way out replaces an attribute of
the activity itself, never something inside one, so a copy of the activity's attributes protects the
caller as well. Deep-copying an Adaptive Card (hundreds of dicts) cost as much as writing it as JSON.

The copies (the activity, and the reply's addresses) are made as `copy.copy` makes them for a class that
customises nothing about copying: a new instance of the class with the same attributes. `copy.copy` itself
goes through the pickling protocol to get there, about 2 µs per model, four models per reply.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, TypeVar

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes, ConversationReference, DeliveryModes, ResourceResponse
from botframework.connector import Channels

T = TypeVar("T")
_COPY_HOOKS = ("__copy__", "__reduce_ex__", "__reduce__", "__getstate__", "__setstate__", "__slots__")


def shallow_copy(value: T) -> T:
    """`copy.copy(value)`: for a model whose class customises no copying, a new instance with the same attributes."""
    cls: type = type(value)
    if not _copies_plainly(cls):
        return copy.copy(value)
    clone: Any = object.__new__(cls)
    clone.__dict__.update(value.__dict__)
    return clone


@functools.cache
def _copies_plainly(cls: type) -> bool:
    """No class of `cls` (but object) defines a copying hook, and instances keep their attributes in __dict__:
    `copy.copy` then makes `cls.__new__(cls)` and updates its __dict__ with the original's."""
    own = [vars(c) for c in cls.__mro__ if c is not object]
    return (
        bool(own)
        and cls.__new__ is object.__new__
        and "__dict__" in dir(cls)
        and not any(hook in names for names in own for hook in _COPY_HOOKS)
    )


def conversation_reference(activity: Activity) -> ConversationReference:
    """TurnContext.get_conversation_reference (botbuilder 4.17), its copies made by `shallow_copy`."""
    keeps_id = activity.type != ActivityTypes.conversation_update and activity.channel_id not in (
        Channels.direct_line,
        Channels.webchat,
    )
    return ConversationReference(
        activity_id=activity.id if keeps_id else None,
        user=shallow_copy(activity.from_property),
        bot=shallow_copy(activity.recipient),
        conversation=shallow_copy(activity.conversation),
        channel_id=activity.channel_id,
        locale=activity.locale,
        service_url=activity.service_url,
    )


class ShallowCopyTurnContext(TurnContext):  # type: ignore[misc]
    """TurnContext.send_activities (botbuilder 4.17) with a shallow copy where it has `deepcopy`."""

    async def send_activities(self, activities: list[Activity]) -> list[ResourceResponse]:
        sent_non_trace_activity = False
        ref = conversation_reference(self.activity)

        def activity_validator(activity: Activity) -> Activity:
            nonlocal sent_non_trace_activity
            if not getattr(activity, "type", None):
                activity.type = ActivityTypes.message
            if activity.type != ActivityTypes.trace:
                sent_non_trace_activity = True
            if not activity.input_hint:
                activity.input_hint = "acceptingInput"
            activity.id = None
            return activity

        output = [
            activity_validator(TurnContext.apply_conversation_reference(shallow_copy(act), ref)) for act in activities
        ]

        async def logic() -> Any:
            nonlocal sent_non_trace_activity
            if self.activity.delivery_mode == DeliveryModes.expect_replies:
                responses = []
                for activity in output:
                    self.buffered_reply_activities.append(activity)
                    # Ensure the TurnState has the InvokeResponseKey, since this activity is not being sent
                    # through the adapter, where it would be added to TurnState.
                    if activity.type == ActivityTypes.invoke_response:
                        self.turn_state[TurnContext._INVOKE_RESPONSE_KEY] = activity
                    responses.append(ResourceResponse())
                if sent_non_trace_activity:
                    self.responded = True
                return responses
            responses = await self.adapter.send_activities(self, output)
            if sent_non_trace_activity:
                self.responded = True
            return responses

        return await self._emit(self._on_send_activities, output, logic())
