"""Customer summary card: tags grouped by dimension, sub-tags behind a toggle, sensitive tags for managers."""

from __future__ import annotations

from datetime import datetime

from cards.adaptive import Card, Element, action_set, card, container, facts, fit, text, toggle
from cards.icons import marker
from cards.labels import Lang, aside, label
from cards.text import literal
from cards.views import CustomerSummaryView, DimensionView, TagView
from cards.when import days_until, expiry_note, fmt_date
from core.types import Customer

NAME_CHARS = 60
TAG_CHARS = 40
FIELD_CHARS = 80
TAGS_PER_DIMENSION = 30
REASON_CHARS = 160


def visible_dimensions(dimensions: tuple[DimensionView, ...], sees_sensitive: bool) -> list[DimensionView]:
    """The dimensions and tags this viewer may see; hidden ones leave no trace (not even a count)."""
    if sees_sensitive:
        return [d for d in dimensions if d.tags]
    out = []
    for dim in dimensions:
        if dim.sensitive:
            continue
        tags = tuple(t for t in dim.tags if not t.sensitive)
        if tags:
            out.append(DimensionView(name=dim.name, tags=tags, sensitive=False))
    return out


def tag_label(tag: TagView, now: datetime, lang: Lang, with_parent: bool = False) -> str:
    """'🔵 询价客户（3 天后到期）' with the name escaped; sub-tags optionally as 'parent › name'."""
    name = literal(tag.name, TAG_CHARS)
    if with_parent and tag.parent:
        name = f"{literal(tag.parent, TAG_CHARS)} › {name}"
    out = f"{marker(tag.color, tag.icon)} {name}"
    if tag.expires_at is not None:
        out += aside(expiry_note(tag.expires_at, now, lang), lang)
    return out


def build_customer_summary_card(view: CustomerSummaryView, now: datetime, lang: Lang = "zh") -> Card:
    """The customer's card; each dimension shows first-level tags, deeper levels behind a toggle."""
    dims = visible_dimensions(view.dimensions, view.viewer_sees_sensitive)

    def render(cap: int) -> Card:
        body: list[Element] = [*customer_header(view.customer, now, lang)]
        for index, dim in enumerate(dims):
            body.append(_dimension(dim, index, cap, now, lang))
        if not dims:
            body.append(text(label("no_tags", lang), isSubtle=True))
        if view.hidden_note and not view.viewer_sees_sensitive:
            body.append(text(literal(view.hidden_note, 200), isSubtle=True, size="Small"))
        return card(body)

    return fit(render, TAGS_PER_DIMENSION)


def customer_header(customer: Customer, now: datetime, lang: Lang) -> list[Element]:
    """Name in bold plus the customer's facts (escaped: FactSet values render Markdown in some hosts)."""
    pairs: list[tuple[str, str]] = []
    for key, value in (
        ("company", customer.company),
        ("region", customer.region),
        ("owner", customer.owner),
        ("crm_id", customer.crm_id),
    ):
        if value:
            pairs.append((label(key, lang), literal(value, FIELD_CHARS)))
    if customer.contract_end is not None:
        days = days_until(customer.contract_end, now)
        when = fmt_date(customer.contract_end)
        note = label("expired", lang) if days < 0 else label("expires_in", lang, n=days)
        pairs.append((label("contract_end", lang), when + aside(note, lang)))
    out: list[Element] = [text(literal(customer.name, NAME_CHARS), size="Large", weight="Bolder")]
    if pairs:
        out.append(facts(pairs))
    return out


def _dimension(dim: DimensionView, index: int, cap: int, now: datetime, lang: Lang) -> Element:
    top = [t for t in dim.tags if t.level <= 1]
    deep = [t for t in dim.tags if t.level > 1]
    items: list[Element] = [text(literal(dim.name, TAG_CHARS), weight="Bolder", spacing="Medium")]
    if top:
        items.append(text(_joined([tag_label(t, now, lang) for t in top], cap, lang)))
    if deep:
        target = f"deeper-{index}"
        shown = deep[:cap]
        lines = [text(tag_label(t, now, lang, with_parent=True), spacing="Small") for t in shown]
        if len(deep) > len(shown):
            lines.append(text(label("more", lang, n=len(deep) - len(shown)), isSubtle=True, spacing="Small"))
        items.append(container(lines, id=target, isVisible=False))
        items.append(action_set([toggle(label("show_deeper", lang, n=len(deep)), [target])]))
    for tag in dim.tags[:cap]:
        if tag.reason:  # a rule's change says why: the rule and the facts that satisfied it
            line = f"{literal(tag.name, TAG_CHARS)} · {literal(tag.reason, REASON_CHARS)}"
            items.append(text(line, isSubtle=True, size="Small", spacing="None"))
    return container(items)


def _joined(labels: list[str], cap: int, lang: Lang) -> str:
    """Tags on one line separated by wide gaps, cut after `cap` with 'and N more'."""
    shown = labels[:cap]
    line = "　".join(shown)
    if len(labels) > cap:
        line += "　" + label("more", lang, n=len(labels) - cap)
    return line
