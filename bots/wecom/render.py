"""Chat results (core.chat) as WeCom message/send payloads: template cards for choices, markdown otherwise."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bots.wecom.replies import markdown_message, template_card_message
from cards.labels import Lang
from cards.present import _TEXT, summary_view
from cards.text import literal
from cards.views import (
    AppliedCardView,
    AppliedItem,
    ChoiceView,
    CustomerHit,
    SearchResultsView,
    SuggestionCardView,
    SuggestionItem,
)
from cards.wecom import (
    applied_markdown,
    choice_template_card,
    customer_summary_markdown,
    error_markdown,
    help_markdown,
    markdown,
    search_markdown,
    suggestion_markdown,
    suggestion_template_card,
)
from core.chat import (
    AppliedState,
    ChatResult,
    ChoiceResult,
    ErrorResult,
    HelpResult,
    LinkResult,
    SearchResult,
    SuggestionState,
    SuggestResult,
    SummaryResult,
    TagResult,
)
from core.suggestions import AUTO_ACTOR
from tagging.normaliser import name_key
from tagging.taxonomy import Taxonomy


def new_task_id() -> str:
    """A fresh template-card task id (WeCom wants it unique per app)."""
    return "kb-" + uuid.uuid4().hex


def _say(key: str, lang: Lang, **values: object) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def _who(user_id: str | None, names: Mapping[str, str], lang: Lang) -> str | None:
    if user_id is None:
        return None
    if user_id == AUTO_ACTOR:
        return _say("bot", lang)
    return names.get(user_id, user_id)


def _color(taxonomy: Taxonomy, dimension_key: str, tag_name: str) -> str | None:
    dimension = taxonomy.dimension(dimension_key)
    if dimension is None:
        return None
    key = name_key(tag_name)
    return next((t.color for t in dimension.iter_tags() if name_key(t.name) == key), None)


def suggestion_view(state: SuggestionState, taxonomy: Taxonomy, lang: Lang = "zh") -> SuggestionCardView:
    """The card view of a message's suggestions."""
    items = []
    for r in state.records:
        dimension = taxonomy.dimension(r.dimension)
        items.append(
            SuggestionItem(
                id=r.id,
                tag=r.tag,
                dimension_name=dimension.name if dimension else r.dimension,
                matched=tuple(str(w) for w in r.evidence.get("matched", ())),
                excerpt=str(r.evidence.get("excerpt", "")),
                score=r.score,
                status=r.status,
                decided_by=_who(r.decided_by, state.names, lang),
                decided_at=r.decided_at,
                color=_color(taxonomy, r.dimension, r.tag),
            )
        )
    return SuggestionCardView(state.customer.id, state.customer.name, tuple(items))


def applied_view(state: AppliedState, taxonomy: Taxonomy, lang: Lang = "zh") -> AppliedCardView:
    """The card view of tags applied automatically from one message."""
    items = []
    for e in state.entries:
        dimension = taxonomy.dimension(e.dimension)
        items.append(
            AppliedItem(
                assignment_id=e.assignment_id,
                tag=e.tag,
                dimension_name=dimension.name if dimension else e.dimension,
                matched=e.matched,
                color=_color(taxonomy, e.dimension, e.tag),
                expires_at=e.expires_at,
                undone_by=_who(e.undone_by, state.names, lang),
                undone_at=e.undone_at,
            )
        )
    return AppliedCardView(state.customer.id, state.customer.name, tuple(items))


def result_markdown(result: ChatResult, taxonomy: Taxonomy, now: datetime, lang: Lang = "zh") -> str:
    """Markdown text for any chat result."""
    match result:
        case SummaryResult(summary, viewer, note):
            body = customer_summary_markdown(summary_view(summary, viewer, taxonomy), now, lang)
            return markdown([literal(note, 300), body]) if note else body
        case TagResult(summary, viewer, changes, warnings):
            lines = [_change_line(outcome, names, lang) for outcome, names in _by_outcome(changes).items()]
            lines += [literal(w, 200) for w in warnings]
            return markdown([*lines, customer_summary_markdown(summary_view(summary, viewer, taxonomy), now, lang)])
        case LinkResult(customer, linked, summary, viewer):
            name = literal(customer.name, 60)
            if linked and summary is not None and viewer is not None:
                body = customer_summary_markdown(summary_view(summary, viewer, taxonomy), now, lang)
                return markdown([_say("linked", lang, name=name), body])
            return markdown([_say("unlinked", lang, name=name)])
        case SuggestResult(text, suggestions):
            lines = [f"**{_say('suggest_title', lang, text=literal(text, 80))}**"]
            if not suggestions:
                lines.append(_say("suggest_none", lang))
            for s in suggestions:
                mode = _say("suggest_apply" if s.action == "apply" else "suggest_ask", lang)
                lines.append(f"- **{literal(s.tag, 40)}** {'、'.join(literal(m, 20) for m in s.matched)} · {mode}")
            return markdown(lines)
        case SearchResult():
            hits = tuple(
                CustomerHit(
                    s.customer, tuple(t for d in summary_view(s, result.viewer, taxonomy).dimensions for t in d.tags)
                )
                for s in result.hits
            )
            view = SearchResultsView(
                result.query, hits, result.total, result.page, result.page_size, result.viewer.role.sees_sensitive
            )
            return search_markdown(view, now, lang)
        case ChoiceResult(query, candidates, _):
            lines = [f"**{literal(query, 40)}**"] + [
                f"- {literal(c.name, 60)} ({literal(c.company or c.region, 40)})" for c in candidates
            ]
            return markdown(lines)
        case HelpResult(topics, note):
            body = help_markdown(topics, lang)
            return markdown([_say("unknown", lang), body]) if note == "unknown" else body
        case ErrorResult(detail, hint):
            return error_markdown(detail, hint, lang)
        case SuggestionState():
            lines = [suggestion_markdown(suggestion_view(result, taxonomy, lang), now, lang)]
            lines += [f"❗ {literal(p, 300)}" for p in result.problems]
            return markdown(lines)
        case AppliedState():
            return applied_markdown(applied_view(result, taxonomy, lang), now, lang)
    raise TypeError(f"no WeCom rendering for {type(result).__name__}")


def result_template_card(
    result: ChatResult, taxonomy: Taxonomy, lang: Lang = "zh", task_id: str | None = None
) -> dict[str, Any] | None:
    """The button card for results people click on (pending suggestions, customer choices), else None."""
    if isinstance(result, SuggestionState):
        return suggestion_template_card(suggestion_view(result, taxonomy, lang), task_id or new_task_id(), lang)
    if isinstance(result, ChoiceResult):
        view = ChoiceView(result.query, result.candidates, dict(result.context))
        return choice_template_card(view, task_id or new_task_id(), lang)
    return None


def result_payload(
    result: ChatResult, to_user: str, taxonomy: Taxonomy, now: datetime, lang: Lang = "zh"
) -> dict[str, Any]:
    """The message/send payload for one result to one member."""
    card = result_template_card(result, taxonomy, lang)
    if card is not None:
        return template_card_message(card, to_users=[to_user])
    return markdown_message(result_markdown(result, taxonomy, now, lang), to_users=[to_user])


def _by_outcome(changes: tuple[Any, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for change in changes:
        name = literal(change.tag, 40)
        if change.replaced:
            name += "（替换了 " + "、".join(literal(r, 40) for r in change.replaced) + "）"
        out.setdefault(change.outcome, []).append(name)
    return out


def _change_line(outcome: str, names: list[str], lang: Lang) -> str:
    return _say(outcome, lang, names=("、" if lang == "zh" else ", ").join(names))
