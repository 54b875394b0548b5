"""Channel-name convention parts of cards: the link offer for a conventionally named channel, and the
conventional name shown on a customer card to copy. Names are shown verbatim in text runs (no Markdown)."""

from __future__ import annotations

from collections.abc import Mapping

from cards.adaptive import Card, Element, card, execute, text
from cards.labels import Lang
from cards.text import clip, literal
from core import verbs

NAME_CHARS = 120

_TEXT: dict[str, tuple[str, str]] = {
    "offer": (
        "频道「{channel}」按命名规范对应客户 {customer}。绑定后，频道里的消息会为该客户推荐标签。",
        "Channel “{channel}” is named for customer {customer}. Link it, and messages there are matched for them.",
    ),
    "link": ("绑定到 {customer}", "Link to {customer}"),
    "name": ("频道命名：", "Channel name: "),
    "linked": (
        "频道「{channel}」已绑定到 {customer}：之后频道里的消息会为该客户推荐标签。",
        "Channel “{channel}” is now linked to {customer}; messages there will be matched for this customer.",
    ),
}


def _say(key: str, lang: Lang, **values: object) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def channel_offer_card(
    channel_id: str,
    channel_name: str,
    customer_id: int,
    customer_name: str,
    lang: Lang,
    seal: Mapping[str, str | int] | None = None,
) -> Card:
    """The offer to link a channel whose name follows the convention; the button links it in one click.

    `seal` (team, expiry, signature) goes into the button's data as is: the click is checked against it.
    """
    customer = literal(customer_name, NAME_CHARS)
    body = [text(_say("offer", lang, channel=literal(channel_name, NAME_CHARS), customer=customer))]
    data = {"channel_id": channel_id, "customer_id": customer_id, "channel_name": channel_name[:NAME_CHARS]}
    data |= dict(seal or {})
    return card(body, [execute(_say("link", lang, customer=customer), verbs.CHANNEL_LINK, data, style="positive")])


def channel_linked(channel_name: str, customer: str, lang: Lang) -> str:
    """The escaped note above the customer card once a channel was linked from an offer."""
    return _say("linked", lang, channel=literal(channel_name, NAME_CHARS), customer=customer)


def conventional_name_section(name: str, lang: Lang = "zh") -> Element:
    """"频道命名：[VIP]ABC公司-合同续约中" with the name in a monospace text run, verbatim, to copy."""
    return {
        "type": "RichTextBlock",
        "spacing": "Medium",
        "inlines": [
            {"type": "TextRun", "text": _say("name", lang), "isSubtle": True, "size": "Small"},
            {"type": "TextRun", "text": clip(name, NAME_CHARS), "fontType": "Monospace", "size": "Small"},
        ],
    }
