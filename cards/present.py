"""Chat results (core.chat) → card views → Adaptive Card dicts; pure, shared by the Teams and WeCom renderers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from cards.adaptive import Card, Element, card, container, rich, run, text
from cards.alert import build_alert_card
from cards.channel_name import channel_linked, channel_offer_card, conventional_name_section
from cards.customer import build_customer_summary_card
from cards.error import build_error_card
from cards.help import build_help_card
from cards.labels import Lang
from cards.meeting import prep_heading
from cards.personal import personal_change_lines, personal_section
from cards.search import build_choice_card, build_search_results_card
from cards.suggestion import build_applied_card, build_suggestion_card, plain_evidence, tag_head
from cards.text import literal, plain
from cards.views import (
    AlertReason,
    AlertView,
    AppliedCardView,
    AppliedItem,
    ChoiceView,
    CustomerHit,
    CustomerSummaryView,
    DimensionView,
    SearchResultsView,
    SuggestionCardView,
    SuggestionItem,
    TagView,
)
from core import verbs
from core.alerts.actions import AlertStatus
from core.alerts.ports import OutboxMessage
from core.alerts.selection import AlertNotice
from core.chat.channel_names import conventional_name
from core.chat.service import (
    AlertResult,
    AppliedState,
    ChannelOffer,
    ChatResult,
    ChoiceResult,
    DigestPage,
    ErrorResult,
    HelpResult,
    LinkResult,
    SearchResult,
    SuggestionState,
    SuggestResult,
    SummaryResult,
    TagResult,
)
from core.tags.expression import ExpressionError, parse_expression, tag_names
from core.tags.suggestions import AUTO_ACTOR
from core.tags.summary import CustomerSummary
from core.types import Customer, User
from tagging.normaliser import name_key
from tagging.taxonomy import Dimension, TagDef, Taxonomy, Visibility

NAME_CHARS = 60
TAG_CHARS = 40

# Fixed sentences of this module (trusted text), Chinese and English.
_TEXT: dict[str, tuple[str, str]] = {
    "unknown": ("没有听懂这条消息，可以用下面的命令：", "I did not understand that; these are the commands:"),
    "added": ("已添加：{names}", "Added: {names}"),
    "removed": ("已移除：{names}", "Removed: {names}"),
    "renewed": ("已续期：{names}", "Renewed: {names}"),
    "not_held": ("本来就没有：{names}", "Not held anyway: {names}"),
    "replaced": ("（替换了 {names}）", " (replaced {names})"),
    "linked": (
        "本会话已绑定到 {name}：之后的消息会为该客户推荐标签。",
        "This conversation is now linked to {name}; messages here will be matched for this customer.",
    ),
    "unlinked": ("本会话已解除与 {name} 的绑定。", "This conversation is no longer linked to {name}."),
    "suggest_title": ("“{text}”可能对应的标签", "Tags for “{text}”"),
    "suggest_none": ("没有匹配的标签", "No tag matches"),
    "suggest_apply": ("自动添加", "applied automatically"),
    "suggest_ask": ("需确认", "needs a click"),
    "bot": ("客标", "Kebiao"),
}


def say(key: str, lang: Lang, **values: object) -> str:
    zh, en = _TEXT[key]
    return (zh if lang == "zh" else en).format(**values)


def present(result: ChatResult, taxonomy: Taxonomy, now: datetime, lang: Lang = "zh") -> Card:
    """The Adaptive Card for one chat result."""
    match result:
        case SummaryResult(summary, viewer, note, personal, change, prep):
            banner: list[Element] = [rich([run(prep_heading(lang), weight="Bolder", size="Medium")])] if prep else []
            if note:
                banner.append(rich([run(plain(note, 300))]))
            if change is not None:
                # Escaped lines (names inside them), so they go where Markdown renders.
                changed = personal_change_lines(change.added, change.removed, change.not_held, lang)
                if changed:
                    banner.append(container([text(line, weight="Bolder") for line in changed], style="good"))
            built = summary_card(summary, viewer, taxonomy, now, lang, banner)
            built["body"].append(conventional_name_section(conventional_name(summary), lang))
            if personal is not None:
                built["body"].append(personal_section(personal, lang))
            return built
        case ChannelOffer(channel_id, channel_name, customer, seal):
            sealed = seal.data() if seal is not None else None
            return channel_offer_card(channel_id, channel_name, customer.id, customer.name, lang, sealed)
        case TagResult(summary, viewer, _, warnings):
            return summary_card(summary, viewer, taxonomy, now, lang, change_banner(result, warnings, lang))
        case LinkResult(customer, linked, summary, viewer, channel_name):
            name = plain(customer.name, NAME_CHARS)
            if linked and summary is not None and viewer is not None:
                head: Element = rich([run("🔗 " + say("linked", lang, name=name), weight="Bolder")])
                if channel_name is not None:
                    head = text(channel_linked(channel_name, literal(customer.name, NAME_CHARS), lang), weight="Bolder")
                return summary_card(summary, viewer, taxonomy, now, lang, [container([head], style="good")])
            return card([rich([run(say("unlinked", lang, name=name))])])
        case SuggestResult():
            return suggest_card(result, taxonomy, lang)
        case SearchResult():
            return search_card(result, taxonomy, now, lang)
        case ChoiceResult(query, candidates, context):
            return build_choice_card(ChoiceView(query, candidates, dict(context)), lang)
        case HelpResult(topics, note):
            built = build_help_card(topics, lang)
            if note == "unknown":
                built["body"].insert(0, text(say("unknown", lang), weight="Bolder"))
            return built
        case ErrorResult(detail, hint, zh):
            if lang == "zh" and zh is not None:
                detail, hint = zh
            else:
                lang = language_of(detail + (hint or ""))  # the card speaks the language the text is in
            return build_error_card(detail, hint, lang=lang)
        case AlertResult(status, names, page):
            return build_alert_card(alert_view(status, names, page), now, lang)
        case SuggestionState():
            return suggestion_card(result, taxonomy, now, lang)
        case AppliedState():
            return applied_card(result, taxonomy, now, lang)
    raise TypeError(f"no card for {type(result).__name__}")


def language_of(text: str) -> Lang:
    """'zh' when `text` holds more CJK characters than ASCII letters (a name inside English stays English)."""
    cjk = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    ascii_letters = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    return "zh" if cjk > ascii_letters else "en"


def summary_view(summary: CustomerSummary, viewer: User, taxonomy: Taxonomy) -> CustomerSummaryView:
    """The card view of a customer summary (the summary already holds only what the viewer may see)."""
    dims = []
    for group in summary.groups:
        dimension = taxonomy.dimension(group.key)
        sensitive = dimension is not None and dimension.visibility is Visibility.MANAGERS
        tags = tuple(
            _tag_view(t.name, group.name, t.color, t.expires_at, dimension, sensitive, t.reason) for t in group.tags
        )
        dims.append(DimensionView(group.name, tags, sensitive))
    return CustomerSummaryView(summary.customer, tuple(dims), viewer.role.sees_sensitive, owner_name=summary.owner_name)


def summary_card(
    summary: CustomerSummary,
    viewer: User,
    taxonomy: Taxonomy,
    now: datetime,
    lang: Lang,
    banner: list[Element],
) -> Card:
    """The customer card with `banner` (what just happened) above the customer's name."""
    return build_customer_summary_card(summary_view(summary, viewer, taxonomy), now, lang, banner)


def change_banner(result: TagResult, warnings: tuple[str, ...], lang: Lang) -> list[Element]:
    """What the `tag` command changed, large on a green band, and any warning on an amber band below it."""
    lines = [rich([run(line, weight="Bolder", size="Medium")]) for line in _change_lines(result, lang)]
    out = [container(lines, style="good", bleed=False)] if lines else []
    if warnings:
        items = [rich([run("⚠️ " + plain(w, 300), weight="Bolder", color="Warning")]) for w in warnings]
        out.append(container(items, style="warning", spacing="Small"))
    return out


def search_view(result: SearchResult, taxonomy: Taxonomy) -> SearchResultsView:
    """The card view of one page of search hits, each with the tags the viewer may see."""
    named = _query_tags(result.query)
    hits = []
    for s in result.hits:
        tags = tuple(t for d in summary_view(s, result.viewer, taxonomy).dimensions for t in d.tags)
        hits.append(CustomerHit(s.customer, tags, frozenset(t.name for t in tags if name_key(t.name) in named)))
    sees = result.viewer.role.sees_sensitive
    return SearchResultsView(
        result.query, tuple(hits), result.total, result.page, result.page_size, sees, result.total_is_lower_bound
    )


def search_card(result: SearchResult, taxonomy: Taxonomy, now: datetime, lang: Lang) -> Card:
    return build_search_results_card(search_view(result, taxonomy), now, lang)


def suggestion_view(state: SuggestionState, taxonomy: Taxonomy, lang: Lang = "zh") -> SuggestionCardView:
    """The card view of a message's suggestions; decided ones name who decided (the bot as 客标 / Kebiao)."""
    items = []
    for r in state.records:
        dimension = taxonomy.dimension(r.dimension)
        matched, excerpt = _suggestion_evidence(r.evidence)
        tag = _tag_def(taxonomy, r.dimension, r.tag)  # colour and icon from one scan of the dimension
        items.append(
            SuggestionItem(
                id=r.id,
                tag=r.tag,
                dimension_name=dimension.name if dimension else r.dimension,
                matched=matched,
                excerpt=excerpt,
                score=r.score,
                status=r.status,
                decided_by=_who(r.decided_by, state.names, lang),
                decided_at=r.decided_at,
                color=tag.color if tag is not None else None,
                icon=tag.icon if tag is not None else None,
                learned=r.evidence.get("source") == "learned",
            )
        )
    return SuggestionCardView(state.customer.id, state.customer.name, tuple(items))


def _suggestion_evidence(evidence: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """(matched words, excerpt) of a suggestion: a message's keywords and text, or a rule's name and facts."""
    matched = tuple(str(w) for w in evidence.get("matched", ()))
    excerpt = str(evidence.get("excerpt", ""))
    if not matched and evidence.get("rule"):
        matched = (f"规则「{evidence['rule']}」",)
    if not excerpt and evidence.get("facts"):
        excerpt = "；".join(str(f) for f in evidence["facts"])
    return matched, excerpt


def rule_suggestion_view(notice: AlertNotice) -> SuggestionCardView:
    """A rule's pending suggestions as a suggestion card view: the rule as evidence, its facts as the excerpt."""
    rule = notice.rule.removeprefix("rule:")
    facts = "；".join(r.text for r in notice.reasons if r.signal == "fact")
    items = tuple(
        SuggestionItem(s.id, s.tag, s.dimension, (f"规则「{rule}」",), facts, 1.0) for s in notice.suggestions
    )
    return SuggestionCardView(notice.customer_id, notice.customer_name, items)


def rule_suggestion_card(notice: AlertNotice, now: datetime, lang: Lang = "zh") -> Card:
    """A rule's suggestion as it reaches the owner: the suggestion card (Accept / Reject per tag) under the
    notice's title, with the facts that made the rule fire."""
    built = build_suggestion_card(rule_suggestion_view(notice), now, lang)
    built["body"].insert(0, text(literal(notice.title, 200), weight="Bolder", color="Accent"))
    return built


def suggestion_card(state: SuggestionState, taxonomy: Taxonomy, now: datetime, lang: Lang) -> Card:
    """One card per message: Accept / Reject per pending tag; decided tags show who and when."""
    built = build_suggestion_card(suggestion_view(state, taxonomy, lang), now, lang)
    for problem in state.problems:
        built["body"].append(rich([run("❗ " + plain(problem, 300), color="Attention", size="Small")]))
    return built


def applied_view(state: AppliedState, taxonomy: Taxonomy, lang: Lang = "zh") -> AppliedCardView:
    """The card view of tags applied automatically from one message, with who undid which."""
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
                icon=tag_icon(taxonomy, e.dimension, e.tag),
                expires_at=e.expires_at,
                undone_by=_who(e.undone_by, state.names, lang),
                undone_at=e.undone_at,
            )
        )
    return AppliedCardView(state.customer.id, state.customer.name, tuple(items))


def applied_card(state: AppliedState, taxonomy: Taxonomy, now: datetime, lang: Lang) -> Card:
    """The compact auto-applied card; each Undo carries the customer and message it belongs to."""
    built = build_applied_card(applied_view(state, taxonomy, lang), now, lang)
    extra = {"customer_id": state.customer.id, "message_key": state.message_key}
    return with_action_data(built, verbs.ASSIGNMENT_UNDO, extra)


def suggest_card(result: SuggestResult, taxonomy: Taxonomy, lang: Lang) -> Card:
    """The dry-run answer to `suggest <text>`: each tag with its evidence; nothing to click."""
    body: list[Element] = [rich([run(say("suggest_title", lang, text=plain(result.text, 80)), weight="Bolder")])]
    if not result.suggestions:
        body.append(text(say("suggest_none", lang), isSubtle=True))
    for s in result.suggestions:
        dimension = taxonomy.dimension(s.dimension)
        name = dimension.name if dimension else s.dimension
        mode = say("suggest_apply" if s.action == "apply" else "suggest_ask", lang)
        detail = f"{plain_evidence(s.matched, lang, s.source == 'learned')} · {mode}"
        color, icon = _color(taxonomy, s.dimension, s.tag), tag_icon(taxonomy, s.dimension, s.tag)
        body.append(rich(tag_head(s.tag, color, name, lang, icon=icon), separator=True))
        body.append(rich([run(detail, isSubtle=True, size="Small")], spacing="None"))
    return card(body)


def alert_view_from_payload(message: OutboxMessage) -> AlertView:
    """The card view of a queued alert; the outbox id is the alert id the card actions carry."""
    return _notice_view(message.id, AlertNotice.from_payload(message.payload))


def alert_view(
    status: AlertStatus, names: Mapping[str, str] | None = None, page: DigestPage | None = None
) -> AlertView:
    """The alert card view after an action: acknowledged (by whom, when) or snoozed (until when).

    With `names`, the acknowledging user id reads as their display name; without, it shows as stored.
    With `page`, it is that page of a digest opened in full.
    """
    by = status.acknowledged_by
    owner = status.notice.owner_name or status.notice.owner
    if names is not None:
        by = names.get(by, by) if by else None
        owner = names.get(status.notice.owner) or owner
    view = _notice_view(
        status.alert_id,
        status.notice,
        acknowledged_by=by,
        acknowledged_at=status.acknowledged_at,
        snoozed_until=status.snoozed_until,
        owner=owner,
    )
    return view if page is None else replace(view, page=page.page, pages=page.pages)


def choice_title(customer: Customer) -> str:
    """Plain text for a customer picker: the name plus company, region and CRM id (or the id), so that
    customers with the same name can be told apart."""
    extra = [v for v in (customer.company, customer.region, customer.crm_id) if v and v != customer.name]
    tail = " · ".join(v[:NAME_CHARS] for v in extra) if extra else f"#{customer.id}"
    return f"{customer.name[:NAME_CHARS]}（{tail}）"


def hit_preview(summary: CustomerSummary, lang: Lang = "zh", limit: int = 3) -> tuple[str, str]:
    """(title, subtitle) of a message-extension preview: the name, then a few visible tags (plain text)."""
    names = [t.name for g in summary.groups for t in g.tags]
    subtitle = "、".join(names[:limit]) if lang == "zh" else ", ".join(names[:limit])
    extra = [v for v in (summary.customer.company, summary.customer.region) if v and v != summary.customer.name]
    if extra:
        subtitle = " · ".join(extra) + (f" — {subtitle}" if subtitle else "")
    return summary.customer.name[:NAME_CHARS], subtitle[:120]


def with_action_data(built: Card, verb: str, extra: Mapping[str, Any]) -> Card:
    """Add `extra` to the data of every Action.Execute of `verb` anywhere in the card (returns the card)."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Action.Execute" and node.get("verb") == verb:
                node["data"] = {**node.get("data", {}), **extra}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(built)
    return built


# ---------------------------------------------------------------- pieces


def _query_tags(query: str) -> frozenset[str]:
    """name_keys of the tags a search expression names (none when it does not parse)."""
    try:
        return frozenset(name_key(n) for n in tag_names(parse_expression(query)))
    except ExpressionError:
        return frozenset()


def _change_lines(result: TagResult, lang: Lang) -> list[str]:
    """'已添加：VIP客户' per outcome, tag names verbatim (for TextRuns)."""
    by_outcome: dict[str, list[str]] = {}
    for change in result.changes:
        name = plain(change.tag, TAG_CHARS)
        if change.replaced:
            name += say("replaced", lang, names="、".join(plain(r, TAG_CHARS) for r in change.replaced))
        by_outcome.setdefault(change.outcome, []).append(name)
    sep = "、" if lang == "zh" else ", "
    return [say(outcome, lang, names=sep.join(names)) for outcome, names in by_outcome.items()]


def _tag_view(
    name: str,
    dimension_name: str,
    color: str | None,
    expires_at: datetime | None,
    dimension: Dimension | None,
    sensitive: bool,
    reason: str | None = None,
) -> TagView:
    tag = dimension.tag_like(name) if dimension is not None else None
    level = tag.level if tag else 1
    parent = tag.parent if tag else None
    icon = tag.icon if tag else None
    return TagView(name, dimension_name, color, expires_at, level, parent, sensitive, reason, icon)


def tag_icon(taxonomy: Taxonomy, dimension_key: str, tag_name: str) -> str | None:
    """The taxonomy's emoji for a tag (None: no icon, or the tag is gone)."""
    tag = _tag_def(taxonomy, dimension_key, tag_name)
    return tag.icon if tag is not None else None


def _color(taxonomy: Taxonomy, dimension_key: str, tag_name: str) -> str | None:
    tag = _tag_def(taxonomy, dimension_key, tag_name)
    return tag.color if tag is not None else None


def _tag_def(taxonomy: Taxonomy, dimension_key: str, tag_name: str) -> TagDef | None:
    """The first tag of the dimension with the same name key (None: the dimension or the tag is gone)."""
    dimension = taxonomy.dimension(dimension_key)
    if dimension is None:
        return None
    return dimension.tag_like(tag_name)


def _notice_view(
    alert_id: int,
    notice: AlertNotice,
    *,
    acknowledged_by: str | None = None,
    acknowledged_at: datetime | None = None,
    snoozed_until: datetime | None = None,
    owner: str = "",
) -> AlertView:
    """The one place an AlertNotice becomes an AlertView (fresh, or with its handling state)."""
    return AlertView(
        id=alert_id,
        title=notice.title,
        customer_id=notice.customer_id,
        customer_name=notice.customer_name,
        reasons=tuple(AlertReason(r.text, r.weight, r.customer_id) for r in notice.reasons),
        raised_at=notice.raised_at,
        acknowledged_by=acknowledged_by,
        acknowledged_at=acknowledged_at,
        snoozed_until=snoozed_until,
        owner=owner or notice.owner_name or notice.owner,
        unlisted=notice.unlisted,
    )


def _who(user_id: str | None, names: Mapping[str, str], lang: Lang) -> str | None:
    """A decider's display name; the bot's own actor id reads as 客标 / Kebiao."""
    if user_id is None:
        return None
    if user_id == AUTO_ACTOR:
        return say("bot", lang)
    return names.get(user_id, user_id)
