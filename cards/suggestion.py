"""Suggestion card (accept / reject per tag, accept all) and the compact applied-with-Undo card."""

from __future__ import annotations

from datetime import datetime

from cards.adaptive import Card, Element, action_set, card, column, columns, execute, fit, text
from cards.colors import dot
from cards.labels import Lang, aside, label
from cards.text import literal
from cards.views import AppliedCardView, AppliedItem, SuggestionCardView, SuggestionItem
from cards.when import expiry_note, fmt_time
from core import verbs
from core.types import SuggestionStatus

NAME_CHARS = 60
TAG_CHARS = 40
WORD_CHARS = 20
EXCERPT_CHARS = 160
WHO_CHARS = 40
MAX_ITEMS = 20
MAX_WORDS = 5


def build_suggestion_card(view: SuggestionCardView, now: datetime, lang: Lang = "zh") -> Card:
    """One card per message; pending items get Accept / Reject, decided ones show who decided and when."""

    def render(cap: int) -> Card:
        shown = view.items[:cap]
        body: list[Element] = [
            text(label("suggested_for", lang, name=literal(view.customer_name, NAME_CHARS)), weight="Bolder")
        ]
        body.extend(_suggestion(item, now, lang) for item in shown)
        if len(view.items) > len(shown):
            body.append(text(label("more", lang, n=len(view.items) - len(shown)), isSubtle=True))
        pending = [item.id for item in shown if item.status is SuggestionStatus.PENDING]
        actions = []
        if len(pending) > 1:
            actions.append(
                execute(
                    label("accept_all", lang),
                    verbs.SUGGESTION_ACCEPT_ALL,
                    {"suggestion_ids": pending},
                    "positive",
                )
            )
        return card(body, actions)

    return fit(render, MAX_ITEMS)


def evidence(matched: tuple[str, ...], lang: Lang, learned: bool = False) -> str:
    """'命中：报价、价格' (from the learned model: '模型建议：…'), each word escaped; at most MAX_WORDS."""
    words = [literal(w, WORD_CHARS) for w in matched[:MAX_WORDS]]
    sep = "、" if lang == "zh" else ", "
    joined = sep.join(words)
    if len(matched) > MAX_WORDS:
        joined += sep + label("more", lang, n=len(matched) - MAX_WORDS)
    return label("learned" if learned else "matched", lang, words=joined)


def _suggestion(item: SuggestionItem, now: datetime, lang: Lang) -> Element:
    head = f"{dot(item.color)} **{literal(item.tag, TAG_CHARS)}**" + aside(
        literal(item.dimension_name, TAG_CHARS), lang
    )
    score = label("score", lang, pct=round(item.score * 100))
    detail = f"{evidence(item.matched, lang, item.learned)} · {score}"
    info: list[Element] = [text(head), text(detail, isSubtle=True, size="Small", spacing="None")]
    if item.excerpt:
        info.append(
            text(f"“{literal(item.excerpt, EXCERPT_CHARS)}”", isSubtle=True, size="Small", spacing="None")
        )
    if item.status is SuggestionStatus.PENDING:
        buttons = action_set(
            [
                execute(
                    label("accept", lang), verbs.SUGGESTION_ACCEPT, {"suggestion_id": item.id}, "positive"
                ),
                execute(label("reject", lang), verbs.SUGGESTION_REJECT, {"suggestion_id": item.id}),
            ]
        )
        return columns(column(info), column([buttons], width="auto"), separator=True)
    info.append(text(_decision(item, now, lang), size="Small", spacing="Small"))
    return columns(column(info), separator=True)


def _decision(item: SuggestionItem, now: datetime, lang: Lang) -> str:
    """Who decided what and when, for a decided (or expired) suggestion."""
    if item.status is SuggestionStatus.EXPIRED:
        return label("suggestion_expired", lang)
    who = literal(item.decided_by or "?", WHO_CHARS)
    when = fmt_time(item.decided_at, now) if item.decided_at is not None else "?"
    key = "accepted_by" if item.status is SuggestionStatus.ACCEPTED else "rejected_by"
    return label(key, lang, who=who, when=when)


def build_applied_card(view: AppliedCardView, now: datetime, lang: Lang = "zh") -> Card:
    """Compact notice of auto-applied tags, one Undo button each until undone."""

    def render(cap: int) -> Card:
        shown = view.items[:cap]
        body: list[Element] = [
            text(
                label("applied_for", lang, name=literal(view.customer_name, NAME_CHARS)),
                size="Small",
                isSubtle=True,
            )
        ]
        body.extend(_applied(item, now, lang) for item in shown)
        if len(view.items) > len(shown):
            body.append(
                text(label("more", lang, n=len(view.items) - len(shown)), isSubtle=True, size="Small")
            )
        return card(body)

    return fit(render, MAX_ITEMS)


def _applied(item: AppliedItem, now: datetime, lang: Lang) -> Element:
    line = f"{dot(item.color)} **{literal(item.tag, TAG_CHARS)}**" + aside(
        literal(item.dimension_name, TAG_CHARS), lang
    )
    notes = []
    if item.matched:
        notes.append(evidence(item.matched, lang))
    if item.expires_at is not None:
        notes.append(expiry_note(item.expires_at, now, lang))
    info: list[Element] = [text(line, spacing="None")]
    if notes:
        info.append(text(" · ".join(notes), isSubtle=True, size="Small", spacing="None"))
    if item.undone_by is not None or item.undone_at is not None:
        when = fmt_time(item.undone_at, now) if item.undone_at is not None else "?"
        info.append(
            text(
                label("undone_by", lang, who=literal(item.undone_by or "?", WHO_CHARS), when=when),
                size="Small",
            )
        )
        return columns(column(info), spacing="Small")
    undo = execute(label("undo", lang), verbs.ASSIGNMENT_UNDO, {"assignment_id": item.assignment_id})
    return columns(column(info), column([action_set([undo])], width="auto"), spacing="Small")
