"""Customer summary card: facts, then each dimension's first-level tags with sub-tags behind a toggle."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from cards.adaptive import Card, Element, card, container, fact_rows, fit, rich, run, text, toggle_pair
from cards.icons import marker
from cards.labels import Lang, aside, label
from cards.text import literal, plain
from cards.views import CustomerSummaryView, DimensionView, TagView
from cards.when import days_until, fmt_day, near_expiry_note

NAME_CHARS = 120  # names wrap on cards: long ones are shown whole
TAG_CHARS = 40
FIELD_CHARS = 80
TAGS_PER_DIMENSION = 30
REASON_CHARS = 160
LOCK = "🔒"


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
    """'🔵 询价客户（3 天后到期）' for Markdown hosts (name escaped); the expiry only when it is near."""
    name = literal(tag.name, TAG_CHARS)
    if with_parent and tag.parent:
        name = f"{literal(tag.parent, TAG_CHARS)} › {name}"
    out = f"{marker(tag.color, tag.icon)} {name}"
    note = near_expiry_note(tag.expires_at, now, lang)
    return out + aside(note, lang) if note else out


def tag_runs(tag: TagView, now: datetime, lang: Lang, with_parent: bool = False) -> list[Element]:
    """The tag as verbatim runs: dot, optional 'parent › ', name, a near expiry in warning colour."""
    runs = [run(f"{marker(tag.color, tag.icon)} ")]
    if with_parent and tag.parent:
        runs.append(run(f"{plain(tag.parent, TAG_CHARS)} › ", isSubtle=True))
    runs.append(run(plain(tag.name, TAG_CHARS)))
    if tag.sensitive:
        runs.append(run(f" {LOCK}"))
    note = near_expiry_note(tag.expires_at, now, lang)
    if note:
        runs.append(run(aside(note, lang), color="Warning"))
    return runs


def build_customer_summary_card(
    view: CustomerSummaryView, now: datetime, lang: Lang = "zh", banner: Sequence[Element] = ()
) -> Card:
    """The customer's card: `banner` (a change just made) first, then the name, facts and tags."""
    dims = visible_dimensions(view.dimensions, view.viewer_sees_sensitive)

    def render(cap: int) -> Card:
        body: list[Element] = [*banner, *customer_header(view, now, lang)]
        body.extend(dimension_section(dim, index, cap, now, lang) for index, dim in enumerate(dims))
        if not dims:
            body.append(text(label("no_tags", lang), isSubtle=True))
        if view.hidden_note and not view.viewer_sees_sensitive:
            body.append(rich([run(plain(view.hidden_note, 200), isSubtle=True, size="Small")]))
        return card(body)

    return fit(render, TAGS_PER_DIMENSION)


def customer_header(view: CustomerSummaryView, now: datetime, lang: Lang) -> list[Element]:
    """The name in large bold, then label/value rows shown verbatim (ids and e-mails copy as they are)."""
    name = rich([run(plain(view.customer.name, NAME_CHARS), size="Large", weight="Bolder")])
    pairs = header_facts(view, now, lang)
    return [name, fact_rows(pairs)] if pairs else [name]


def header_facts(view: CustomerSummaryView, now: datetime, lang: Lang) -> list[tuple[str, Element | str]]:
    """(label, value) rows for company, region, owner, CRM id and contract end; empty ones left out."""
    customer = view.customer
    owner = view.owner_name or customer.owner
    pairs: list[tuple[str, Element | str]] = [
        (label(key, lang), plain(value, FIELD_CHARS))
        for key, value in (
            ("company", customer.company),
            ("region", customer.region),
            ("owner", owner),
            ("crm_id", customer.crm_id),
        )
        if value
    ]
    if customer.contract_end is not None:
        days = days_until(customer.contract_end, now)
        note = label("expired", lang) if days < 0 else label("expires_in", lang, n=days)
        color = "Attention" if days < 0 else "Warning" if days <= 30 else "Default"
        value = rich([run(fmt_day(customer.contract_end)), run(aside(note, lang), color=color)])
        pairs.append((label("contract_end", lang), value))
    return pairs


def dimension_section(dim: DimensionView, index: int, cap: int, now: datetime, lang: Lang) -> Element:
    """One dimension: its heading, first-level tags one a line, sub-tags behind a toggle, rule reasons."""
    top = [t for t in dim.tags if t.level <= 1]
    deep = [t for t in dim.tags if t.level > 1]
    items = [dimension_heading(dim, lang), *tag_lines(top, cap, now, lang)]
    if deep:
        items.extend(deeper_toggle(deep, f"deeper-{index}", cap, now, lang))
    items.extend(reason_lines(dim.tags[:cap]))
    return container(items, spacing="Medium", separator=True)


def dimension_heading(dim: DimensionView, lang: Lang) -> Element:
    """The dimension's name in bold; managers-only dimensions say so."""
    runs = [run(plain(dim.name, TAG_CHARS), weight="Bolder")]
    if dim.sensitive:
        runs.append(run(f"　{LOCK} {label('managers_only', lang)}", color="Attention", size="Small"))
    return rich(runs)


def tag_lines(tags: Sequence[TagView], cap: int, now: datetime, lang: Lang, parent: bool = False) -> list[Element]:
    """One line per tag, cut after `cap` with 'and N more'."""
    lines = [rich(tag_runs(t, now, lang, with_parent=parent), spacing="Small") for t in tags[:cap]]
    if len(tags) > cap:
        lines.append(text(label("more", lang, n=len(tags) - cap), isSubtle=True, spacing="Small"))
    return lines


def deeper_toggle(deep: Sequence[TagView], target: str, cap: int, now: datetime, lang: Lang) -> list[Element]:
    """Sub-tags in a hidden container, with 'Show sub-tags (n)' / 'Hide sub-tags' that read right."""
    hidden = container(tag_lines(deep, cap, now, lang, parent=True), id=target, isVisible=False)
    return [hidden, *toggle_pair(target, label("show_deeper", lang, n=len(deep)), label("hide_deeper", lang))]


def reason_lines(tags: Iterable[TagView]) -> list[Element]:
    """Why a rule applied a tag: the rule and the facts that satisfied it, small and grey."""
    return [
        rich(
            [run(f"{plain(t.name, TAG_CHARS)} · {plain(t.reason, REASON_CHARS)}", isSubtle=True, size="Small")],
            spacing="None",
        )
        for t in tags
        if t.reason
    ]
