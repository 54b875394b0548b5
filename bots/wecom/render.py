"""Chat results (core.chat.service) as WeCom message/send payloads: template cards for choices, markdown otherwise."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from bots.wecom.replies import markdown_message, template_card_message
from cards.labels import Lang
from cards.meeting import prep_heading
from cards.personal import personal_change_lines, personal_markdown
from cards.present import alert_view, applied_view, say, search_view, suggestion_view, summary_view
from cards.text import literal
from cards.views import ChoiceView
from cards.wecom import (
    alert_markdown,
    alert_markdown_parts,
    applied_markdown,
    choice_markdown,
    choice_template_card,
    customer_summary_markdown,
    digest_pages_card,
    error_markdown,
    help_markdown,
    markdown,
    search_markdown,
    suggestion_markdown,
    suggestion_template_card,
)
from core.chat.service import (
    AlertResult,
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
from tagging.taxonomy import Taxonomy


def new_task_id() -> str:
    """A fresh template-card task id (WeCom wants it unique per app)."""
    return "kb-" + uuid.uuid4().hex


def result_markdown(result: ChatResult, taxonomy: Taxonomy, now: datetime, lang: Lang = "zh") -> str:
    """Markdown text for any chat result."""
    match result:
        case SummaryResult(summary, viewer, note, personal, change, prep):
            body = customer_summary_markdown(summary_view(summary, viewer, taxonomy), now, lang)
            lines = ([prep_heading(lang)] if prep else []) + ([literal(note, 300)] if note else [])
            if change is not None:
                lines += personal_change_lines(change.added, change.removed, change.not_held, lang)
            parts = [*lines, body] + ([personal_markdown(personal, lang)] if personal is not None else [])
            return markdown(parts) if len(parts) > 1 else body
        case TagResult(summary, viewer, changes, warnings):
            lines = [_change_line(outcome, names, lang) for outcome, names in _by_outcome(changes).items()]
            lines += [literal(w, 200) for w in warnings]
            return markdown([*lines, customer_summary_markdown(summary_view(summary, viewer, taxonomy), now, lang)])
        case LinkResult(customer, linked, summary, viewer):
            name = literal(customer.name, 60)
            if linked and summary is not None and viewer is not None:
                body = customer_summary_markdown(summary_view(summary, viewer, taxonomy), now, lang)
                return markdown([say("linked", lang, name=name), body])
            return markdown([say("unlinked", lang, name=name)])
        case SuggestResult(text, suggestions):
            lines = [f"**{say('suggest_title', lang, text=literal(text, 80))}**"]
            if not suggestions:
                lines.append(say("suggest_none", lang))
            for s in suggestions:
                mode = say("suggest_apply" if s.action == "apply" else "suggest_ask", lang)
                lines.append(f"- **{literal(s.tag, 40)}** {'、'.join(literal(m, 20) for m in s.matched)} · {mode}")
            return markdown(lines)
        case SearchResult():
            return search_markdown(search_view(result, taxonomy), now, lang)
        case ChoiceResult(query, candidates, context):
            return choice_markdown(ChoiceView(query, candidates, dict(context)), False, lang)[0]
        case HelpResult(topics, note):
            body = help_markdown(topics, lang)
            return markdown([say("unknown", lang), body]) if note == "unknown" else body
        case ErrorResult(detail, hint, zh):
            if lang == "zh" and zh is not None:  # written in Chinese too: say it in Chinese, as Teams does
                detail, hint = zh
            return error_markdown(detail, hint, lang)
        case SuggestionState():
            lines = [suggestion_markdown(suggestion_view(result, taxonomy, lang), now, lang)]
            lines += [f"❗ {literal(p, 300)}" for p in result.problems]
            return markdown(lines)
        case AppliedState():
            return applied_markdown(applied_view(result, taxonomy, lang), now, lang)
        case AlertResult(status, names, page):
            return alert_markdown(alert_view(status, names, page), now, lang)
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
    """The message/send payload for one result to one member (a single message; see result_payloads)."""
    card = result_template_card(result, taxonomy, lang)
    if card is not None:
        return template_card_message(card, to_users=[to_user])
    return markdown_message(result_markdown(result, taxonomy, now, lang), to_users=[to_user])


def result_payloads(
    result: ChatResult, to_user: str, taxonomy: Taxonomy, now: datetime, lang: Lang = "zh"
) -> list[dict[str, Any]]:
    """Every message/send payload one result needs, in order.

    A customer choice is the candidates in full (markdown, several messages when long) followed by the
    card with a 选择 button per number; a page of a digest opened in full is its rows in as many markdown
    messages as they take, followed by the 上一页 / 下一页 card. Anything else is one message.
    """
    to = [to_user]
    if isinstance(result, ChoiceResult):
        card = result_template_card(result, taxonomy, lang)
        view = ChoiceView(result.query, result.candidates, dict(result.context))
        texts = [markdown_message(body, to_users=to) for body in choice_markdown(view, card is not None, lang)]
        return texts + ([template_card_message(card, to_users=to)] if card is not None else [])
    if isinstance(result, AlertResult) and result.page is not None:
        alert = alert_view(result.status, result.names, result.page)
        texts = [markdown_message(body, to_users=to) for body in alert_markdown_parts(alert, now, lang)]
        pages = digest_pages_card(alert, new_task_id(), lang)
        return texts + ([template_card_message(pages, to_users=to)] if pages is not None else [])
    return [result_payload(result, to_user, taxonomy, now, lang)]


def _by_outcome(changes: tuple[Any, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for change in changes:
        name = literal(change.tag, 40)
        if change.replaced:
            name += "（替换了 " + "、".join(literal(r, 40) for r in change.replaced) + "）"
        out.setdefault(change.outcome, []).append(name)
    return out


def _change_line(outcome: str, names: list[str], lang: Lang) -> str:
    return say(outcome, lang, names=("、" if lang == "zh" else ", ").join(names))
