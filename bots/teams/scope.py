"""Whether a Teams conversation is shared (a channel, a group or meeting chat) or a 1:1 chat with the bot.

Teams does not always say so: older channel messages carry neither `conversation.conversationType` nor
`isGroup`, only a `19:…@thread.skype;messageid=…` id and `channelData.team` / `channelData.channel`.
Every signal Teams may send counts; only an explicit `personal` type, or none of the signals, is 1:1.
"""

from __future__ import annotations

from typing import Any

from botbuilder.schema import Activity

SHARED_TYPES = frozenset({"channel", "groupchat"})  # conversationType, compared case-folded
PERSONAL_TYPE = "personal"
# Conversation ids of channels (`@thread.skype`, `@thread.tacv2`), group and meeting chats (`@thread.v2`)
# and chats between two people (`@unq.gbl.spaces`); a chat with the bot alone is `a:…`.
SHARED_ID_MARKERS = ("@thread", "@unq.gbl.spaces")


def is_shared(activity: Activity) -> bool:
    """True when people other than the sender read what the bot posts in this conversation."""
    conversation = activity.conversation
    kind = ((conversation.conversation_type if conversation else None) or "").casefold()
    if kind == PERSONAL_TYPE:
        return False
    if kind in SHARED_TYPES or bool(conversation and conversation.is_group):
        return True
    if _team_or_channel(activity.channel_data):
        return True
    conversation_id = ((conversation.id if conversation else None) or "").casefold()
    return any(marker in conversation_id for marker in SHARED_ID_MARKERS)


def _team_or_channel(channel_data: Any) -> bool:
    """channelData names a team or a channel (only channel conversations carry them)."""
    if not isinstance(channel_data, dict):
        return False
    return any(isinstance(channel_data.get(key), dict) and channel_data[key] for key in ("team", "channel"))
