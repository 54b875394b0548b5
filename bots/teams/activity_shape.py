"""The shape an incoming activity must have before the bot runs: checked on the parsed JSON, refused with a reason.

The SDK and the bot read a handful of fields without checking them (a `from` without an id, an
`adaptiveCard/action` value that is a number, query options of the wrong type) and ids end up in columns of
fixed size. Each check here names the field and the limit; `check_activity` raises InputError, which the
endpoint answers with 400 before any work, so a bad body never becomes a 500 or an error card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from botbuilder.core.serializer_helper import deserializer_helper
from botbuilder.schema.teams import MessagingExtensionAction, MessagingExtensionQuery
from msrest.serialization import Model

from core.inbound import LIMITS, InputError, check_text

SHORT = 100  # type, name, channelId, locale, role: a few dozen characters in practice
TENANT = 200  # conversation_references.tenant_id
MAX_URL = 2048

_Check = Callable[[Any], None]


def check_activity(payload: Mapping[str, Any]) -> None:
    """Raise InputError naming the first field of `payload` (a decoded activity) that the bot cannot take."""
    if not payload.get("type"):
        raise InputError("type", "the activity has no 'type'")
    _text(payload, "type", SHORT)
    _service_url(payload)
    for key in ("name", "channelId", "locale", "action"):
        _text(payload, key, SHORT)
    _text(payload, "id", LIMITS["message_key"])
    conversation = _object(payload, "conversation", required=True)
    conversation_id = _text(conversation, "id", LIMITS["conversation_id"], where="conversation", required=True)
    _text(conversation, "tenantId", TENANT, where="conversation")
    _text(conversation, "conversationType", SHORT, where="conversation")
    # Replies are addressed from the recipient to the sender; an invoke is answered in its own HTTP response,
    # and Teams' published invoke examples omit the recipient, so there it may be absent.
    invoke = payload.get("type") == "invoke"
    _account(_object(payload, "from", required=True), "from")
    _account(_object(payload, "recipient", required=not invoke), "recipient", required=not invoke)
    _tenant(payload)
    _objects(payload, "entities")
    _objects(payload, "attachments")
    _objects(payload, "membersAdded")
    _objects(payload, "membersRemoved")
    activity_id = payload.get("id") or ""
    key = f"{payload.get('channelId') or ''}:{conversation_id or ''}:{activity_id}"
    if activity_id and len(key) > LIMITS["message_key"]:
        raise InputError(
            "id", f"channel, conversation id and activity id are {len(key)} characters (limit {LIMITS['message_key']})"
        )
    if payload.get("type") == "invoke":
        name = str(payload.get("name") or "")
        check = INVOKE_VALUES.get(name)
        if check is None:
            raise InputError("name", f"invoke {name[:60]!r} is not one this bot answers ({', '.join(INVOKE_VALUES)})")
        check(payload.get("value"))


def _service_url(payload: Mapping[str, Any]) -> None:
    """Every channel activity names the service replies go to (invokes too: the SDK builds a client for it)."""
    url = _text(payload, "serviceUrl", MAX_URL, required=True)
    assert url is not None
    if not url.lower().startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise InputError("serviceUrl", "must be an http(s) URL")


def _object(data: Mapping[str, Any], key: str, where: str = "", *, required: bool = False) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise InputError(_at(where, key), "is required")
        return {}
    if not isinstance(value, dict):
        raise InputError(_at(where, key), "must be an object")
    return value


def _objects(data: Mapping[str, Any], key: str) -> None:
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InputError(key, "must be an array of objects")


def _text(data: Mapping[str, Any], key: str, limit: int, *, where: str = "", required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InputError(_at(where, key), "is required")
        return None
    if not isinstance(value, str):
        raise InputError(_at(where, key), "must be a string")
    return check_text(_at(where, key), value, limit)


def _account(account: Mapping[str, Any], where: str, *, required: bool = True) -> None:
    """`from` / `recipient`: an id, a name and an AAD object id that fit the users table."""
    _text(account, "id", LIMITS["user_id"], where=where, required=required)
    _text(account, "aadObjectId", LIMITS["user_id"], where=where)
    _text(account, "name", LIMITS["display_name"], where=where)
    _text(account, "role", SHORT, where=where)


def _tenant(payload: Mapping[str, Any]) -> None:
    channel_data = _object(payload, "channelData")
    tenant = _object(channel_data, "tenant", "channelData")
    _text(tenant, "id", TENANT, where="channelData.tenant")


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# ------------------------------------------------------------------ invoke values


def _model(model: type[Model]) -> _Check:
    """The value must deserialize into the SDK model the handler receives."""

    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise InputError("value", f"must be an object ({model.__name__})")
        try:
            deserializer_helper(model, value)
        except Exception as exc:  # msrest raises several types for one wrong field
            raise InputError("value", f"is not a valid {model.__name__}: {str(exc)[:160]}") from None

    return check


def _query(value: Any) -> None:
    """A message-extension query: the model, with numeric paging options."""
    _model(MessagingExtensionQuery)(value)
    options = _object(value, "queryOptions", "value")
    for key in ("skip", "count"):
        number = options.get(key)
        if number is not None and (isinstance(number, bool) or not isinstance(number, int | float)):
            raise InputError(f"value.queryOptions.{key}", "must be a number")


def _card_action(value: Any) -> None:
    """`adaptiveCard/action`: value.action is an Action.Execute object with a string verb and object data."""
    if not isinstance(value, dict):
        raise InputError("value", "must be an object with an 'action'")
    action = value.get("action")
    if action is None:
        return  # the bot answers the Universal Actions error object naming value.action
    if not isinstance(action, dict):
        raise InputError("value.action", "must be an object (an Action.Execute)")
    # Another action type is answered by the bot with the documented error object (HTTP 200, statusCode 400).
    verb = action.get("verb")
    if verb is not None and not isinstance(verb, str):
        raise InputError("value.action.verb", "must be a string")
    data = action.get("data")
    if data is not None and not isinstance(data, dict):
        raise InputError("value.action.data", "must be an object")
    trigger = value.get("trigger")
    if trigger is not None and not isinstance(trigger, str):
        raise InputError("value.trigger", "must be a string")
    if value.get("authentication") is not None and not isinstance(value.get("authentication"), dict):
        raise InputError("value.authentication", "must be an object")


def _optional_object(value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        raise InputError("value", "must be an object")


# The invokes the bot answers (the manifest's message extension and card actions) → check of their value.
# Any other invoke name is refused with 400 before the turn (the SDK would answer 501 Not Implemented).
INVOKE_VALUES: Mapping[str, _Check] = MappingProxyType(
    {
        "adaptiveCard/action": _card_action,
        "application/search": _optional_object,
        "composeExtension/query": _query,
        "composeExtension/fetchTask": _model(MessagingExtensionAction),
        "composeExtension/submitAction": _model(MessagingExtensionAction),
    }
)
