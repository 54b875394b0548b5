"""WeCom callback XML: the encrypted outer envelope and the decrypted inner messages and events.

Bodies are size-capped before parsing and parsed with defusedxml, which refuses DTDs, entity
declarations and external references, so XXE and entity-expansion payloads never expand.
Inner messages are built by a registry keyed on (MsgType, Event, ChangeType).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_BODY_BYTES = 64 * 1024  # WeCom callbacks are a few KiB; the route refuses larger bodies unread
# Ids are stored in columns of 200 characters (users, customers.wecom_external_userid, tag events); WeCom's own
# are far shorter. A card button's EventKey may be up to 1,024 bytes; any other field is a short word or code.
FIELD_LIMITS = {
    "FromUserName": 200,
    "ToUserName": 200,
    "UserID": 200,
    "ExternalUserID": 200,
    "EventKey": 1024,
    "Encrypt": MAX_BODY_BYTES,
}
MAX_FIELD_CHARS = 1024
MAX_INT_DIGITS = 18  # CreateTime is seconds since 1970 (10 digits); 18 digits stay inside a 64-bit integer


class WeComXmlError(ValueError):
    """A callback body could not be turned into a message; the message says what and where."""


class BodyTooLargeError(WeComXmlError):
    """The body exceeds MAX_BODY_BYTES."""


class UnsafeXmlError(WeComXmlError):
    """The body declares a DTD, entities or external references."""


class MalformedXmlError(WeComXmlError):
    """The body is not well-formed XML with an <xml> root."""


class MissingFieldError(WeComXmlError):
    """A field the message type requires is absent or empty."""

    def __init__(self, field: str, where: str) -> None:
        super().__init__(f"{where}: required field <{field}> is missing or empty")
        self.field = field


class InvalidFieldError(WeComXmlError):
    """A field is present but has the wrong form (e.g. a non-integer CreateTime)."""

    def __init__(self, field: str, where: str, reason: str) -> None:
        super().__init__(f"{where}: field <{field}> {reason}")
        self.field = field


# ---------------------------------------------------------------------- types


@dataclass(frozen=True)
class Envelope:
    """The outer POST body: who it is for and the still-encrypted inner message."""

    to_user_name: str
    encrypt: str
    agent_id: str | None


@dataclass(frozen=True)
class TextMessage:
    """A member typed text in the app chat."""

    msg_id: str
    from_user: str
    to_user: str
    content: str
    create_time: int
    agent_id: str | None

    @property
    def dedupe_key(self) -> str:
        return self.msg_id


@dataclass(frozen=True)
class SelectedItem:
    """One answered question of a vote/multiple-choice template card."""

    question_key: str
    option_ids: tuple[str, ...]


@dataclass(frozen=True)
class TemplateCardEvent:
    """A member clicked a button (or submitted choices) on a template card."""

    from_user: str
    create_time: int
    event_key: str
    task_id: str
    card_type: str
    response_code: str | None
    agent_id: str | None
    selected_items: tuple[SelectedItem, ...] = ()

    @property
    def dedupe_key(self) -> str:
        return _key("template_card_event", "", self.from_user, self.task_id, self.event_key, self.create_time)


@dataclass(frozen=True)
class ExternalContactEvent:
    """A customer (external contact) was added, edited, deleted or failed to transfer."""

    change_type: str
    user_id: str
    external_user_id: str
    create_time: int
    state: str | None = None
    welcome_code: str | None = None
    source: str | None = None
    fail_reason: str | None = None

    @property
    def dedupe_key(self) -> str:
        return _key("change_external_contact", self.change_type, self.user_id, self.external_user_id, self.create_time)


@dataclass(frozen=True)
class ExternalTagEvent:
    """A corp customer tag or tag group was created, updated, deleted or reordered in WeCom."""

    change_type: str
    tag_id: str
    tag_type: str
    create_time: int
    strategy_id: str | None = None

    @property
    def dedupe_key(self) -> str:
        return _key("change_external_tag", self.change_type, self.tag_type, self.tag_id, self.create_time)


@dataclass(frozen=True)
class UnknownEvent:
    """Any message or event Kebiao does not handle; kept whole so it can be logged and acknowledged."""

    msg_type: str
    event: str | None
    change_type: str | None
    from_user: str | None
    create_time: int
    msg_id: str | None
    fields: tuple[tuple[str, str], ...]

    @property
    def dedupe_key(self) -> str:
        if self.msg_id:
            return self.msg_id
        return _key(self.event or self.msg_type, self.change_type or "", self.from_user or "", self.create_time)


WeComMessage = TextMessage | TemplateCardEvent | ExternalContactEvent | ExternalTagEvent | UnknownEvent


def _key(event: str, change_type: str, *parts: object) -> str:
    """event|changetype|ids…|CreateTime: stable across WeCom's retries of the same callback."""
    return "|".join([event, change_type, *(str(p) for p in parts)])


# ---------------------------------------------------------------------- parsing


def parse_xml(body: bytes | str, what: str = "callback body") -> ET.Element:
    """Size-cap, then parse with defusedxml; the root must be <xml>."""
    try:
        data = body.encode("utf-8") if isinstance(body, str) else body
    except UnicodeError:
        raise MalformedXmlError(f"{what} is not encodable as UTF-8 (lone surrogates)") from None
    if len(data) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"{what} is {len(data)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise UnsafeXmlError(f"{what} was refused: {type(exc).__name__} (DTDs and entities are not allowed)") from None
    except ET.ParseError as exc:
        raise MalformedXmlError(f"{what} is not well-formed XML: {exc}") from None
    except (LookupError, ValueError, RecursionError) as exc:
        # expat raises these for a declared encoding it does not know (LookupError) or cannot use (ValueError:
        # multi-byte encodings); the body comes from the network, so every parser failure is a 400, never a 500.
        raise MalformedXmlError(f"{what} could not be parsed: {type(exc).__name__}: {str(exc)[:120]}") from None
    if root.tag != "xml":
        raise MalformedXmlError(f"{what} has root <{root.tag}>; WeCom callbacks use <xml>")
    return root


def parse_envelope(body: bytes | str) -> Envelope:
    """Parse the encrypted POST body into its Envelope."""
    fields = _Fields(parse_xml(body, "callback body"), "callback envelope")
    return Envelope(
        to_user_name=fields.required("ToUserName"),
        encrypt=fields.required("Encrypt"),
        agent_id=fields.optional("AgentID"),
    )


def parse_message(plaintext: bytes | str) -> WeComMessage:
    """Parse a decrypted inner message and build its dataclass via the registry."""
    root = parse_xml(plaintext, "decrypted message")
    fields = _Fields(root, "decrypted message")
    msg_type = fields.required("MsgType")
    event = fields.optional("Event") if msg_type == "event" else None
    change_type = fields.optional("ChangeType") if event else None
    builder = _BUILDERS.get((msg_type, event, change_type)) or _BUILDERS.get((msg_type, event, None))
    where = "/".join(p for p in (msg_type, event, change_type) if p)
    return (builder or _unknown)(_Fields(root, where))


class _Fields:
    """Typed access to the direct children of one XML element, with errors naming the field."""

    def __init__(self, root: ET.Element, where: str) -> None:
        self.root = root
        self.where = where

    def optional(self, name: str) -> str | None:
        node = self.root.find(name)
        if node is None or node.text is None or not node.text.strip():
            return None
        value = node.text.strip()
        limit = FIELD_LIMITS.get(name, MAX_FIELD_CHARS)
        if len(value) > limit:
            raise InvalidFieldError(name, self.where, f"is {len(value):,} characters long (limit {limit:,})")
        return value

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise MissingFieldError(name, self.where)
        return value

    def raw(self, name: str) -> str:
        """Required text kept exactly as sent (user content keeps its whitespace)."""
        node = self.root.find(name)
        if node is None or node.text is None or not node.text.strip():
            raise MissingFieldError(name, self.where)
        return node.text

    def integer(self, name: str) -> int:
        value = self.required(name)
        if not value.isascii() or not value.isdigit():
            raise InvalidFieldError(name, self.where, f"must be a non-negative integer, got {value[:20]!r}")
        if len(value) > MAX_INT_DIGITS:
            raise InvalidFieldError(name, self.where, f"has {len(value):,} digits (limit {MAX_INT_DIGITS})")
        return int(value)


Builder = Callable[[_Fields], WeComMessage]
_BUILDERS: dict[tuple[str, str | None, str | None], Builder] = {}


def register(msg_type: str, event: str | None = None, *change_types: str) -> Callable[[Builder], Builder]:
    """Register a builder for MsgType (and Event, and each given ChangeType)."""

    def decorate(builder: Builder) -> Builder:
        for change_type in change_types or (None,):
            key = (msg_type, event, change_type)
            if key in _BUILDERS:
                raise RuntimeError(f"duplicate WeCom message builder for {key}")
            _BUILDERS[key] = builder
        return builder

    return decorate


@register("text")
def _text(f: _Fields) -> TextMessage:
    return TextMessage(
        msg_id=f.required("MsgId"),
        from_user=f.required("FromUserName"),
        to_user=f.required("ToUserName"),
        content=f.raw("Content"),
        create_time=f.integer("CreateTime"),
        agent_id=f.optional("AgentID"),
    )


@register("event", "template_card_event")
def _template_card(f: _Fields) -> TemplateCardEvent:
    items = []
    for node in f.root.iterfind("SelectedItems/SelectedItem"):
        item = _Fields(node, f"{f.where}/SelectedItem")
        options = tuple(o.text.strip() for o in node.iterfind("OptionIds/OptionId") if o.text and o.text.strip())
        items.append(SelectedItem(item.required("QuestionKey"), options))
    return TemplateCardEvent(
        from_user=f.required("FromUserName"),
        create_time=f.integer("CreateTime"),
        event_key=f.required("EventKey"),
        task_id=f.required("TaskId"),
        card_type=f.required("CardType"),
        response_code=f.optional("ResponseCode"),
        agent_id=f.optional("AgentID"),
        selected_items=tuple(items),
    )


@register(
    "event",
    "change_external_contact",
    "add_external_contact",
    "edit_external_contact",
    "del_external_contact",
    "del_follow_user",
    "add_half_external_contact",
    "transfer_fail",
)
def _external_contact(f: _Fields) -> ExternalContactEvent:
    return ExternalContactEvent(
        change_type=f.required("ChangeType"),
        user_id=f.required("UserID"),
        external_user_id=f.required("ExternalUserID"),
        create_time=f.integer("CreateTime"),
        state=f.optional("State"),
        welcome_code=f.optional("WelcomeCode"),
        source=f.optional("Source"),
        fail_reason=f.optional("FailReason"),
    )


@register("event", "change_external_tag", "create", "update", "delete")
def _external_tag(f: _Fields) -> ExternalTagEvent:
    return ExternalTagEvent(
        change_type=f.required("ChangeType"),
        tag_id=f.required("Id"),
        tag_type=f.required("TagType"),
        create_time=f.integer("CreateTime"),
        strategy_id=f.optional("StrategyId"),
    )


@register("event", "change_external_tag", "shuffle")
def _external_tag_shuffle(f: _Fields) -> ExternalTagEvent:
    # A shuffle without Id means every tag group was reordered.
    return ExternalTagEvent(
        change_type="shuffle",
        tag_id=f.optional("Id") or "",
        tag_type=f.optional("TagType") or "tag_group",
        create_time=f.integer("CreateTime"),
        strategy_id=f.optional("StrategyId"),
    )


def _unknown(f: _Fields) -> UnknownEvent:
    return UnknownEvent(
        msg_type=f.required("MsgType"),
        event=f.optional("Event"),
        change_type=f.optional("ChangeType"),
        from_user=f.optional("FromUserName"),
        create_time=f.integer("CreateTime"),
        msg_id=f.optional("MsgId"),
        fields=tuple((child.tag, (child.text or "").strip()) for child in f.root if len(child) == 0),
    )
