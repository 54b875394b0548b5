"""Make user-supplied text inert in Markdown-rendering hosts (Teams TextBlocks, WeCom markdown)."""

from __future__ import annotations

import re

# Every ASCII character that starts Markdown, HTML, an entity or a mention in some host is swapped for its
# full-width (or near) look-alike. Backslash escapes are not used: Teams on Android/iOS shows the backslash,
# and the shared renderer's emphasis parser ignores escapes (microsoft/AdaptiveCards#5758), so only text
# without the special characters at all is safe in every client.
_LOOKALIKE = str.maketrans(
    {
        "\\": "＼",
        "`": "｀",
        "*": "＊",
        "_": "＿",
        "[": "［",
        "]": "］",
        "(": "（",
        ")": "）",
        "<": "＜",
        ">": "＞",
        "#": "＃",
        "~": "～",
        "|": "｜",
        "&": "＆",
        "{": "｛",
        "}": "｝",
    }
)
SPECIAL = frozenset("\\`*_[]()<>#~|&{}")
_LIST_START = re.compile(r"^(\s*)([-+=])")
_ORDERED_START = re.compile(r"^(\s*\d+)([.)])")
# A whole run of scheme characters is taken at once (possessively) with its optional ":/" tail, so every
# character is looked at a bounded number of times: a pattern that starts a scheme at every letter of a long
# run and scans to its end is quadratic (tens of seconds for one 80,000-letter message).
_SCHEME_RUN = re.compile(r"(?i)[a-z0-9+.-]++(:/+)?")
_LETTER = re.compile(r"(?i)[a-z]")
_WWW = re.compile(r"(?i)\bwww\.")
_SPACES = re.compile(r"\s+")
# Longest text escaped whole; longer text is cut first (cards show far less than this anyway).
MAX_ESCAPE_CHARS = 20_000


def escape(text: str) -> str:
    """`text` on one line, with nothing a Markdown/HTML host could turn into a link, mention or style.

    Text longer than MAX_ESCAPE_CHARS is cut there (ending with '…'), so escaping time stays bounded.
    """
    if len(text) > MAX_ESCAPE_CHARS:
        text = text[: MAX_ESCAPE_CHARS - 1] + "…"
    # Line breaks and other spaces fold to one space; control and format characters are dropped.
    kept = "".join(ch if ch.isprintable() else (" " if ch.isspace() else "") for ch in text)
    flat = _SPACES.sub(" ", kept).strip()
    flat = flat.translate(_LOOKALIKE)
    flat = _LIST_START.sub(lambda m: m.group(1) + {"-": "‐", "+": "＋", "=": "＝"}[m.group(2)], flat)
    flat = _ORDERED_START.sub(lambda m: m.group(1) + ("．" if m.group(2) == "." else "）"), flat)
    # Bare URLs are auto-linked by several clients: break the scheme separator and the www. prefix.
    flat = _SCHEME_RUN.sub(_break_scheme, flat)
    return _WWW.sub(lambda m: m.group(0)[:3] + "․", flat)


def _break_scheme(run: re.Match[str]) -> str:
    """A `scheme://` run with its slashes swapped for look-alikes; other runs unchanged."""
    tail = run.group(1)
    if tail is None:
        return run.group(0)
    head = run.group(0)[: len(run.group(0)) - len(tail)]
    if _LETTER.search(head) is None:
        return run.group(0)  # a scheme starts with a letter: "12://" is not one
    return head + ":" + "∕" * (len(tail) - 1)


def clip(text: str, limit: int) -> str:
    """Shorten `text` to at most `limit` characters, marking the cut with an ellipsis."""
    if limit < 1:
        raise ValueError(f"clip limit must be positive, got {limit}")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def literal(text: str, limit: int) -> str:
    """Escape user text for display and clip it to `limit` characters."""
    return clip(escape(text), limit)


def plain(text: str, limit: int) -> str:
    """User text for places that never render Markdown (TextRun, Input): one line, clipped, otherwise verbatim."""
    if len(text) > MAX_ESCAPE_CHARS:
        text = text[:MAX_ESCAPE_CHARS]
    kept = "".join(ch if ch.isprintable() else (" " if ch.isspace() else "") for ch in text)
    return clip(_SPACES.sub(" ", kept).strip(), limit)


def clip_bytes(text: str, limit: int) -> str:
    """Shorten `text` so its UTF-8 encoding fits in `limit` bytes (WeCom counts bytes), ending with '…'."""
    if len(text.encode("utf-8")) <= limit:
        return text
    budget = limit - len("…".encode())
    out = text.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return out + "…"
