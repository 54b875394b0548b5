"""Search results card (paged, matched tags first) and the picker for ambiguous customer names."""

from __future__ import annotations

import math
from datetime import datetime

from cards.adaptive import (
    Card,
    Element,
    action_set,
    card,
    column,
    columns,
    execute,
    fit,
    rich,
    run,
    text,
)
from cards.customer import tag_runs, visible_dimensions
from cards.labels import BOLD, Lang, aside, label, label_runs
from cards.text import literal, plain
from cards.views import ChoiceView, CustomerHit, DimensionView, SearchResultsView, TagView
from core import verbs
from core.types import Customer

NAME_CHARS = 120  # names wrap on cards: long ones are shown whole
QUERY_CHARS = 40
TAGS_PER_HIT = 3  # tag lines per hit, unless the search named more of its tags
MATCHED_LINES = 8  # at most this many lines even when the search named more
MAX_HITS = 25
MAX_CHOICES = 10


def build_search_results_card(view: SearchResultsView, now: datetime, lang: Lang = "zh") -> Card:
    """One page of hits with a Show button each, the page number and Previous / Next paging."""

    def render(cap: int) -> Card:
        shown = view.hits[:cap]
        body: list[Element] = [*search_heading(view, lang)]
        if not view.hits:
            body.append(text(label("search_empty", lang), isSubtle=True))
        body.extend(_hit(hit, view.viewer_sees_sensitive, now, lang) for hit in shown)
        before = (max(view.page, 1) - 1) * view.page_size
        rest = view.total - before - len(shown)
        if rest > 0:
            body.append(text(label("more", lang, n=at_least(rest, view)), isSubtle=True))
        return card(body, _paging(view, before, lang))

    return fit(render, MAX_HITS)


def search_heading(view: SearchResultsView, lang: Lang) -> list[Element]:
    """'“VIP客户”的搜索结果（共 23 个）' with the query verbatim, then '第 2/3 页' when there are pages; past the
    count's cap '共 1000+ 个' and '第 1/100+ 页'."""
    query = run(plain(view.query, QUERY_CHARS), weight="Bolder")
    title = rich(label_runs("search_title", lang, "query", query, BOLD, total=at_least(view.total, view)))
    pages = max(1, math.ceil(view.total / max(1, view.page_size)))
    if pages <= 1 and not view.total_is_lower_bound:
        return [title]
    shown = at_least(pages, view)
    return [title, text(label("page", lang, page=view.page, pages=shown), isSubtle=True, spacing="None")]


def at_least(n: int, view: SearchResultsView) -> str:
    """`n`, or 'n+' when the search stopped counting at its cap."""
    return f"{n}+" if view.total_is_lower_bound else str(n)


def _paging(view: SearchResultsView, before: int, lang: Lang) -> list[Element]:
    actions = []
    if view.page > 1:
        data = {"query": view.query, "page": view.page - 1}
        actions.append(execute(label("previous", lang), verbs.SEARCH_PAGE, data))
    if before + len(view.hits) < view.total or (view.total_is_lower_bound and len(view.hits) == view.page_size):
        actions.append(execute(label("next", lang), verbs.SEARCH_PAGE, {"query": view.query, "page": view.page + 1}))
    return actions


def customer_line(customer: Customer, lang: Lang) -> str:
    """'ABC公司（上海 · 华东）': the name plus company and region, escaped (for Markdown hosts)."""
    extra = [literal(v, NAME_CHARS) for v in (customer.company, customer.region) if v and v != customer.name]
    name = literal(customer.name, NAME_CHARS)
    return name + aside(" · ".join(extra), lang) if extra else name


def customer_details(customer: Customer, lang: Lang, with_crm: bool = False) -> str:
    """'ABC集团 · 华东 · CRM SF_0012-A' verbatim; the company only when the name does not already say it."""
    company = "" if customer.company == customer.name else customer.company
    if company and not with_crm and company in customer.name:
        company = ""
    parts = [company, customer.region]
    if with_crm and customer.crm_id:
        parts.append(f"{label('crm_id', lang)} {customer.crm_id}")
    return " · ".join(plain(p, NAME_CHARS) for p in parts if p)


def ordered_tags(hit: CustomerHit, sees_sensitive: bool) -> list[TagView]:
    """The hit's visible tags, those the search named first."""
    dims = visible_dimensions((DimensionView(name="", tags=hit.tags),), sees_sensitive)
    tags = list(dims[0].tags) if dims else []
    return sorted(tags, key=lambda t: t.name not in hit.matched)


def _hit(hit: CustomerHit, sees_sensitive: bool, now: datetime, lang: Lang) -> Element:
    info: list[Element] = [rich([run(plain(hit.customer.name, NAME_CHARS), weight="Bolder")])]
    details = customer_details(hit.customer, lang)
    if details:
        info.append(rich([run(details, isSubtle=True, size="Small")], spacing="None"))
    info.extend(_tag_lines(hit, sees_sensitive, now, lang))
    show = execute(label("show", lang), verbs.CUSTOMER_SHOW, {"customer_id": hit.customer.id})
    return columns(column(info), column([action_set([show])], width="auto"), separator=True)


def _tag_lines(hit: CustomerHit, sees_sensitive: bool, now: datetime, lang: Lang) -> list[Element]:
    """The hit's tags one a line: every tag the search named (bold, highlighted), then others up to
    TAGS_PER_HIT lines, then '还有 N 个'."""
    tags = ordered_tags(hit, sees_sensitive)
    named = sum(1 for t in tags if t.name in hit.matched)
    shown = tags[: min(max(named, TAGS_PER_HIT), MATCHED_LINES)]
    lines: list[Element] = []
    for tag in shown:
        parts = tag_runs(tag, now, lang)
        if tag.name in hit.matched:
            parts = [{**p, "weight": "Bolder", "highlight": True} if i == 1 else p for i, p in enumerate(parts)]
        lines.append(rich(parts, spacing="Small" if not lines else "None"))
    if len(tags) > len(shown):
        lines.append(text(label("more", lang, n=len(tags) - len(shown)), isSubtle=True, spacing="None"))
    return lines


def build_choice_card(view: ChoiceView, lang: Lang = "zh") -> Card:
    """One row per candidate, shown in full (name, company, region, CRM id), each with its own button."""
    query = run(plain(view.query, QUERY_CHARS), weight="Bolder")

    def render(cap: int) -> Card:
        shown = view.candidates[:cap]
        body: list[Element] = [rich(label_runs("choose_title", lang, "query", query, BOLD))]
        body.extend(_candidate(c, view, lang) for c in shown)
        if len(view.candidates) > len(shown):
            body.append(text(label("more", lang, n=len(view.candidates) - len(shown)), isSubtle=True))
            body.append(text(label("refine", lang), isSubtle=True, size="Small"))
        return card(body)

    return fit(render, MAX_CHOICES)


def _candidate(customer: Customer, view: ChoiceView, lang: Lang) -> Element:
    info: list[Element] = [rich([run(plain(customer.name, NAME_CHARS), weight="Bolder")])]
    details = customer_details(customer, lang, with_crm=True) or f"#{customer.id}"
    info.append(rich([run(details, isSubtle=True)], spacing="None"))
    choose = execute(label("choose", lang), verbs.CUSTOMER_CHOOSE, {**view.context, "customer_id": customer.id})
    return columns(column(info), column([action_set([choose])], width="auto"), separator=True)
