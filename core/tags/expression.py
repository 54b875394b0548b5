"""Tag search expressions such as `VIP客户 AND 询价客户 NOT 沉默客户`: parse, evaluate, render.

Grammar (precedence NOT > AND > OR; juxtaposition means AND; `A NOT B` means `A AND NOT B`)::

    expr    := and_expr (OR and_expr)*
    and_expr:= unary ((AND)? unary)*
    unary   := NOT unary | primary
    primary := TAG | "(" expr ")"

Operators: `AND`/`且`/`&`, `OR`/`或`/`|`, `NOT`/`非`/`!` and `-` (the last only at the start of a word).
Word operators are case-insensitive and only count as whole words: `非洲客户` is a tag name,
while `非 洲客户` negates the tag 洲客户.
Tag names are bare words or quoted with "…", 「…」, “…” or 『…』 when they hold spaces, brackets or operator
characters; inside "…" a backslash escapes `"` and `\\`. Full-width brackets （） work like ().

An expression made only of negations (`NOT 沉默客户`) is allowed: it matches every customer who does not hold
the tag, including customers with no tags at all; `evaluate(expr, ())` tells a caller whether that is so.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from tagging.normaliser import name_key

MAX_LENGTH = 500
MAX_TERMS = 50
MAX_DEPTH = 32  # brackets and NOTs nested deeper than this are refused before recursion gets risky


class ExpressionError(ValueError):
    """A refused tag expression; `position` is the 0-based offset in the text (None: the whole text).

    Messages count characters from 1, as a person reading the text would.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True, slots=True)
class TagRef:
    """A tag name as written; compared with held tags through `name_key`."""

    name: str


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class And:
    """Two or more operands, none of them an And (the parser flattens)."""

    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Two or more operands, none of them an Or (the parser flattens)."""

    operands: tuple[Expr, ...]


Expr = TagRef | Not | And | Or


class _Kind(Enum):
    TAG = "tag"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    LPAREN = "("
    RPAREN = ")"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # the tag name for TAG, the source spelling otherwise
    position: int


_WORD_OPERATORS = {
    "and": _Kind.AND,
    "or": _Kind.OR,
    "not": _Kind.NOT,
    "且": _Kind.AND,
    "或": _Kind.OR,
    "非": _Kind.NOT,
}
_SYMBOLS = {
    "&": _Kind.AND,
    "＆": _Kind.AND,
    "|": _Kind.OR,
    "｜": _Kind.OR,
    "!": _Kind.NOT,
    "！": _Kind.NOT,
    "(": _Kind.LPAREN,
    "（": _Kind.LPAREN,
    ")": _Kind.RPAREN,
    "）": _Kind.RPAREN,
}
_DASHES = "-－"
_QUOTES = {'"': '"', "＂": "＂", "「": "」", "“": "”", "『": "』"}
_WORD_BREAKS = frozenset(_SYMBOLS) | frozenset(_QUOTES)


def parse_expression(text: str) -> Expr:
    """Parse a tag expression; raises ExpressionError saying what is wrong and where."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is too long: {len(text)} characters (limit {MAX_LENGTH})")
    tokens = list(_tokenise(text))
    if not tokens:
        raise ExpressionError("empty expression: give at least one tag name, e.g. VIP客户 AND 询价客户")
    terms = sum(1 for t in tokens if t.kind is _Kind.TAG)
    if terms > MAX_TERMS:
        raise ExpressionError(f"expression has {terms} tag names (limit {MAX_TERMS})")
    return _Parser(tokens, len(text)).parse()


def evaluate(expr: Expr, held: Collection[str]) -> bool:
    """True when a customer holding the tags `held` (name_key-normalised names) matches `expr`."""
    keys = held if isinstance(held, set | frozenset) else frozenset(held)
    return _eval(expr, keys)


def tag_names(expr: Expr) -> frozenset[str]:
    """Every tag name the expression mentions, as written."""
    return frozenset(ref.name for ref in _refs(expr))


def render(expr: Expr) -> str:
    """Canonical text of `expr` (English operators, minimal brackets); parses back to the same tree."""
    return _render(expr, parent=None)


# ---------------------------------------------------------------- evaluation and rendering


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    return name_key(name)


def _eval(expr: Expr, held: Collection[str]) -> bool:
    match expr:
        case TagRef(name):
            return _key(name) in held
        case Not(operand):
            return not _eval(operand, held)
        case And(operands):
            return all(_eval(op, held) for op in operands)
        case Or(operands):
            return any(_eval(op, held) for op in operands)
    raise TypeError(f"not an expression: {expr!r}")


def _refs(expr: Expr) -> Iterator[TagRef]:
    match expr:
        case TagRef():
            yield expr
        case Not(operand):
            yield from _refs(operand)
        case And(operands) | Or(operands):
            for op in operands:
                yield from _refs(op)


def _render(expr: Expr, parent: type | None) -> str:
    match expr:
        case TagRef(name):
            return _render_name(name)
        case Not(operand):
            return "NOT " + _render(operand, Not)
        case And(operands):
            text = " AND ".join(_render(op, And) for op in operands)
            return f"({text})" if parent is Not else text
        case Or(operands):
            text = " OR ".join(_render(op, Or) for op in operands)
            return f"({text})" if parent in (Not, And) else text
    raise TypeError(f"not an expression: {expr!r}")


def _render_name(name: str) -> str:
    """The name bare when it would read back as one tag word, else in escaped double quotes."""
    bare = (
        name != ""
        and not any(ch.isspace() or ch in _WORD_BREAKS or ch == "\\" for ch in name)
        and name[0] not in _DASHES
        and _operator_word(name) is None
    )
    if bare:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _operator_word(word: str) -> _Kind | None:
    return _WORD_OPERATORS.get(unicodedata.normalize("NFKC", word).casefold())


# ---------------------------------------------------------------- tokens


def _tokenise(text: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SYMBOLS:
            yield _Token(_SYMBOLS[ch], ch, i)
            i += 1
        elif ch in _DASHES:
            yield _Token(_Kind.NOT, ch, i)  # a dash that starts a word negates it
            i += 1
        elif ch in _QUOTES:
            name, i = _read_quoted(text, i)
            yield name
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _WORD_BREAKS:
                i += 1
            word = text[start:i]
            kind = _operator_word(word)
            yield _Token(kind, word, start) if kind else _Token(_Kind.TAG, word, start)


def _read_quoted(text: str, start: int) -> tuple[_Token, int]:
    """A quoted tag name starting at `start`; returns the token and the index after the closing quote."""
    closer = _QUOTES[text[start]]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and closer == '"' and i + 1 < len(text) and text[i + 1] in '"\\':
            chars.append(text[i + 1])
            i += 2
            continue
        if ch == closer:
            name = "".join(chars).strip()
            if not name:
                raise ExpressionError(f"empty tag name in quotes at position {start + 1}", start)
            return _Token(_Kind.TAG, name, start), i + 1
        chars.append(ch)
        i += 1
    raise ExpressionError(f"quote {text[start]} at position {start + 1} is never closed (add {closer})", start)


# ---------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the token list; every refusal names the offending token's position."""

    def __init__(self, tokens: list[_Token], end: int) -> None:
        self._tokens = tokens
        self._i = 0
        self._end = end
        self._depth = 0

    def parse(self) -> Expr:
        expr = self._or()
        token = self._peek()
        if token is not None:
            if token.kind is _Kind.RPAREN:
                raise _unmatched_close(token)
            raise ExpressionError(f"unexpected {token.text!r} at position {token.position + 1}", token.position)
        return expr

    def _peek(self) -> _Token | None:
        return self._tokens[self._i] if self._i < len(self._tokens) else None

    def _take(self) -> _Token:
        token = self._tokens[self._i]
        self._i += 1
        return token

    def _or(self) -> Expr:
        operands = [self._and()]
        while (token := self._peek()) is not None and token.kind is _Kind.OR:
            self._take()
            operands.append(self._operand_after(token, self._and))
        return _join(Or, operands)

    def _and(self) -> Expr:
        operands = [self._unary()]
        while (token := self._peek()) is not None and token.kind not in (_Kind.OR, _Kind.RPAREN):
            if token.kind is _Kind.AND:
                self._take()
                operands.append(self._operand_after(token, self._unary))
            else:
                operands.append(self._unary())  # juxtaposition, including `A NOT B`
        return _join(And, operands)

    def _operand_after(self, operator: _Token, parse: Callable[[], Expr]) -> Expr:
        """Parse the right operand of a binary operator, refusing a missing one with a clear message."""
        token = self._peek()
        if token is None or token.kind in (_Kind.AND, _Kind.OR, _Kind.RPAREN):
            raise ExpressionError(
                f"operator {operator.text} at position {operator.position + 1} has no right operand",
                operator.position,
            )
        return parse()

    def _unary(self) -> Expr:
        token = self._peek()
        if token is None:
            raise ExpressionError("expression ends where a tag name was expected", self._end)
        if token.kind is _Kind.NOT:
            self._take()
            nxt = self._peek()
            if nxt is None or nxt.kind in (_Kind.AND, _Kind.OR, _Kind.RPAREN):
                raise ExpressionError(
                    f"operator {token.text} at position {token.position + 1} has no operand", token.position
                )
            with self._nested(token):
                return Not(self._unary())
        return self._primary()

    def _primary(self) -> Expr:
        token = self._take()
        if token.kind is _Kind.TAG:
            return TagRef(token.text)
        if token.kind is _Kind.LPAREN:
            nxt = self._peek()
            if nxt is not None and nxt.kind is _Kind.RPAREN:
                raise ExpressionError(f"empty parentheses at position {token.position + 1}", token.position)
            if nxt is None:
                raise ExpressionError(
                    f"unbalanced parenthesis: {token.text} at position {token.position + 1} is never closed",
                    token.position,
                )
            with self._nested(token):
                inner = self._or()
            closing = self._peek()
            if closing is None or closing.kind is not _Kind.RPAREN:
                raise ExpressionError(
                    f"unbalanced parenthesis: {token.text} at position {token.position + 1} is never closed",
                    token.position,
                )
            self._take()
            return inner
        if token.kind is _Kind.RPAREN:
            raise _unmatched_close(token)
        raise ExpressionError(
            f"operator {token.text} at position {token.position + 1} has no left operand", token.position
        )

    @contextmanager
    def _nested(self, token: _Token) -> Iterator[None]:
        """Count nesting so that hostile input cannot exhaust the Python stack."""
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression is nested too deeply at position {token.position + 1} (limit {MAX_DEPTH})",
                token.position,
            )
        try:
            yield
        finally:
            self._depth -= 1


def _unmatched_close(token: _Token) -> ExpressionError:
    return ExpressionError(
        f"unbalanced parenthesis: {token.text} at position {token.position + 1} has no matching (",
        token.position,
    )


def _join(kind: type[And] | type[Or], operands: list[Expr]) -> Expr:
    """One operand as itself, several as a flat And/Or (nested same-kind operands are spliced in)."""
    if len(operands) == 1:
        return operands[0]
    flat: list[Expr] = []
    for op in operands:
        flat.extend(op.operands if isinstance(op, kind) else (op,))
    return kind(tuple(flat))
