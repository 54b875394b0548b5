"""Kebiao's turn context: an outgoing activity is copied one level deep before it is addressed, not whole.

botbuilder's TurnContext.send_activities deep-copies every outgoing activity so that addressing it (channel,
service URL, conversation, from, recipient, replyToId, input hint, id) never changes the caller's object.
Every change the SDK, its adapter and Kebiao's send handlers make on the way out replaces an attribute of
the activity itself, never something inside one, so a copy of the activity's attributes protects the
caller as well. Deep-copying an Adaptive Card (hundreds of dicts) cost as much as writing it as JSON.
"""

from __future__ import annotations

import copy
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes, DeliveryModes, ResourceResponse


class ShallowCopyTurnContext(TurnContext):  # type: ignore[misc]
    """TurnContext.send_activities (botbuilder 4.17) with `copy.copy` where it has `deepcopy`."""

    async def send_activities(self, activities: list[Activity]) -> list[ResourceResponse]:
        sent_non_trace_activity = False
        ref = TurnContext.get_conversation_reference(self.activity)

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
            activity_validator(TurnContext.apply_conversation_reference(copy.copy(act), ref)) for act in activities
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
