"""Manager alert card in plain words: what, which customer and whose, each reason rated 高/中/低."""

from __future__ import annotations

from datetime import datetime

from cards.adaptive import (
    Card,
    Element,
    action_set,
    card,
    column,
    columns,
    container,
    execute,
    fit_most,
    rich,
    run,
    text,
    toggle_pair,
)
from cards.labels import SUBTLE, Lang, label, label_runs
from cards.text import plain
from cards.views import AlertReason, AlertView
from cards.when import fmt_time
from core import verbs

TITLE_CHARS = 80
NAME_CHARS = 120
REASON_CHARS = 160
MAX_REASONS = 200  # a digest opened in full lists every tag it covers, as many as fit one card
FIRST_REASONS = 5  # shown at once; the rest behind a toggle
# A reason's weight (0..1) in words: at or above the first bound 高, the second 中, else 低.
LEVELS: tuple[tuple[float, str, str], ...] = (
    (0.4, "level_high", "Attention"),
    (0.2, "level_mid", "Warning"),
    (0.0, "level_low", "Default"),
)


def build_alert_card(view: AlertView, now: datetime, lang: Lang = "zh") -> Card:
    """The alert with its reasons by weight; once acknowledged only 'Show customer' remains."""

    def render(cap: int) -> Card:
        reasons = sorted(view.reasons, key=lambda r: r.weight, reverse=True)[:cap]
        body = [*alert_heading(view, now, lang), *reason_rows(reasons, lang)]
        hidden = len(view.reasons) - len(reasons) + view.unlisted
        if hidden > 0:
            body.append(text(label("unlisted", lang, n=hidden), isSubtle=True, size="Small"))
        if view.unlisted > 0:  # a digest that counts more tags than it lists: the button lists them all
            show_all = execute(label("show_all", lang), verbs.ALERT_DIGEST_ALL, {"alert_id": view.id})
            body.append(action_set([show_all]))
        body.extend(page_rows(view, lang))
        body.extend(alert_state(view, now, lang))
        return card(body, alert_actions(view, lang))

    return fit_most(render, MAX_REASONS)


def alert_heading(view: AlertView, now: datetime, lang: Lang) -> list[Element]:
    """The title, the customer in bold with whose customer it is, and when the alert was raised."""
    out: list[Element] = [
        rich([run("⚠️ " + plain(view.title, TITLE_CHARS), weight="Bolder", size="Medium", color="Attention")]),
        _customer_row(view, lang),
    ]
    if view.owner:
        who = run(plain(view.owner, NAME_CHARS))
        out.append(rich(label_runs("owner_is", lang, "who", who, SUBTLE), spacing="None"))
    out.append(text(label("alert_raised", lang, when=fmt_time(view.raised_at, now)), isSubtle=True, size="Small"))
    return out


def _customer_row(view: AlertView, lang: Lang) -> Element:
    """The customer in bold with 'Show customer' beside it; a digest (rows about several customers) has a
    Show button on each row instead."""
    name = rich([run(plain(view.customer_name, NAME_CHARS), weight="Bolder")])
    if any(r.customer_id is not None for r in view.reasons):
        return columns(column([name]), spacing="Small")
    show = execute(label("show_customer", lang), verbs.CUSTOMER_SHOW, {"customer_id": view.customer_id})
    return columns(column([name]), column([action_set([show])], width="auto"), spacing="Small")


def page_rows(view: AlertView, lang: Lang) -> list[Element]:
    """'第 2/5 页' with 上一页 / 下一页 for a digest opened in full that takes more than one page."""
    if view.pages <= 1:
        return []
    buttons = [
        execute(label(key, lang), verbs.ALERT_DIGEST_ALL, {"alert_id": view.id, "page": page})
        for key, page in (("previous", view.page - 1), ("next", view.page + 1))
        if 1 <= page <= view.pages
    ]
    where = text(label("page", lang, page=view.page, pages=view.pages), isSubtle=True, size="Small")
    return [columns(column([where]), column([action_set(buttons)], width="auto"), spacing="Small")]


def level_word(weight: float, lang: Lang) -> str:
    """'【高】' / '[High]' for a reason's weight."""
    key = next(k for bound, k, _ in LEVELS if weight >= bound or bound == 0.0)
    return f"【{label(key, lang)}】" if lang == "zh" else f"[{label(key, lang)}]"


def level(weight: float, lang: Lang) -> Element:
    """高 / 中 / 低 for a reason's weight, coloured by urgency."""
    color = next(c for bound, _, c in LEVELS if weight >= bound or bound == 0.0)
    return run(level_word(weight, lang) + ("" if lang == "zh" else " "), weight="Bolder", color=color)


def reason_rows(reasons: list[AlertReason], lang: Lang) -> list[Element]:
    """The first few reasons one a row (with a Show button when about one customer), the rest behind a toggle."""
    rows = [_reason(r, lang) for r in reasons]
    if len(rows) <= FIRST_REASONS + 1:
        return rows
    rest = container(rows[FIRST_REASONS:], id="more-reasons", isVisible=False, spacing="None")
    toggles = toggle_pair(
        "more-reasons", label("show_rest", lang, n=len(rows) - FIRST_REASONS), label("hide_rest", lang)
    )
    return [*rows[:FIRST_REASONS], rest, *toggles]


def _reason(reason: AlertReason, lang: Lang) -> Element:
    line = rich([level(reason.weight, lang), run(plain(reason.text, REASON_CHARS))])
    if reason.customer_id is None:
        return columns(column([line]), spacing="Small")
    show = execute(label("show", lang), verbs.CUSTOMER_SHOW, {"customer_id": reason.customer_id})
    return columns(column([line]), column([action_set([show])], width="auto"), spacing="Small", separator=True)


def alert_state(view: AlertView, now: datetime, lang: Lang) -> list[Element]:
    """Who acknowledged it and when, or until when it is paused, or what '已跟进' does."""
    if view.acknowledged_by is not None or view.acknowledged_at is not None:
        when = fmt_time(view.acknowledged_at, now) if view.acknowledged_at else "?"
        who = run(plain(view.acknowledged_by or "?", NAME_CHARS), color="Good")
        return [rich(label_runs("acked_by", lang, "who", who, {"color": "Good"}, when=when))]
    if view.snoozed_until is not None and view.snoozed_until > now:
        return [text(label("snoozed_until", lang, when=fmt_time(view.snoozed_until, now)), isSubtle=True)]
    return [text(label("snooze_note", lang), isSubtle=True, size="Small")]


def alert_actions(view: AlertView, lang: Lang) -> list[Element]:
    """'我知道了' (acknowledge) and '已跟进' (snooze) while the alert is open; none once acknowledged."""
    actions: list[Element] = []
    if view.acknowledged_by is None and view.acknowledged_at is None:
        actions.append(execute(label("ack", lang), verbs.ALERT_ACK, {"alert_id": view.id}, "positive"))
        actions.append(
            execute(label("snooze", lang), verbs.ALERT_SNOOZE, {"alert_id": view.id, "days": verbs.SNOOZE_DAYS})
        )
    return actions
