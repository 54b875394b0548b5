"""Search results card (paged, 'and N more') and the choice card for ambiguous customer names."""

from __future__ import annotations

from datetime import datetime

from cards.adaptive import Card, Element, action_set, card, column, columns, execute, fit, text
from cards.customer import tag_label, visible_dimensions
from cards.labels import Lang, aside, label
from cards.text import literal
from cards.views import ChoiceView, CustomerHit, DimensionView, SearchResultsView
from core import verbs
from core.types import Customer

NAME_CHARS = 60
QUERY_CHARS = 40
TAGS_PER_HIT = 5
MAX_HITS = 25
MAX_CHOICES = 10
BUTTON_CHARS = 40


def build_search_results_card(view: SearchResultsView, now: datetime, lang: Lang = "zh") -> Card:
    """One page of hits with a Show button each, 'and N more' and Previous / Next paging."""
    query = literal(view.query, QUERY_CHARS)

    def render(cap: int) -> Card:
        shown = view.hits[:cap]
        body: list[Element] = [
            text(label("search_title", lang, query=query, total=view.total), weight="Bolder")
        ]
        if not view.hits:
            body.append(text(label("search_empty", lang), isSubtle=True))
        body.extend(_hit(hit, view.viewer_sees_sensitive, now, lang) for hit in shown)
        before = (max(view.page, 1) - 1) * view.page_size
        rest = view.total - before - len(shown)
        if rest > 0:
            body.append(text(label("more", lang, n=rest), isSubtle=True))
        actions = []
        if view.page > 1:
            actions.append(
                execute(
                    label("previous", lang), verbs.SEARCH_PAGE, {"query": view.query, "page": view.page - 1}
                )
            )
        if before + len(view.hits) < view.total:
            actions.append(
                execute(label("next", lang), verbs.SEARCH_PAGE, {"query": view.query, "page": view.page + 1})
            )
        return card(body, actions)

    return fit(render, MAX_HITS)


def customer_line(customer: Customer, lang: Lang) -> str:
    """'ABC公司（上海 · 华东）': the name plus company and region, escaped."""
    extra = [literal(v, NAME_CHARS) for v in (customer.company, customer.region) if v and v != customer.name]
    name = literal(customer.name, NAME_CHARS)
    return name + aside(" · ".join(extra), lang) if extra else name


def _hit(hit: CustomerHit, sees_sensitive: bool, now: datetime, lang: Lang) -> Element:
    dims = visible_dimensions((DimensionView(name="", tags=hit.tags),), sees_sensitive)
    tags = dims[0].tags if dims else ()
    info: list[Element] = [text(customer_line(hit.customer, lang), weight="Bolder")]
    if tags:
        line = "　".join(tag_label(t, now, lang) for t in tags[:TAGS_PER_HIT])
        if len(tags) > TAGS_PER_HIT:
            line += "　" + label("more", lang, n=len(tags) - TAGS_PER_HIT)
        info.append(text(line, size="Small", spacing="None"))
    show = execute(label("show", lang), verbs.CUSTOMER_SHOW, {"customer_id": hit.customer.id})
    return columns(column(info), column([action_set([show])], width="auto"), separator=True)


def build_choice_card(view: ChoiceView, lang: Lang = "zh") -> Card:
    """One button per candidate customer; each button's data carries the customer id and `view.context`."""
    query = literal(view.query, QUERY_CHARS)

    def render(cap: int) -> Card:
        shown = view.candidates[:cap]
        body: list[Element] = [text(label("choose_title", lang, query=query), weight="Bolder")]
        buttons = [
            execute(
                literal(customer_line(c, lang), BUTTON_CHARS),
                verbs.CUSTOMER_CHOOSE,
                {**view.context, "customer_id": c.id},
            )
            for c in shown
        ]
        body.append({"type": "ActionSet", "actions": buttons})
        if len(view.candidates) > len(shown):
            body.append(text(label("more", lang, n=len(view.candidates) - len(shown)), isSubtle=True))
            body.append(text(label("refine", lang), isSubtle=True, size="Small"))
        return card(body)

    return fit(render, MAX_CHOICES)
