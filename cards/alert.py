"""Manager alert card: title, weighted reasons, Acknowledge / Snooze 7 days / Show customer."""

from __future__ import annotations

from datetime import datetime

from cards.adaptive import Card, Element, card, execute, fit, text
from cards.labels import Lang, aside, label
from cards.text import literal
from cards.views import AlertView
from cards.when import fmt_time
from core import verbs

TITLE_CHARS = 80
NAME_CHARS = 60
REASON_CHARS = 160
MAX_REASONS = 10


def build_alert_card(view: AlertView, now: datetime, lang: Lang = "zh") -> Card:
    """The alert with its reasons by weight; once acknowledged only 'Show customer' remains."""

    def render(cap: int) -> Card:
        reasons = sorted(view.reasons, key=lambda r: r.weight, reverse=True)
        body: list[Element] = [
            text("⚠️ " + literal(view.title, TITLE_CHARS), weight="Bolder", size="Medium", color="Attention"),
            text(literal(view.customer_name, NAME_CHARS), weight="Bolder", spacing="Small"),
            text(
                label("alert_raised", lang, when=fmt_time(view.raised_at, now)), isSubtle=True, size="Small"
            ),
        ]
        for reason in reasons[:cap]:
            weight = label("weight", lang, w=f"{reason.weight:.2f}")
            body.append(
                text(f"{_bar(reason.weight)} {literal(reason.text, REASON_CHARS)}{aside(weight, lang)}")
            )
        if len(reasons) > cap:
            body.append(text(label("more", lang, n=len(reasons) - cap), isSubtle=True))
        actions: list[Element] = []
        if view.acknowledged_by is not None or view.acknowledged_at is not None:
            when = fmt_time(view.acknowledged_at, now) if view.acknowledged_at else "?"
            who = literal(view.acknowledged_by or "?", NAME_CHARS)
            body.append(text(label("acked_by", lang, who=who, when=when), color="Good"))
        else:
            if view.snoozed_until is not None and view.snoozed_until > now:
                body.append(
                    text(label("snoozed_until", lang, when=fmt_time(view.snoozed_until, now)), isSubtle=True)
                )
            actions.append(execute(label("ack", lang), verbs.ALERT_ACK, {"alert_id": view.id}, "positive"))
            actions.append(
                execute(
                    label("snooze", lang),
                    verbs.ALERT_SNOOZE,
                    {"alert_id": view.id, "days": verbs.SNOOZE_DAYS},
                )
            )
        actions.append(
            execute(label("show_customer", lang), verbs.CUSTOMER_SHOW, {"customer_id": view.customer_id})
        )
        return card(body, actions)

    return fit(render, MAX_REASONS)


def _bar(weight: float) -> str:
    """A five-step bar so the heaviest reasons stand out at a glance."""
    filled = max(0, min(5, round(weight * 5)))
    return "▰" * filled + "▱" * (5 - filled)
