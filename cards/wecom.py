"""WeCom renderers of the same views: markdown text and `template_card` (button_interaction) dicts."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cards.alert import level_word
from cards.customer import tag_label, visible_dimensions
from cards.icons import marker
from cards.labels import Lang, aside, label
from cards.search import at_least, customer_line
from cards.suggestion import evidence
from cards.text import clip, clip_bytes, literal, plain
from cards.views import (
    AlertView,
    AppliedCardView,
    ChoiceView,
    CustomerSummaryView,
    DimensionView,
    SearchResultsView,
    SuggestionCardView,
    TagView,
)
from cards.when import fmt_time
from core import verbs
from core.types import SuggestionStatus

# WeCom limits (发送应用消息 / 模板卡片): markdown content ≤ 2048 bytes; button_interaction: title ≤ 36 chars,
# desc ≤ 44, sub_title_text ≤ 160, ≤ 6 horizontal items (keyname ≤ 5, value ≤ 30), ≤ 6 buttons
# (text ≤ 10 chars, key ≤ 1024 bytes, unique), task_id ≤ 128 bytes of [0-9A-Za-z_@-].
MARKDOWN_BYTES = 2048
TITLE_CHARS = 36
DESC_CHARS = 44
SUB_TITLE_CHARS = 160
MAX_HORIZONTAL = 6
KEYNAME_CHARS = 5
VALUE_CHARS = 30
MAX_BUTTONS = 6
BUTTON_TEXT_CHARS = 10
KEY_BYTES = 1024
TASK_ID = re.compile(r"^[0-9A-Za-z_@-]{1,128}$")
_KEY = re.compile(r"^([a-z_]+\.[a-z_]+):(\d+(?:,\d+)*)(?:~([A-Za-z0-9_-]+))?$")
_EXTRA_NAME = re.compile(r"^[a-z_]{1,20}$")
MAX_EXTRA = 8
LINES_PER_BLOCK = 20


def button_key(verb: str, ids: Iterable[int], extra: Mapping[str, str] | None = None) -> str:
    """'suggestion.accept:12' / 'suggestion.accept_all:12,13': the verb and the ids it acts on.

    `extra` (short text values, e.g. the command a customer choice runs) rides along base64url-encoded
    after '~'; ValueError when the key would pass WeCom's 1024 bytes.
    """
    if verb not in verbs.ALL_VERBS:
        raise ValueError(f"unknown card verb {verb!r}; add it to core/verbs.py")
    numbers = [str(int(i)) for i in ids]
    if not numbers:
        raise ValueError(f"button key for {verb} needs at least one id")
    key = f"{verb}:{','.join(numbers)}"
    kept = {k: v for k, v in (extra or {}).items() if v}
    if kept:
        if len(kept) > MAX_EXTRA or not all(_EXTRA_NAME.match(k) for k in kept):
            raise ValueError(f"button key extras must be at most {MAX_EXTRA} names of a-z and _, got {list(kept)}")
        packed = json.dumps(kept, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        key += "~" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    if len(key.encode()) > KEY_BYTES:
        raise ValueError(f"button key for {verb} is {len(key.encode())} bytes; WeCom allows {KEY_BYTES}")
    return key


def parse_button_key(key: str) -> tuple[str, tuple[int, ...]]:
    """The (verb, ids) a button key carries; ValueError for anything this module did not write."""
    verb, ids, _ = parse_button(key)
    return verb, ids


def parse_button(key: str) -> tuple[str, tuple[int, ...], dict[str, str]]:
    """The (verb, ids, extras) a button key carries; ValueError for anything this module did not write."""
    match = _KEY.match(key) if len(key.encode()) <= KEY_BYTES else None
    if match is None or match.group(1) not in verbs.ALL_VERBS:
        raise ValueError(f"not a Kebiao button key: {key[:80]!r} (expected 'verb:id[,id…]')")
    ids = tuple(int(i) for i in match.group(2).split(","))
    return match.group(1), ids, _extras(match.group(3))


def _extras(packed: str | None) -> dict[str, str]:
    """The text values a key carries after '~' (none: {}); ValueError unless it is what button_key wrote."""
    if not packed:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("button key extras are not base64url JSON") from None
    if (
        not isinstance(data, dict)
        or len(data) > MAX_EXTRA
        or not all(isinstance(k, str) and _EXTRA_NAME.match(k) and isinstance(v, str) for k, v in data.items())
    ):
        raise ValueError(f"button key extras must be at most {MAX_EXTRA} text values named with a-z and _")
    return data


# ---------------------------------------------------------------- markdown


def markdown(lines: Sequence[str]) -> str:
    """Join lines and cut to WeCom's 2048-byte markdown limit."""
    return clip_bytes("\n".join(lines), MARKDOWN_BYTES)


def customer_summary_markdown(view: CustomerSummaryView, now: datetime, lang: Lang = "zh") -> str:
    """The customer's tags by dimension; sub-tags listed as 'parent › child'."""
    lines = [f"**{literal(view.customer.name, 60)}**"]
    for part in (view.customer.company, view.customer.region):
        if part:
            lines.append(f'<font color="comment">{literal(part, 80)}</font>')
    dims = visible_dimensions(view.dimensions, view.viewer_sees_sensitive)
    for dim in dims:
        lines.append(f"> **{literal(dim.name, 40)}**")
        tags = [tag_label(t, now, lang, with_parent=True) for t in dim.tags]
        lines.append("　".join(tags[:LINES_PER_BLOCK]) + _more(len(tags) - LINES_PER_BLOCK, lang))
    if not dims:
        lines.append(label("no_tags", lang))
    if view.hidden_note and not view.viewer_sees_sensitive:
        lines.append(f'<font color="comment">{literal(view.hidden_note, 200)}</font>')
    return markdown(lines)


def suggestion_markdown(view: SuggestionCardView, now: datetime, lang: Lang = "zh") -> str:
    """Suggestions with evidence and, once decided, who decided what and when."""
    lines = [f"**{label('suggested_for', lang, name=literal(view.customer_name, 60))}**"]
    for item in view.items[:LINES_PER_BLOCK]:
        mark = marker(item.color, item.icon)
        lines.append(f"{mark} **{literal(item.tag, 40)}**{aside(literal(item.dimension_name, 40), lang)}")
        lines.append(f'<font color="comment">{evidence(item.matched, lang, item.learned)}</font>')
        if item.status is SuggestionStatus.ACCEPTED or item.status is SuggestionStatus.REJECTED:
            key = "accepted_by" if item.status is SuggestionStatus.ACCEPTED else "rejected_by"
            when = fmt_time(item.decided_at, now) if item.decided_at else "?"
            lines.append(label(key, lang, who=literal(item.decided_by or "?", 40), when=when))
        elif item.status is SuggestionStatus.EXPIRED:
            lines.append(label("suggestion_expired", lang))
    lines.append(_more(len(view.items) - LINES_PER_BLOCK, lang).strip())
    return markdown([line for line in lines if line])


def applied_markdown(view: AppliedCardView, now: datetime, lang: Lang = "zh") -> str:
    """Auto-applied tags; undone ones say who undid them."""
    lines = [label("applied_for", lang, name=literal(view.customer_name, 60))]
    for item in view.items[:LINES_PER_BLOCK]:
        mark = marker(item.color, item.icon)
        line = f"{mark} **{literal(item.tag, 40)}**{aside(literal(item.dimension_name, 40), lang)}"
        if item.undone_by is not None or item.undone_at is not None:
            when = fmt_time(item.undone_at, now) if item.undone_at else "?"
            line += " " + label("undone_by", lang, who=literal(item.undone_by or "?", 40), when=when)
        lines.append(line)
    lines.append(_more(len(view.items) - LINES_PER_BLOCK, lang).strip())
    return markdown([line for line in lines if line])


def search_markdown(view: SearchResultsView, now: datetime, lang: Lang = "zh") -> str:
    """One page of search results with 'and N more'."""
    total = at_least(view.total, view)
    lines = [f"**{label('search_title', lang, query=literal(view.query, 40), total=total)}**"]
    if not view.hits:
        lines.append(label("search_empty", lang))
    for hit in view.hits[:LINES_PER_BLOCK]:
        dims = visible_dimensions((_as_dimension(hit.tags),), view.viewer_sees_sensitive)
        tags = "　".join(tag_label(t, now, lang) for t in (dims[0].tags[:5] if dims else ()))
        lines.append(f"- {customer_line(hit.customer, lang)}" + (f"　{tags}" if tags else ""))
    shown = min(len(view.hits), LINES_PER_BLOCK)
    rest = view.total - (max(view.page, 1) - 1) * view.page_size - shown
    lines.append(("　" + label("more", lang, n=at_least(rest, view)) if rest > 0 else "").strip())
    return markdown([line for line in lines if line])


def alert_markdown(view: AlertView, now: datetime, lang: Lang = "zh") -> str:
    """The alert in one message: whole reason rows as far as they fit, then how many are not listed and,
    for a digest, how to see them (a row is never cut)."""
    head, rows, tail = _alert_lines(view, now, lang)
    shown: list[str] = []
    for row in rows:
        left = len(rows) - len(shown) - 1 + view.unlisted
        closing = [label("not_shown", lang, n=left)] if left > 0 else []
        if _bytes([*head, *shown, row, *closing, *tail]) > MARKDOWN_BYTES:
            break
        shown.append(row)
    hidden = len(rows) - len(shown) + view.unlisted
    closing = [label("not_shown", lang, n=hidden)] if hidden > 0 else []
    if hidden > 0 and _is_digest(view):
        closing.append(f'<font color="comment">{label("see_all_hint", lang)}</font>')
    return markdown([*head, *shown, *closing, *tail])


def alert_markdown_parts(view: AlertView, now: datetime, lang: Lang = "zh") -> list[str]:
    """The alert (a page of a digest opened in full) in as many messages as its rows need, none cut."""
    head, rows, tail = _alert_lines(view, now, lang)
    if view.unlisted > 0:
        tail = [label("unlisted", lang, n=view.unlisted), *tail]
    if view.pages > 1 and view.page < view.pages:
        tail = [*tail, f'<font color="comment">{label("next_page_hint", lang, n=view.page + 1)}</font>']
    again = [f'<font color="warning">**{literal(view.title, 80)}**</font>{label("continued", lang)}']
    return packed(head, rows, tail, again)


def _alert_lines(view: AlertView, now: datetime, lang: Lang) -> tuple[list[str], list[str], list[str]]:
    """(heading lines, one line per reason by weight, handling-state lines) of an alert's markdown."""
    head = [
        f'<font color="warning">**{literal(view.title, 80)}**</font>',
        f"**{literal(view.customer_name, 60)}**",
        f'<font color="comment">{label("alert_raised", lang, when=fmt_time(view.raised_at, now))}</font>',
    ]
    if view.pages > 1:
        head.insert(1, label("page", lang, page=view.page, pages=view.pages))
    if view.owner:
        head.append(f'<font color="comment">{label("owner_is", lang, who=literal(view.owner, 40))}</font>')
    reasons = sorted(view.reasons, key=lambda r: r.weight, reverse=True)
    rows = [f"> {level_word(r.weight, lang)} {literal(r.text, 160)}" for r in reasons]
    tail: list[str] = []
    if view.acknowledged_by is not None or view.acknowledged_at is not None:
        when = fmt_time(view.acknowledged_at, now) if view.acknowledged_at else "?"
        tail.append(label("acked_by", lang, who=literal(view.acknowledged_by or "?", 40), when=when))
    return head, rows, tail


def packed(head: Sequence[str], rows: Sequence[str], tail: Sequence[str], again: Sequence[str]) -> list[str]:
    """Whole rows in as many markdown messages as needed, each within MARKDOWN_BYTES: `head` opens the first,
    `again` each later one and `tail` closes the last; a row is never split (one too long alone is clipped)."""
    messages: list[str] = []
    current = list(head)
    fresh = True  # `current` holds no row yet
    for row in rows:
        if not fresh and _bytes([*current, row]) > MARKDOWN_BYTES:
            messages.append("\n".join(current))
            current = list(again)
        current.append(clip_bytes(row, MARKDOWN_BYTES - _bytes(current) - 1))
        fresh = False
    if _bytes([*current, *tail]) > MARKDOWN_BYTES and not fresh:
        messages.append("\n".join(current))
        current = list(again)
    messages.append(markdown([*current, *tail]))
    return messages


def _bytes(lines: Sequence[str]) -> int:
    return len("\n".join(lines).encode())


def _is_digest(view: AlertView) -> bool:
    """An expiry digest: its rows are about several customers, each row naming its own."""
    return any(r.customer_id is not None for r in view.reasons)


def copyable(text: str, limit: int) -> str:
    """An identifier (name, CRM id) as an inline code span, so it shows and copies as typed (`_ ( ) & #` kept).

    Only what would end the span or open a WeCom tag is swapped for a look-alike: the backtick, `<` `>`
    (<font>, <@mention>) and an `&` that starts an entity; line breaks fold to spaces.
    """
    flat = plain(text, limit).translate(_CODE_UNSAFE)
    return f"`{_ENTITY.sub('＆', flat)}`" if flat else ""


_CODE_UNSAFE = str.maketrans({"`": "｀", "<": "＜", ">": "＞"})
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")


def choice_markdown(view: ChoiceView, with_card: bool, lang: Lang = "zh") -> list[str]:
    """Every candidate in full and numbered (name, company · region · CRM id, each copyable), then how to
    choose: the buttons of the card that follows, or the command to send again with the CRM id."""
    head = [f"**{label('choose_title', lang, query=literal(view.query, 40))}**"]
    rows = []
    for n, c in enumerate(view.candidates, 1):
        parts = (("company", c.company), ("region", c.region), ("crm_id", c.crm_id))
        details = " · ".join(f"{label(k, lang)} {copyable(v, 80)}" for k, v in parts if v) or f"#{c.id}"
        rows.append(f"**{n}.** {copyable(c.name, 120)}\n　{details}")
    if with_card:
        tail = [f'<font color="comment">{label("choose_card_hint", lang)}</font>']
    else:
        example = resend_example(view)
        if len(example) <= RESEND_CHARS:
            tail = [label("choose_resend_hint", lang), copyable(example, RESEND_CHARS)]
        else:  # a cut command would be wrong to copy: the verb and the id, and the tags as they were
            short = copyable(resend_example(view, with_tags=False), RESEND_CHARS)
            tail = [label("choose_resend_hint", lang), f"{short} {label('resend_rest', lang)}"]
    return packed(head, rows, tail, [f"**{literal(view.query, 40)}**{label('continued', lang)}"])


RESEND_CHARS = 300


def resend_example(view: ChoiceView, with_tags: bool = True) -> str:
    """The command the person sent, with the first candidate named by CRM id (else full name)."""
    first = next((c for c in view.candidates if c.crm_id), view.candidates[0] if view.candidates else None)
    who = (first.crm_id or first.name) if first is not None else view.query
    add = [f"+{n}" for n in str(view.context.get("add") or "").split("\n") if n]
    remove = [f"-{n}" for n in str(view.context.get("remove") or "").split("\n") if n]
    return " ".join([str(view.context.get("verb") or "tags"), who, *((*add, *remove) if with_tags else ())])


def help_markdown(entries: Sequence[tuple[str, str, str]], lang: Lang = "zh") -> str:
    """Command usage lines with their description in `lang`."""
    lines = [f"**{label('help_title', lang)}**"]
    for usage, description_en, description_zh in entries:
        lines.append(f"`{literal(usage, 120)}` {literal(description_zh if lang == 'zh' else description_en, 200)}")
    return markdown(lines)


def error_markdown(detail: str, hint: str | None = None, lang: Lang = "zh") -> str:
    lines = [f'<font color="warning">**{label("error_title", lang)}**</font>', literal(detail, 1000)]
    if hint:
        lines.append(f'<font color="comment">{literal(hint, 500)}</font>')
    return markdown(lines)


# ---------------------------------------------------------------- template cards


def button_card(
    task_id: str,
    title: str,
    desc: str,
    rows: Sequence[tuple[str, str]],
    buttons: Sequence[tuple[str, str, int]],
    sub_title: str = "",
) -> dict[str, Any]:
    """A `template_card` of type button_interaction; every field cut to WeCom's limits.

    Template-card fields are plain text (no Markdown), so user text goes in unescaped but clipped.
    `buttons` are (text, key, style) with style 1..4.
    """
    if not TASK_ID.match(task_id):
        raise ValueError(f"WeCom task_id {task_id!r} must be 1-128 characters of 0-9 A-Z a-z _ @ -")
    if not buttons:
        raise ValueError("a button_interaction card needs at least one button")
    keys = [key for _, key, _ in buttons]
    if len(set(keys)) != len(keys):
        raise ValueError(f"WeCom button keys must be unique, got {keys}")
    out: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": clip(title, TITLE_CHARS), "desc": clip(desc, DESC_CHARS)},
        "task_id": task_id,
        "button_list": [
            {"text": clip(text, BUTTON_TEXT_CHARS), "style": style, "key": key}
            for text, key, style in buttons[:MAX_BUTTONS]
        ],
    }
    if not desc:
        del out["main_title"]["desc"]
    if sub_title:
        out["sub_title_text"] = clip(sub_title, SUB_TITLE_CHARS)
    if rows:
        out["horizontal_content_list"] = [
            {"keyname": clip(k, KEYNAME_CHARS), "value": clip(v, VALUE_CHARS)} for k, v in rows[:MAX_HORIZONTAL]
        ]
    return out


def suggestion_template_card(view: SuggestionCardView, task_id: str, lang: Lang = "zh") -> dict[str, Any] | None:
    """Pending suggestions as a button card; None once nothing is pending (send the markdown instead).

    Six buttons fit: one pending tag gets Accept / Reject; two get both pairs plus Accept all; from three on
    the first two keep their pairs and 'Accept all' covers every pending tag listed (up to six).
    """
    pending = [i for i in view.items if i.status is SuggestionStatus.PENDING]
    if not pending:
        return None
    listed = pending[:MAX_HORIZONTAL]
    rows = [(clip(i.dimension_name, KEYNAME_CHARS), f"{i.tag} {round(i.score * 100)}%") for i in listed]
    buttons: list[tuple[str, str, int]] = []
    for item in listed[:2]:
        buttons.append((f"{label('accept', lang)} {item.tag}", button_key(verbs.SUGGESTION_ACCEPT, [item.id]), 1))
        buttons.append((f"{label('reject', lang)} {item.tag}", button_key(verbs.SUGGESTION_REJECT, [item.id]), 2))
    if len(listed) > 1:
        buttons.append((label("accept_all", lang), button_key(verbs.SUGGESTION_ACCEPT_ALL, [i.id for i in listed]), 1))
    hidden = len(pending) - len(listed)
    sub = "、".join(w for i in listed for w in i.matched[:2])
    sub = label("matched", lang, words=sub) + (" " + label("more", lang, n=hidden) if hidden > 0 else "")
    return button_card(task_id, label("suggested_for", lang, name=view.customer_name), "", rows, buttons, sub)


def applied_template_card(view: AppliedCardView, task_id: str, lang: Lang = "zh") -> dict[str, Any] | None:
    """Auto-applied tags with an Undo button each (up to six); None once all are undone."""
    active = [i for i in view.items if i.undone_by is None and i.undone_at is None]
    if not active:
        return None
    listed = active[:MAX_BUTTONS]
    rows = [(i.dimension_name, i.tag) for i in listed]
    buttons = [
        (f"{label('undo', lang)} {i.tag}", button_key(verbs.ASSIGNMENT_UNDO, [i.assignment_id]), 2) for i in listed
    ]
    hidden = len(active) - len(listed)
    sub = label("more", lang, n=hidden) if hidden > 0 else ""
    return button_card(task_id, label("applied_for", lang, name=view.customer_name), "", rows, buttons, sub)


def alert_template_card(view: AlertView, now: datetime, task_id: str, lang: Lang = "zh") -> dict[str, Any]:
    """Alert with Acknowledge / Snooze 7 days / Show customer (only the last once acknowledged); a digest
    whose rows the card cannot all show in full also gets 显示全部标签."""
    reasons = sorted(view.reasons, key=lambda r: r.weight, reverse=True)
    rows = [(level_word(r.weight, lang), r.text) for r in reasons]
    buttons: list[tuple[str, str, int]] = []
    if view.acknowledged_by is None and view.acknowledged_at is None:
        buttons.append((label("ack", lang), button_key(verbs.ALERT_ACK, [view.id]), 1))
        buttons.append((label("snooze", lang), button_key(verbs.ALERT_SNOOZE, [view.id]), 2))
    buttons.append((label("show_customer", lang), button_key(verbs.CUSTOMER_SHOW, [view.customer_id]), 3))
    cut = len(rows) > MAX_HORIZONTAL or any(len(text) > VALUE_CHARS for _, text in rows)
    if _is_digest(view) and (view.unlisted > 0 or cut):
        buttons.append((label("show_all", lang), button_key(verbs.ALERT_DIGEST_ALL, [view.id]), 3))
    desc = f"{view.customer_name} · {fmt_time(view.raised_at, now)}"
    return button_card(task_id, view.title, desc, rows, buttons)


def digest_pages_card(view: AlertView, task_id: str, lang: Lang = "zh") -> dict[str, Any] | None:
    """'第 2/5 页' with 上一页 / 下一页 under a page of a digest opened in full; None when it has one page."""
    if view.pages <= 1:
        return None
    buttons = [
        (label(key, lang), button_key(verbs.ALERT_DIGEST_ALL, [view.id, page]), 2)
        for key, page in (("previous", view.page - 1), ("next", view.page + 1))
        if 1 <= page <= view.pages
    ]
    where = label("page", lang, page=view.page, pages=view.pages)
    return button_card(task_id, view.title, where, (), buttons)


def choice_template_card(view: ChoiceView, task_id: str, lang: Lang = "zh") -> dict[str, Any] | None:
    """'选择 1' … '选择 6' for the candidates numbered in the markdown sent with it; each key carries the
    customer id and the command to run for it. None when a key would not fit (send the command again)."""
    listed = view.candidates[:MAX_BUTTONS]
    rows = [(str(n), c.name) for n, c in enumerate(listed, 1)]
    context = {k: str(v) for k, v in view.context.items()}
    try:
        buttons = [
            (label("choose_n", lang, n=n), button_key(verbs.CUSTOMER_CHOOSE, [c.id], context), 1)
            for n, c in enumerate(listed, 1)
        ]
    except ValueError:
        return None
    hidden = len(view.candidates) - len(listed)
    sub = (label("more", lang, n=hidden) + " " + label("refine", lang)) if hidden > 0 else ""
    return button_card(task_id, label("choose_title", lang, query=view.query), "", rows, buttons, sub)


def _more(n: int, lang: Lang) -> str:
    return "　" + label("more", lang, n=n) if n > 0 else ""


def _as_dimension(tags: Sequence[TagView]) -> DimensionView:
    return DimensionView(name="", tags=tuple(tags))
