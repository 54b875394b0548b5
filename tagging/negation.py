"""Clause-scoped negation: "no need", "don't want" and "not" negators cancel a keyword of their clause.

Negators before a keyword in the same clause cancel it: "no need" (我不需要退款, 不用报价了, 无需加急),
"don't want / not planning" (不想退款了, 别加急了, 不打算续费, 没有要投诉的意思, 并非要退货) and "it is not"
(这不是投诉); so does a trailing "no longer needed" (报价就不用了, no refund needed). What they do not cancel:
"not yet / still not" complaints (还没退款, 为什么还不给我退款, 迟迟不退款), a negator negated in turn
(不是不想退款), a rhetorical question (谁说我们不要报价了), an A-不-A question (要不要报价), and 别 inside a
word (别家, 特别, 区别). Clauses end at punctuation or line breaks.
"""

from __future__ import annotations

import re

NO_NEED: tuple[str, ...] = (
    # no need
    "不需要",
    "不用",
    "无需",
    "无须",
    "不要",
    "没必要",
    "不必",
    "用不着",
    # don't want / not planning
    "不想",
    "不想要",
    "别",
    "不打算",
    "没打算",
    "不准备",
    "不考虑",
    "无意",
    "没有要",
    "没要",
    "没说要",
    "并非",
    "并不",
    "不再",
    # it is not / never
    "不是",
    "从来没",
    "从没",
    "从未",
    # English
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
    "dont want",
    "do not want",
    "not need",
    "not planning",
    "no plan to",
    "no plans to",
    "not going to",
    "won't",
    "won’t",
    "will not",
    "not interested",
)

# Negators that cancel only a keyword right after them (it's not urgent, 并不紧急), not one a few words on:
# "not" alone reaches too far in English (did not get my refund is a complaint).
ADJACENT_ONLY: tuple[str, ...] = ("not", "isn't", "isn’t")
_ADJACENT_GAP = re.compile(r"\s*(?:(?:a|an|that|so|very|really|too)\s+)?$")

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

# 没有要 right after one of these reads 还没有|要到, a "not yet" complaint (还没有要到退款), not a refusal.
NOT_YET_BEFORE: tuple[str, ...] = ("还", "都", "迟迟", "仍", "依然", "一直", "始终")
_NOT_YET_SENSITIVE: tuple[str, ...] = ("没有要", "没要")

# A clause that opens a rhetorical question turns its negator around (谁说我们不要报价了, 难道不需要退款吗).
RHETORICAL: tuple[str, ...] = ("谁说", "难道", "怎么能说")

# 别 is a negator only as a word of its own: these neighbours make it part of another word (别家, 特别).
_BIE_WORD_BEFORE = frozenset("特区分告级类识差个派性辨鉴离道送惜判甄职组国")
_BIE_WORD_AFTER = frozenset("家人的处称名具墅针扭致样克")

# How far (in characters) a negator reaches forward to a keyword within its clause.
MAX_GAP = 10

_TRAILING = re.compile(
    r"\s*(?:就|也|先|暂时|都|还是)?\s*(?:不用|不需要|不要|没必要|不必|算了)(?:了|啦|吧|哈|呢|啊|的|\s)*[\s,!?;。！？；、~.]*$"
)
_ENGLISH_NO = re.compile(r"\bno\s+$")
_TRAILING_NEEDED = re.compile(r"\s+(?:is\s+|are\s+)?(?:needed|required)\b")
_TRAILING_NOT_NEEDED = re.compile(r"\s+(?:(?:is|are)\s+)?(?:not|no\s+longer)\s+(?:needed|required)\b")
_WORD_NEGATOR = re.compile(r"[a-z]")


def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(word) for word in sorted(words, key=len, reverse=True)))


# One search tells whether a clause head holds any negator at all, which most do not.
_ANY_NO_NEED = _any_of(NO_NEED)
_ANY_ADJACENT = _any_of(ADJACENT_ONLY)


def _is_question_form(clause: str, start: int, negator: str) -> bool:
    """A-不-A questions (要不要, 需不需要, 用不用) ask; they do not negate."""
    if not negator.startswith("不") or start == 0 or start + 1 >= len(clause):
        return False
    return clause[start - 1] == clause[start + 1]


def _is_word_part(clause: str, start: int, negator: str) -> bool:
    """别 inside another word (别家, 特别), or an English negator inside a longer word (knot)."""
    end = start + len(negator)
    if negator == "别":
        before = clause[start - 1] if start > 0 else ""
        after = clause[end] if end < len(clause) else ""
        return before in _BIE_WORD_BEFORE or after in _BIE_WORD_AFTER
    if _WORD_NEGATOR.match(negator):
        return (start > 0 and clause[start - 1].isalnum()) or (end < len(clause) and clause[end].isalnum())
    return False


def _counts(clause: str, start: int, negator: str) -> bool:
    """Whether this occurrence of a negator really negates (not a question, a word part or a not-yet)."""
    if _is_question_form(clause, start, negator) or _is_word_part(clause, start, negator):
        return False
    return not (negator in _NOT_YET_SENSITIVE and clause[:start].endswith(NOT_YET_BEFORE))


def _nearest_negator(
    clause: str, before: int, words: tuple[str, ...], any_word: re.Pattern[str]
) -> tuple[int, str]:
    """The negator of `words` ending last before position `before` (the longest on a tie); (-1, "") if none.

    `any_word` matches any of `words`; when it finds none before `before`, there is nothing to weigh.
    """
    if any_word.search(clause, 0, before) is None:
        return -1, ""
    head = clause[:before]
    best, best_negator = -1, ""
    for negator in words:
        at = head.rfind(negator)
        while at >= 0 and not _counts(clause, at, negator):
            at = head.rfind(negator, 0, at)
        if at >= 0 and (at + len(negator), len(negator)) > (best + len(best_negator), len(best_negator)):
            best, best_negator = at, negator
    return best, best_negator


def _double_negative(clause: str, at: int) -> bool:
    """A negator that is itself negated (不是不想退款, 不是不需要上门) or asked about rhetorically."""
    previous, word = _nearest_negator(clause, at, NO_NEED, _ANY_NO_NEED)
    if previous >= 0 and previous + len(word) == at:
        return True
    return any(marker in clause[:at] for marker in RHETORICAL)


def negated(clause: str, start: int, end: int) -> bool:
    """Whether the keyword at clause[start:end] is cancelled by a negator of the same clause."""
    best, negator = _nearest_negator(clause, start, NO_NEED, _ANY_NO_NEED)
    if best >= 0:
        gap = clause[best + len(negator) : start]
        if len(gap) <= MAX_GAP and not any(breaker in gap for breaker in SCOPE_BREAKERS):
            return not _double_negative(clause, best)
    near, adjacent = _nearest_negator(clause, start, ADJACENT_ONLY, _ANY_ADJACENT)
    if near >= 0 and _ADJACENT_GAP.match(clause, near + len(adjacent), start):
        return True
    after = clause[end:]
    if _TRAILING_NOT_NEEDED.match(after):
        return True
    if _ENGLISH_NO.search(clause, 0, start) and _TRAILING_NEEDED.match(after):
        return True
    return _TRAILING.match(clause, end) is not None
