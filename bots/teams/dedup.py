"""The de-duplication seam: Teams re-sends an activity with the same id when the bot was slow (~15 s) or failed."""

from __future__ import annotations

from typing import Protocol

from botbuilder.schema import Activity


class ActivityClaims(Protocol):
    """Claims on incoming activities, held while the turn runs; storage supplies the durable implementation."""

    async def claim(self, key: str) -> bool:
        """True: run the turn (first delivery, or a retry of a turn that died or failed); False: a duplicate."""
        ...

    def finish(self, key: str) -> None:
        """The turn's writes committed and its replies were sent: later retries of `key` are duplicates
        (recorded in the background: the answer to the platform does not wait for it)."""
        ...

    async def release(self, key: str) -> None:
        """Forget `key` after the bot failed, so the platform's retry is processed."""
        ...


def activity_key(activity: Activity) -> str | None:
    """`channel:conversation:activity id`, or None when the activity carries no id to de-duplicate on."""
    if not activity.id:
        return None
    conversation_id = activity.conversation.id if activity.conversation else ""
    return f"{activity.channel_id or ''}:{conversation_id or ''}:{activity.id}"
