"""Personal data inside text: mainland ID numbers, mobile numbers and bank card numbers (pure checks)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

PiiKind = Literal["id_card", "mobile", "bank_card"]

# A run of ASCII digits whose groups are joined by one space or dash ("138-1234-5678", "6222 0212 …"),
# optionally ending in the ID check character X. Letters and other digits around it end the run.
_RUN = re.compile(r"[0-9](?:[0-9]|[ \-](?=[0-9]))*(?:[Xx](?![0-9A-Za-z]))?")
_GROUP = re.compile(r"[0-9]+[Xx]?")
_ASCII_DIGIT = re.compile(r"[0-9]")
_FEWEST_DIGITS = 11  # a mobile number; ID numbers (17 + check) and bank cards (16-19) have more
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# GB/T 2260 province-level codes (first two digits of a citizen ID number).
_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54}
    | {61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
_MAX_DIGITS = 21  # "86" + 19 would be the longest candidate; longer spans are never one number


@dataclass(frozen=True, slots=True)
class PiiHit:
    """One piece of personal data found in a text; `start`/`end` index the original text."""

    kind: PiiKind
    start: int
    end: int


def id_card_valid(number: str) -> bool:
    """True for an 18-character mainland ID: known province, real birth date, GB 11643 check character."""
    if len(number) != 18 or not number[:17].isdigit() or not number.isascii():
        return False
    if int(number[:2]) not in _PROVINCES or not _birth_date_plausible(number[6:14]):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(number: str) -> bool:
    """True for a 16-19 digit number passing the Luhn check; issuer numbers never start with 0."""
    if not 16 <= len(number) <= 19 or not number.isdigit() or not number.isascii() or number[0] == "0":
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def mobile_valid(number: str) -> bool:
    """True for an 11-digit mainland mobile number, optionally prefixed with the country code 86."""
    if len(number) == 13 and number.startswith("86"):
        number = number[2:]
    return _MOBILE.fullmatch(number) is not None


def find_pii(text: str) -> list[PiiHit]:
    """Every ID number, mobile number and bank card number in `text`, in order; full-width digits count."""
    if len(_ASCII_DIGIT.findall(unicodedata.normalize("NFKC", text))) < _FEWEST_DIGITS:
        return []  # most text holds no long number: skip the per-character fold below
    folded, origin = _fold(text)
    hits: list[PiiHit] = []
    for run in _RUN.finditer(folded):
        for kind, start, end in _classify_run(folded, run.start(), run.end()):
            if kind == "mobile" and start >= 1 and folded[start - 1] == "+":
                start -= 1  # "+86 138…" masks the plus sign too
            hits.append(PiiHit(kind, origin[start], origin[end - 1] + 1))
    return hits


def contains_pii(text: str) -> bool:
    """True when `text` holds any ID, mobile or bank card number."""
    return bool(find_pii(text))


def mask(text: str) -> str:
    """`text` with every digit (and ID check X) of each personal number replaced by '*', for logs."""
    chars = list(text)
    for hit in find_pii(text):
        for i in range(hit.start, hit.end):
            if not _is_separator(chars[i]):
                chars[i] = "*"
    return "".join(chars)


def describe(hit: PiiHit) -> str:
    """Human name of a hit's kind, for error messages (never the number itself)."""
    return {
        "id_card": "an ID card number",
        "mobile": "a mobile phone number",
        "bank_card": "a bank card number",
    }[hit.kind]


# ---------------------------------------------------------------- internals


def _fold(text: str) -> tuple[str, list[int]]:
    """NFKC per character (full-width digits become ASCII) with a map from folded index to original index."""
    out: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        folded = unicodedata.normalize("NFKC", ch) if not ch.isascii() else ch
        out.append(folded)
        origin.extend([i] * len(folded))
    return "".join(out), origin


def _is_separator(ch: str) -> bool:
    return unicodedata.normalize("NFKC", ch) in {" ", "-", "+"}


def _classify_run(folded: str, start: int, end: int) -> list[tuple[PiiKind, int, int]]:
    """Hits inside one digit run: the whole run if it is a number, else the longest spans of whole groups."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(folded, start, end)]
    found: list[tuple[PiiKind, int, int]] = []
    i = 0
    while i < len(groups):
        match = _longest_from(folded, groups, i)
        if match is None:
            i += 1
            continue
        kind, j = match
        found.append((kind, groups[i][0], groups[j][1]))
        i = j + 1
    return found


def _longest_from(folded: str, groups: list[tuple[int, int]], i: int) -> tuple[PiiKind, int] | None:
    """The longest span of whole groups starting at group i that forms a personal number, as (kind, last)."""
    best: tuple[PiiKind, int] | None = None
    digits = ""
    for j in range(i, len(groups)):
        digits += folded[groups[j][0] : groups[j][1]]
        if len(digits) > _MAX_DIGITS:
            break
        kind = _kind_of(digits)
        if kind is not None:
            best = (kind, j)
        if digits[-1] in "Xx":
            break
    return best


def _kind_of(digits: str) -> PiiKind | None:
    if id_card_valid(digits):
        return "id_card"
    if not digits.isdigit():
        return None
    if mobile_valid(digits):
        return "mobile"
    if luhn_valid(digits):
        return "bank_card"
    return None


def _birth_date_plausible(yyyymmdd: str) -> bool:
    year, month, day = int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:])
    if not 1900 <= year <= 2099:
        return False
    try:
        dt.date(year, month, day)
    except ValueError:
        return False
    return True
