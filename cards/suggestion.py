"""Suggestion card (accept / reject per tag, accept all) and the compact applied-with-Undo card."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import datetime

from cards.adaptive import Card, Element, action_set, card, column, columns, container, execute, fit, rich, run, text
from cards.icons import marker
from cards.labels import BOLD, SMALL, SUBTLE, Lang, aside, label, label_runs
from cards.text import literal, plain
from cards.views import AppliedCardView, AppliedItem, SuggestionCardView, SuggestionItem
from cards.when import expiry_note, fmt_time
from core import verbs
from core.types import SuggestionStatus

NAME_CHARS = 120
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
        name = run(plain(view.customer_name, NAME_CHARS), weight="Bolder")
        body: list[Element] = [rich(label_runs("suggested_for", lang, "name", name, BOLD))]
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
    return _evidence([literal(w, WORD_CHARS) for w in matched], lang, learned)


def plain_evidence(matched: tuple[str, ...], lang: Lang, learned: bool = False) -> str:
    """The same as `evidence`, verbatim, for TextRuns."""
    return _evidence([plain(w, WORD_CHARS) for w in matched], lang, learned)


def _evidence(words: list[str], lang: Lang, learned: bool) -> str:
    sep = "、" if lang == "zh" else ", "
    joined = sep.join(words[:MAX_WORDS])
    if len(words) > MAX_WORDS:
        joined += sep + label("more", lang, n=len(words) - MAX_WORDS)
    return label("learned" if learned else "matched", lang, words=joined)


def highlighted(excerpt: str, words: Sequence[str], **props: object) -> list[Element]:
    """The excerpt as runs with every occurrence of a matched word highlighted in bold.

    Scanning left to right, the longest word found at a place wins and the scan goes on after it.
    """
    runs: list[Element] = []
    plain_from = 0
    for start, end in places(excerpt, words):
        if start > plain_from:
            runs.append(run(excerpt[plain_from:start], **props))
        runs.append(run(excerpt[start:end], **props, weight="Bolder", highlight=True))
        plain_from = end
    if plain_from < len(excerpt):
        runs.append(run(excerpt[plain_from:], **props))
    return runs


def places(excerpt: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) of each word found in the excerpt, ignoring case, the longest at a place first."""
    found = sorted({w for w in words if w}, key=len, reverse=True)
    lowered = excerpt.casefold()
    if len(lowered) == len(excerpt) and all(len(w.casefold()) == len(w) for w in found):
        # Places line up between the excerpt and its case fold (all but a few scripts' special letters):
        # one regex scan, its alternatives longest first, finds what the scan below finds.
        return [(m.start(), m.end()) for m in _alternatives(tuple(w.casefold() for w in found)).finditer(lowered)]
    return _scan(excerpt, lowered, found)


def _scan(excerpt: str, lowered: str, found: list[str]) -> list[tuple[int, int]]:
    """Where each word is found, place by place: (start, end) in the excerpt."""
    hits = []
    start = 0
    while start < len(excerpt):
        hit = next((w for w in found if lowered.startswith(w.casefold(), start)), None)
        if hit is None:
            start += 1
            continue
        hits.append((start, start + len(hit)))
        start += len(hit)
    return hits


@functools.lru_cache(maxsize=1024)
def _alternatives(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern matching any of `words`, trying them in order at each place (an empty pattern matches nothing)."""
    return re.compile("|".join(map(re.escape, words)) or "(?!)")


def tag_head(
    tag: str, color: str | None, dimension: str, lang: Lang, icon: str | None = None, **props: object
) -> list[Element]:
    """'🔵 询价客户（需求阶段）' as verbatim runs (the tag's icon after the dot), the tag in bold."""
    return [
        run(f"{marker(color, icon)} "),
        run(plain(tag, TAG_CHARS), weight="Bolder", **props),
        run(aside(plain(dimension, TAG_CHARS), lang), isSubtle=True),
    ]


def _suggestion(item: SuggestionItem, now: datetime, lang: Lang) -> Element:
    score = label("score", lang, pct=round(item.score * 100))
    detail = f"{plain_evidence(item.matched, lang, item.learned)} · {score}"
    info: list[Element] = [
        rich(tag_head(item.tag, item.color, item.dimension_name, lang, icon=item.icon)),
        rich([run(detail, isSubtle=True, size="Small")], spacing="None"),
    ]
    if item.excerpt:
        excerpt = f"“{plain(item.excerpt, EXCERPT_CHARS)}”"
        info.append(rich(highlighted(excerpt, item.matched, isSubtle=True, size="Small"), spacing="None"))
    if item.status is SuggestionStatus.PENDING:
        accept = execute(label("accept", lang), verbs.SUGGESTION_ACCEPT, {"suggestion_id": item.id}, "positive")
        reject = execute(label("reject", lang), verbs.SUGGESTION_REJECT, {"suggestion_id": item.id})
        return container([*info, action_set([accept, reject])], separator=True)
    info.append(rich(_decision(item, now, lang), spacing="Small"))
    return container(info, separator=True)


def _decision(item: SuggestionItem, now: datetime, lang: Lang) -> list[Element]:
    """Who decided what and when, for a decided (or expired) suggestion, the name verbatim."""
    if item.status is SuggestionStatus.EXPIRED:
        return [run(label("suggestion_expired", lang), size="Small")]
    who = run(plain(item.decided_by or "?", WHO_CHARS), size="Small")
    when = fmt_time(item.decided_at, now) if item.decided_at is not None else "?"
    key = "accepted_by" if item.status is SuggestionStatus.ACCEPTED else "rejected_by"
    return label_runs(key, lang, "who", who, SMALL, when=when)


def build_applied_card(view: AppliedCardView, now: datetime, lang: Lang = "zh") -> Card:
    """Compact notice of auto-applied tags, one Undo button each until undone (then struck through)."""

    def render(cap: int) -> Card:
        shown = view.items[:cap]
        name = run(plain(view.customer_name, NAME_CHARS), isSubtle=True)
        body: list[Element] = [rich(label_runs("applied_for", lang, "name", name, SUBTLE))]
        body.extend(_applied(item, now, lang) for item in shown)
        if len(view.items) > len(shown):
            body.append(text(label("more", lang, n=len(view.items) - len(shown)), isSubtle=True, size="Small"))
        return card(body)

    return fit(render, MAX_ITEMS)


def _applied(item: AppliedItem, now: datetime, lang: Lang) -> Element:
    undone = item.undone_by is not None or item.undone_at is not None
    struck = {"strikethrough": True} if undone else {}
    head = tag_head(item.tag, item.color, item.dimension_name, lang, icon=item.icon, **struck)
    notes = []
    if item.matched:
        notes.append(plain_evidence(item.matched, lang))
    if item.expires_at is not None and not undone:
        notes.append(expiry_note(item.expires_at, now, lang))
    info: list[Element] = [rich(head, spacing="None")]
    if notes:
        info.append(rich([run(" · ".join(notes), isSubtle=True, size="Small")], spacing="None"))
    if undone:
        when = fmt_time(item.undone_at, now) if item.undone_at is not None else "?"
        who = run(plain(item.undone_by or "?", WHO_CHARS), size="Small")
        info.append(rich(label_runs("undone_by", lang, "who", who, SMALL, when=when), spacing="None"))
        return columns(column(info), spacing="Small")
    undo = execute(label("undo", lang), verbs.ASSIGNMENT_UNDO, {"assignment_id": item.assignment_id})
    return columns(column(info), column([action_set([undo])], width="auto"), spacing="Small")
