"""What Kebiao sends to WeCom: encrypted passive replies and message/send payloads.

Length limits follow WeCom's message docs: markdown content ≤ 2048 bytes; template_card task_id ≤ 128
bytes of [0-9A-Za-z_-@]; main_title.title ~36 and .desc ~44 characters; sub_title_text ~160;
horizontal_content_list ≤ 6 items (keyname ~5, value ~30 characters); button_list ≤ 6 buttons
(text ~10 characters, style 1..4, key ≤ 1024 bytes and unique). Display texts are truncated with
an ellipsis; identifiers and structure that would change meaning if cut are refused with ValueError.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bots.wecom.crypto import WeComCrypto

# WeCom treats an HTTP 200 with an empty body as "received, nothing to reply" (no retry).
SUCCESS_BODY = ""
SUCCESS_CONTENT_TYPE = "text/plain"

TEXT_REPLY_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 2048
TASK_ID_MAX_BYTES = 128
BUTTON_KEY_MAX_BYTES = 1024
MAIN_TITLE_MAX_CHARS = 36
MAIN_DESC_MAX_CHARS = 44
SUB_TITLE_MAX_CHARS = 160
HORIZONTAL_MAX_ITEMS = 6
HORIZONTAL_KEYNAME_MAX_CHARS = 5
HORIZONTAL_VALUE_MAX_CHARS = 30
BUTTONS_MAX = 6
BUTTON_TEXT_MAX_CHARS = 10
SOURCE_DESC_MAX_CHARS = 20
MAX_USERS = 1000
MAX_PARTIES_OR_TAGS = 100
ELLIPSIS = "…"

_TASK_ID = re.compile(r"[0-9A-Za-z_\-@]+")
_NONCE = re.compile(r"[0-9A-Za-z]{1,64}")
# WeCom markdown has no escape character; swap syntax characters for full-width look-alikes so
# customer text can never open a link, heading, <font> tag or an <@userid> mention.
_MARKDOWN_ESCAPES = str.maketrans(
    {"*": "＊", "_": "＿", "`": "｀", "[": "［", "]": "］", "<": "＜", ">": "＞", "#": "＃", "\\": "＼"}
)


# ---------------------------------------------------------------------- passive replies


def text_reply_xml(to_user: str, corp_id: str, content: str, create_time: int | None = None) -> str:
    """Plain inner XML of a passive text reply (content cut to WeCom's 2048 bytes)."""
    created = int(time.time()) if create_time is None else create_time
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName><FromUserName>{_cdata(corp_id)}</FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType>{_cdata('text')}</MsgType>"
        f"<Content>{_cdata(truncate_bytes(content, TEXT_REPLY_MAX_BYTES))}</Content></xml>"
    )


def encrypted_reply_xml(crypto: WeComCrypto, plaintext_xml: str, timestamp: str, nonce: str) -> str:
    """Encrypt and sign an inner reply into the <xml><Encrypt/><MsgSignature/>… body WeCom expects."""
    if not timestamp.isascii() or not timestamp.isdigit():
        raise ValueError(f"timestamp must be decimal digits, got {timestamp[:20]!r}")
    if not _NONCE.fullmatch(nonce):
        raise ValueError("nonce must be 1-64 ASCII letters or digits")
    reply = crypto.encrypt_reply(plaintext_xml, timestamp, nonce)
    return (
        f"<xml><Encrypt>{_cdata(reply.encrypt)}</Encrypt><MsgSignature>{_cdata(reply.signature)}</MsgSignature>"
        f"<TimeStamp>{reply.timestamp}</TimeStamp><Nonce>{_cdata(reply.nonce)}</Nonce></xml>"
    )


def _cdata(text: str) -> str:
    """Wrap in CDATA, splitting any ']]>' so the section cannot be closed early."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


# ---------------------------------------------------------------------- text helpers


def truncate_chars(text: str, limit: int) -> str:
    """Cut to at most `limit` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def truncate_bytes(text: str, limit: int) -> str:
    """Cut to at most `limit` UTF-8 bytes on a character boundary, ending with an ellipsis when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    budget = limit - len(ELLIPSIS.encode("utf-8"))
    return data[: max(budget, 0)].decode("utf-8", "ignore") + ELLIPSIS


def escape_markdown(text: str) -> str:
    """Neutralise WeCom markdown syntax in untrusted text (names, messages, tag names)."""
    return text.translate(_MARKDOWN_ESCAPES)


# ---------------------------------------------------------------------- message/send payloads


def recipients(
    to_users: Sequence[str] = (), to_parties: Sequence[str] = (), to_tags: Sequence[str] = ()
) -> dict[str, str]:
    """touser/toparty/totag fields ('|'-joined); at least one recipient is required."""
    if not (to_users or to_parties or to_tags):
        raise ValueError("a WeCom message needs at least one recipient (to_users, to_parties or to_tags)")
    if len(to_users) > MAX_USERS:
        raise ValueError(f"at most {MAX_USERS} users per message, got {len(to_users)}")
    if len(to_parties) > MAX_PARTIES_OR_TAGS or len(to_tags) > MAX_PARTIES_OR_TAGS:
        raise ValueError(f"at most {MAX_PARTIES_OR_TAGS} parties and {MAX_PARTIES_OR_TAGS} tags per message")
    for value in (*to_users, *to_parties, *to_tags):
        if not value or "|" in value:
            raise ValueError(f"recipient id {value!r} is empty or contains '|'")
    out = {"touser": "|".join(to_users), "toparty": "|".join(to_parties), "totag": "|".join(to_tags)}
    return {k: v for k, v in out.items() if v}


def markdown_message(
    content: str, *, to_users: Sequence[str] = (), to_parties: Sequence[str] = (), to_tags: Sequence[str] = ()
) -> dict[str, Any]:
    """A markdown message/send payload; content is cut to 2048 bytes (escape untrusted parts first)."""
    if not content.strip():
        raise ValueError("markdown content is empty")
    return {
        **recipients(to_users, to_parties, to_tags),
        "msgtype": "markdown",
        "markdown": {"content": truncate_bytes(content, MARKDOWN_MAX_BYTES)},
    }


@dataclass(frozen=True)
class CardButton:
    """A callback button: clicking it sends a template_card_event with EventKey = key."""

    text: str
    key: str
    style: int = 1  # 1..4: WeCom's button colours


@dataclass(frozen=True)
class HorizontalItem:
    """One 'keyname: value' line of a template card."""

    keyname: str
    value: str


def button_interaction_card(
    task_id: str,
    title: str,
    buttons: Sequence[CardButton],
    *,
    description: str | None = None,
    sub_title_text: str | None = None,
    horizontal: Sequence[HorizontalItem] = (),
    source_desc: str | None = None,
) -> dict[str, Any]:
    """The template_card object of card_type button_interaction, with WeCom's limits applied."""
    _check_task_id(task_id)
    if not title.strip():
        raise ValueError("button_interaction card needs a main title")
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise ValueError(f"button_interaction card needs 1..{BUTTONS_MAX} buttons, got {len(buttons)}")
    if len(horizontal) > HORIZONTAL_MAX_ITEMS:
        raise ValueError(
            f"at most {HORIZONTAL_MAX_ITEMS} horizontal_content_list items, got {len(horizontal)}"
        )
    card: dict[str, Any] = {"card_type": "button_interaction", "task_id": task_id}
    if source_desc:
        card["source"] = {"desc": truncate_chars(source_desc, SOURCE_DESC_MAX_CHARS)}
    main: dict[str, str] = {"title": truncate_chars(title, MAIN_TITLE_MAX_CHARS)}
    if description:
        main["desc"] = truncate_chars(description, MAIN_DESC_MAX_CHARS)
    card["main_title"] = main
    if sub_title_text:
        card["sub_title_text"] = truncate_chars(sub_title_text, SUB_TITLE_MAX_CHARS)
    if horizontal:
        card["horizontal_content_list"] = [
            {
                "keyname": truncate_chars(item.keyname, HORIZONTAL_KEYNAME_MAX_CHARS),
                "value": truncate_chars(item.value, HORIZONTAL_VALUE_MAX_CHARS),
            }
            for item in horizontal
        ]
    card["button_list"] = [_button(b) for b in buttons]
    keys = [b.key for b in buttons]
    if len(set(keys)) != len(keys):
        raise ValueError("button keys must be unique within a card")
    return card


def template_card_message(
    card: dict[str, Any],
    *,
    to_users: Sequence[str] = (),
    to_parties: Sequence[str] = (),
    to_tags: Sequence[str] = (),
) -> dict[str, Any]:
    """Wrap a template_card object into a message/send payload."""
    return {**recipients(to_users, to_parties, to_tags), "msgtype": "template_card", "template_card": card}


def _check_task_id(task_id: str) -> None:
    if not _TASK_ID.fullmatch(task_id):
        raise ValueError(f"task_id {task_id[:40]!r} may only contain digits, letters and _-@")
    if len(task_id) > TASK_ID_MAX_BYTES:
        raise ValueError(f"task_id is {len(task_id)} bytes; WeCom allows at most {TASK_ID_MAX_BYTES}")


def _button(button: CardButton) -> dict[str, Any]:
    if not button.text.strip():
        raise ValueError("a card button needs text")
    if not button.key:
        raise ValueError(f"button {button.text!r} needs a callback key")
    if len(button.key.encode("utf-8")) > BUTTON_KEY_MAX_BYTES:
        raise ValueError(f"button {button.text!r} key exceeds {BUTTON_KEY_MAX_BYTES} bytes")
    if not 1 <= button.style <= 4:
        raise ValueError(f"button {button.text!r} style must be 1..4, got {button.style}")
    return {
        "type": 0,
        "text": truncate_chars(button.text, BUTTON_TEXT_MAX_CHARS),
        "style": button.style,
        "key": button.key,
    }
