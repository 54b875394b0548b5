"""Clause-scoped "no need" negation.

"No need" negators before a keyword in the same clause cancel it (我不需要退款, 不用报价了, 无需加急), and so
does a trailing "no longer needed" (报价就不用了). "Not yet / still not" complaints are not negators and keep
the keyword (还没退款, 为什么还不给我退款, 到现在都没退款). Clauses end at punctuation or line breaks.
"""

from __future__ import annotations

import re

NO_NEED: tuple[str, ...] = (
    "不需要",
    "不用",
    "无需",
    "无须",
    "不要",
    "没必要",
    "不必",
    "用不着",
    "不想要",
    "no need",
    "don't need",
    "don’t need",
    "dont need",
    "do not need",
    "does not need",
    "doesn't need",
    "no longer need",
    "don't want",
    "don’t want",
    "do not want",
    "not need",
)

# Words between a negator and the keyword that end the negator's reach: a contrast, a fresh demand,
# or a complaint that the keyword is still pending (不要再拖了赶紧退款, 不用说了为什么还没退款).
SCOPE_BREAKERS: tuple[str, ...] = (
    "但",
    "不过",
    "而是",
    "只要",
    "只想",
    "直接",
    "赶紧",
    "马上",
    "尽快",
    "快点",
    "还是要",
    "必须",
    "一定要",
    "拖",
    "等",
    "忘",
    "还没",
    "还不",
    "没有",
    "都没",
    "为什么",
    "怎么",
    "but",
    "just",
    "please",
    "still",
)

# How far (in characters) a negator reaches forward to a keyword within its clause.
MAX_GAP = 10

_TRAILING = re.compile(
    r"\s*(?:就|也|先|暂时|都|还是)?\s*(?:不用|不需要|不要|没必要|不必|算了)(?:了|啦|吧|哈|呢|啊|的|\s)*[\s,!?;。！？；、~.]*$"
)


def _is_question_form(clause: str, start: int, negator: str) -> bool:
    """A-不-A questions (要不要, 需不需要, 用不用) ask; they do not negate."""
    if not negator.startswith("不") or start == 0 or start + 1 >= len(clause):
        return False
    return clause[start - 1] == clause[start + 1]


def negated(clause: str, start: int, end: int) -> bool:
    """Whether the keyword at clause[start:end] is cancelled by a "no need" negator of the same clause."""
    before = clause[:start]
    best = -1
    best_negator = ""
    for negator in NO_NEED:
        at = before.rfind(negator)
        while at >= 0 and _is_question_form(clause, at, negator):
            at = before.rfind(negator, 0, at)
        if at >= 0 and at + len(negator) > best + len(best_negator):
            best, best_negator = at, negator
    if best >= 0:
        gap = before[best + len(best_negator) :]
        if len(gap) <= MAX_GAP and not any(breaker in gap for breaker in SCOPE_BREAKERS):
            return True
    return _TRAILING.match(clause, end) is not None
