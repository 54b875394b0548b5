"""Chat commands shared by Teams and WeCom: `tag ABC公司 +VIP客户 -沉默客户`, `查看 ABC公司`, `find …`.

The parser gets plain text (the channel strips @-mentions first) and never raises: a malformed command comes
back with its verb and an `error` saying how to write it. Text that is not a command at all comes back as
`Verb.UNKNOWN` with no error, because ordinary chat reaching the bot is not a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.tags.expression import ExpressionError, parse_expression
from tagging.normaliser import name_key


class Verb(StrEnum):
    HELP = "help"
    TAGS = "tags"
    TAG = "tag"
    FIND = "find"
    LINK = "link"
    UNLINK = "unlink"
    SUGGEST = "suggest"
    MYTAG = "mytag"
    PREP = "prep"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed chat command; `argument` is the expression, suggest text, help topic or raw text."""

    verb: Verb
    customer: str | None = None
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    argument: str = ""
    error: str | None = None


# Verb words, matched case-insensitively; Chinese verbs also match glued to their argument (`查看ABC公司`).
VERBS: dict[str, Verb] = {
    "help": Verb.HELP,
    "帮助": Verb.HELP,
    "?": Verb.HELP,
    "？": Verb.HELP,
    "tags": Verb.TAGS,
    "查看": Verb.TAGS,
    "tag": Verb.TAG,
    "打标签": Verb.TAG,
    "find": Verb.FIND,
    "查找": Verb.FIND,
    "link": Verb.LINK,
    "绑定": Verb.LINK,
    "unlink": Verb.UNLINK,
    "解绑": Verb.UNLINK,
    "suggest": Verb.SUGGEST,
    "建议": Verb.SUGGEST,
    "mytag": Verb.MYTAG,
    "我的标签": Verb.MYTAG,
    "prep": Verb.PREP,
    "会前": Verb.PREP,
}

USAGE: dict[Verb, str] = {
    Verb.HELP: "help",
    Verb.TAGS: "tags <customer>",
    Verb.TAG: "tag <customer> +标签 -标签",
    Verb.FIND: "find <tag expression>",
    Verb.LINK: "link <customer>",
    Verb.UNLINK: "unlink",
    Verb.SUGGEST: "suggest <text>",
    Verb.MYTAG: "mytag <customer> +标签 -标签",
    Verb.PREP: "prep <customer>",
}

# (usage, English description, Chinese description) for help cards, in display order.
HELP_TOPICS: tuple[tuple[str, str, str], ...] = (
    ("help | 帮助", "Show this list of commands", "显示命令列表"),
    ("tags <customer> | 查看 <客户>", "Show a customer's tags", "查看客户的标签"),
    (
        "tag <customer> +A -B | 打标签 <客户> +A -B",
        'Add tags with +, remove with -; quote names with spaces: +"重点 客户"',
        '用 + 添加标签、用 - 移除标签；带空格的名称加引号：+"重点 客户"',
    ),
    (
        "find <expression> | 查找 <表达式>",
        "Find customers by tags, e.g. VIP客户 AND 询价客户 NOT 沉默客户",
        "按标签查找客户，例如 VIP客户 且 询价客户 非 沉默客户",
    ),
    ("link <customer> | 绑定 <客户>", "Link this conversation to a customer", "把当前会话绑定到客户"),
    ("unlink | 解绑", "Remove this conversation's customer link", "解除当前会话的客户绑定"),
    ("suggest <text> | 建议 <文本>", "Suggest tags for a piece of text", "为一段文字推荐标签"),
    (
        "mytag <customer> +A -B | 我的标签 <客户> +A -B",
        "Your own notes as tags, seen only by you (personal chat); without + or - lists them",
        "只有自己看得到的个人标签（在与机器人的私聊中使用）；不带 + 或 - 时列出",
    ),
    (
        "prep <customer> | 会前 <客户>",
        "Meeting prep: the customer's tags before you meet (the linked customer when left out)",
        "会前准备：开会前查看客户标签（在已绑定的会话中可省略客户）",
    ),
)

# NBSP, ideographic space and zero-width marks arrive with pasted text.
_TRIM = " \t\r\n\u00a0\u3000\u200b\ufeff"
_SLASHES = "/／"
_PLUS = "+＋"
_MINUS = "-－"
_QUOTES = {'"': '"', "＂": "＂", "「": "」", "“": "”", "『": "』", "'": "'"}
_GLUED_VERBS = sorted((w for w in VERBS if not w.isascii()), key=len, reverse=True)


def parse_command(text: str) -> Command:
    """Parse one chat message into a Command; never raises."""
    body = text.strip(_TRIM)
    if body[:1] in _SLASHES and body[:1]:
        body = body[1:].lstrip(_TRIM)
    split = _split_verb(body)
    if split is None:
        return Command(Verb.UNKNOWN, argument=text.strip(_TRIM))
    verb, rest = split
    return _PARSERS[verb](rest)


def usage(verb: Verb) -> str:
    """The one-line usage of a verb, as shown in error replies."""
    return "usage: " + USAGE.get(verb, USAGE[Verb.HELP])


# ---------------------------------------------------------------- per-verb parsers


def _help(rest: str) -> Command:
    return Command(Verb.HELP, argument=rest)


def _tags(rest: str) -> Command:
    return _with_customer(Verb.TAGS, rest)


def _prep(rest: str) -> Command:
    return _with_customer(Verb.PREP, rest)


def _link(rest: str) -> Command:
    return _with_customer(Verb.LINK, rest)


def _unlink(rest: str) -> Command:
    """`unlink` needs nothing; a name after it is passed on so the channel can check it is the linked one."""
    customer, error = _read_customer(rest) if rest else (None, None)
    return Command(Verb.UNLINK, customer=customer or None, error=error)


def _find(rest: str) -> Command:
    if not rest:
        example = "e.g. find VIP客户 AND 询价客户"
        return Command(Verb.FIND, error=f"missing tag expression; {usage(Verb.FIND)}, {example}")
    try:
        parse_expression(rest)
    except ExpressionError as exc:
        return Command(Verb.FIND, argument=rest, error=f"tag expression: {exc}")
    return Command(Verb.FIND, argument=rest)


def _suggest(rest: str) -> Command:
    if not rest:
        return Command(Verb.SUGGEST, error=f"missing text; {usage(Verb.SUGGEST)}")
    return Command(Verb.SUGGEST, argument=rest)


def _mytag(rest: str) -> Command:
    """`mytag <customer> +A -B` changes the author's personal tags; `mytag <customer>` lists them."""
    return _tag(rest, Verb.MYTAG)


def _tag(rest: str, verb: Verb = Verb.TAG) -> Command:
    """`tag <customer> +A -B`: the customer runs up to the first word starting with + or -."""
    if rest[:1] in _QUOTES:
        customer, after = _read_quoted(rest, 0)
        if customer is None:
            return Command(verb, error=f"customer name: {after}; {usage(verb)}")
        changes = after
    else:
        cut = _first_signed_word(rest)
        customer, changes = rest[:cut].strip(_TRIM), rest[cut:]
    add, remove, error = _read_changes(changes, verb)
    if not customer:
        # The changes are kept so a conversation linked to a customer can apply them to that customer.
        kept = (add, remove) if error is None else ((), ())
        return Command(verb, add=kept[0], remove=kept[1], error=f"missing customer; {usage(verb)}")
    if error is None and not add and not remove and verb is Verb.TAG:
        error = f"no tag to add or remove; {usage(Verb.TAG)}"
    if error is None:
        both = {name_key(n) for n in add} & {name_key(n) for n in remove}
        if both:
            clash = next(n for n in add if name_key(n) in both)
            error = f"tag {clash} is both added and removed; keep only one of +{clash} / -{clash}"
    return Command(verb, customer=customer, add=add, remove=remove, error=error)


_PARSERS = {
    Verb.MYTAG: _mytag,
    Verb.PREP: _prep,
    Verb.HELP: _help,
    Verb.TAGS: _tags,
    Verb.TAG: _tag,
    Verb.FIND: _find,
    Verb.LINK: _link,
    Verb.UNLINK: _unlink,
    Verb.SUGGEST: _suggest,
}


# ---------------------------------------------------------------- pieces


def _split_verb(body: str) -> tuple[Verb, str] | None:
    """The verb and the trimmed rest, or None when the text starts with no known verb."""
    word = body.split(None, 1)[0] if body.split() else ""
    verb = VERBS.get(word.casefold())
    if verb is not None:
        return verb, body[len(word) :].strip(_TRIM)
    for glued in _GLUED_VERBS:  # Chinese is written without spaces: 打标签ABC公司 +VIP客户
        if body.startswith(glued):
            return VERBS[glued], body[len(glued) :].strip(_TRIM)
    return None


def _with_customer(verb: Verb, rest: str) -> Command:
    customer, error = _read_customer(rest)
    if error is None and not customer:
        error = f"missing customer; {usage(verb)}"
    return Command(verb, customer=customer or None, error=error)


def _read_customer(rest: str) -> tuple[str, str | None]:
    """The whole rest as a customer name, unquoted when it is quoted; (name, error)."""
    if rest[:1] in _QUOTES:
        name, after = _read_quoted(rest, 0)
        if name is None:
            return "", f"customer name: {after}"
        if after.strip(_TRIM):
            return name, f"unexpected text after the quoted customer name: {after.strip(_TRIM)}"
        return name, None
    return rest.strip(_TRIM), None


def _read_quoted(text: str, start: int) -> tuple[str | None, str]:
    """(name, rest after the closing quote), or (None, problem) when the quote is never closed."""
    opener = text[start]
    end = text.find(_QUOTES[opener], start + 1)
    if end < 0:
        return None, f"quote {opener} is never closed (add {_QUOTES[opener]})"
    return text[start + 1 : end].strip(_TRIM), text[end + 1 :]


def _first_signed_word(text: str) -> int:
    """Index of the first word starting with + or - (len(text) when there is none)."""
    for i, ch in enumerate(text):
        if ch in _PLUS + _MINUS and (i == 0 or text[i - 1].isspace() or text[i - 1] in _TRIM):
            return i
    return len(text)


def _read_changes(text: str, verb: Verb = Verb.TAG) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """Parse `+A -B +"C D"` into (add, remove, error); duplicates are kept once, in order."""
    add: list[str] = []
    remove: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace() or ch in _TRIM:
            i += 1
            continue
        if ch not in _PLUS + _MINUS:
            word = text[i:].split(None, 1)[0]
            return (), (), f"{word} needs + to add or - to remove it; {usage(verb)}"
        i += 1
        while i < n and (text[i].isspace() or text[i] in _TRIM):
            i += 1  # "+ VIP客户" with a stray space still names VIP客户
        if i >= n:
            return (), (), f"{ch} is not followed by a tag name; {usage(verb)}"
        if text[i] in _QUOTES:
            name, after = _read_quoted(text, i)
            if name is None:
                return (), (), f"tag name: {after}"
            i = n - len(after)
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _TRIM:
                i += 1
            name = text[start:i]
        if not name:
            return (), (), f"empty tag name after {ch}; {usage(verb)}"
        target = add if ch in _PLUS else remove
        if all(name_key(name) != name_key(seen) for seen in target):
            target.append(name)
    return tuple(add), tuple(remove), None
