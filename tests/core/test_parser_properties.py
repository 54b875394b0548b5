"""Property tests: whatever the bytes, the import parsers answer with their own clear error type, never another.

Customer files (CSV and XLSX) raise only ImportFileError, taxonomy files only TaxonomyError, archive lines
only BadLine; every accepted result is well formed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import openpyxl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl.utils.exceptions import IllegalCharacterError

from core.importing.files import ImportFile, ImportFileError, parse_customer_bytes
from core.importing.ingest import ArchiveMessage, BadLine, parse_archive_line
from tagging.loader import TaxonomyError, load_taxonomy_text
from tagging.taxonomy import Taxonomy

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON-like values, including the awkward ones: huge ints, deep nesting, surrogates, NUL, control characters.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.sampled_from(["", "\x00", "=1+1", "－1+2", "\u200b@x", "2001-13-45", "9" * 5000, "\t-x"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _check_customer_file(data: bytes, filename: str) -> None:
    try:
        parsed = parse_customer_bytes(data, filename, collect=True)
    except ImportFileError as exc:
        assert exc.problems and len(str(exc)) < 50_000
        return
    assert isinstance(parsed, ImportFile)
    assert all(row.name for row in parsed.rows)


@SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes_as_csv(data: bytes) -> None:
    _check_customer_file(data, "c.csv")


@SETTINGS
@given(st.lists(st.lists(st.text(max_size=12), max_size=5), max_size=6))
def test_any_cells_as_csv(rows: list[list[str]]) -> None:
    lines = ["name,company,tags,contract_end,备注"] + [
        ",".join(json.dumps(c, ensure_ascii=False) for c in r) for r in rows
    ]
    _check_customer_file("\n".join(lines).encode("utf-8", "surrogatepass"), "c.csv")


@SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes_as_xlsx(data: bytes) -> None:
    _check_customer_file(data, "c.xlsx")


def _valid_xlsx() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["name", "company", "tags", "contract_end"])
    sheet.append(["上海明远", "明远", "VIP客户", "2025-12-31"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


VALID_XLSX = _valid_xlsx()


@SETTINGS
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(VALID_XLSX) - 1), st.integers(0, 255)), max_size=8))
def test_damaged_xlsx(changes: list[tuple[int, int]]) -> None:
    data = bytearray(VALID_XLSX)
    for position, value in changes:
        data[position] = value
    _check_customer_file(bytes(data), "c.xlsx")


@SETTINGS
@given(st.lists(st.lists(json_values.filter(lambda v: not isinstance(v, dict | list)), max_size=4), max_size=4))
def test_any_cells_as_xlsx(rows: list[list[Any]]) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["name", "company", "tags"])
    for row in rows:
        try:
            sheet.append([_cell(v) for v in row])
        except (ValueError, TypeError, IllegalCharacterError):
            return  # openpyxl refuses to write it; nothing to read back
    out = io.BytesIO()
    try:
        book.save(out)
    except (ValueError, TypeError, UnicodeError):
        return
    _check_customer_file(out.getvalue(), "c.xlsx")


def _cell(value: Any) -> Any:
    return value if not isinstance(value, int) or abs(value) < 10**15 else str(value)


def _check_taxonomy(text: str, fmt: str | None) -> None:
    try:
        taxonomy = load_taxonomy_text(text, fmt=fmt)
    except TaxonomyError as exc:
        assert exc.problems
        str(exc).encode("utf-8", "backslashreplace")
        return
    assert isinstance(taxonomy, Taxonomy)


@SETTINGS
@given(st.text(max_size=600), st.sampled_from([None, "yaml", "json"]))
def test_any_text_as_taxonomy(text: str, fmt: str | None) -> None:
    _check_taxonomy(text, fmt)


@SETTINGS
@given(json_values)
def test_any_structure_as_taxonomy_json(value: Any) -> None:
    _check_taxonomy(json.dumps({"version": 1, "dimensions": value}), "json")


@SETTINGS
@given(st.lists(json_values, max_size=3))
def test_any_tags_as_taxonomy_yaml(names: list[Any]) -> None:
    tags = [{"name": n, "keywords": [n]} for n in names]
    text = json.dumps({"version": 1, "dimensions": [{"key": "a", "name": "维度", "tags": tags}]})
    _check_taxonomy(text, "yaml")  # JSON is YAML: the YAML path sees the same awkward values


def _check_line(raw: bytes) -> None:
    try:
        message = parse_archive_line(raw)
    except BadLine as exc:
        assert str(exc)
        return
    assert message is None or isinstance(message, ArchiveMessage)


@SETTINGS
@given(st.binary(max_size=500))
def test_any_bytes_as_archive_line(raw: bytes) -> None:
    _check_line(raw)


@SETTINGS
@given(json_values, json_values, json_values, json_values)
def test_any_fields_as_archive_line(msgid: Any, sender: Any, msgtime: Any, content: Any) -> None:
    record = {"msgid": msgid, "from": sender, "msgtype": "text", "msgtime": msgtime, "text": {"content": content}}
    _check_line(json.dumps(record).encode())
    good = {"msgid": "m1", "from": "wmX", "msgtype": "text", "msgtime": 1735700000000, "text": {"content": content}}
    _check_line(json.dumps(good).encode())
