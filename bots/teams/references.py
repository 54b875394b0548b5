"""Conversation references kept for proactive sends, with the Teams tenant id stored beside them.

ConversationReference serialises `conversation.tenant_id` as `tenantID` while Teams sends `tenantId`, so
the tenant is lost on the way in; it is taken from `channelData.tenant.id` and restored on the way out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ConversationReference
from msrest.serialization import Model


class InvalidReference(ValueError):
    """A stored reference cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class StoredReference:
    """One proactive address: serialised ConversationReference plus what it drops or callers query."""

    key: str
    reference_json: str
    tenant_id: str
    service_url: str
    user_aad_id: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            raise InvalidReference("StoredReference.key is empty")
        if not self.service_url:
            raise InvalidReference(f"StoredReference {self.key!r}: service_url is empty")
        try:
            data = json.loads(self.reference_json)
        except json.JSONDecodeError as exc:
            raise InvalidReference(
                f"StoredReference {self.key!r}: reference_json is not JSON ({exc})"
            ) from None
        if not isinstance(data, dict) or not (data.get("conversation") or {}).get("id"):
            raise InvalidReference(f"StoredReference {self.key!r}: reference_json has no conversation.id")

    @property
    def conversation_id(self) -> str:
        """The conversation this reference addresses."""
        return str(json.loads(self.reference_json)["conversation"]["id"])

    @classmethod
    def from_activity(cls, activity: Activity, key: str | None = None) -> StoredReference:
        """Capture the reference of an incoming activity; `key` defaults to the conversation id."""
        reference = TurnContext.get_conversation_reference(activity)
        tenant_id = tenant_of(activity)
        if reference.conversation is not None and tenant_id:
            reference.conversation.tenant_id = tenant_id
        sender = activity.from_property
        return cls(
            key=key or (activity.conversation.id if activity.conversation else ""),
            reference_json=json.dumps(reference.serialize(), ensure_ascii=False, sort_keys=True),
            tenant_id=tenant_id,
            service_url=activity.service_url or "",
            user_aad_id=(sender.aad_object_id or "") if sender else "",
        )

    def conversation_reference(self) -> ConversationReference:
        """The ConversationReference to continue, with service URL and tenant id restored."""
        reference = ConversationReference().deserialize(json.loads(self.reference_json))
        reference.service_url = self.service_url
        if reference.conversation is not None and self.tenant_id:
            reference.conversation.tenant_id = self.tenant_id
        return reference


Address = tuple[object, ...]
_PLAIN = (str, bool, type(None))


def address_of(activity: Activity, key: str) -> Address | None:
    """Every value `StoredReference.from_activity(activity, key)` reads but the activity id, as plain values.

    Two activities with equal addresses give the same stored reference apart from its activityId; None when
    a field holds anything but a string, a boolean or None (a dict of properties, an enum), which is not compared.
    """
    parts: list[object] = [key, activity.channel_id, activity.locale, activity.service_url, tenant_of(activity)]
    if not all(type(value) in _PLAIN for value in parts):
        return None
    for account in (activity.from_property, activity.recipient, activity.conversation):
        if account is None:
            parts.append(None)
            continue
        if not isinstance(account, Model):
            return None
        values = tuple(getattr(account, attr, None) for attr in type(account)._attribute_map)
        if not all(type(value) in _PLAIN for value in values):
            return None
        parts.append((type(account), values))
    return tuple(parts)


def tenant_of(activity: Activity) -> str:
    """The Teams tenant of an activity: channelData.tenant.id, else conversation.tenantId."""
    channel_data: Any = activity.channel_data
    if isinstance(channel_data, dict):
        tenant = channel_data.get("tenant")
        if isinstance(tenant, dict) and tenant.get("id"):
            return str(tenant["id"])
    conversation = activity.conversation
    if conversation is not None:
        if conversation.tenant_id:
            return str(conversation.tenant_id)
        extra = getattr(conversation, "additional_properties", None) or {}
        if extra.get("tenantId"):
            return str(extra["tenantId"])
    return ""
