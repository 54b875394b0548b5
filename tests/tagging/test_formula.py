"""The spreadsheet formula guard: one rule for import cells, tag names and CSV exports."""

from __future__ import annotations

import pytest

from core.importing.files import ImportFileError, parse_customer_bytes
from tagging.formula import defuse, formula_start
from tagging.loader import TaxonomyError, load_taxonomy_text

FORMULAS = [
    "=1+1",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\tcalc",
    "\rcalc",
    "＝1+1",
    "＋1",
    "－1+2",
    "＠x",
    "\u200b=1",
    "\ufeff@x",
    "\u200e\u200b+x",
    " =x",
    "- note",
    "--",
]
SAFE = ["-5", "+3", "-12.50", "5-3", "a=b", "VIP客户", "", "  ", "\u200b", "＊", "'=1"]


@pytest.mark.parametrize("value", FORMULAS)
def test_formula_looking_values(value: str) -> None:
    assert formula_start(value) is not None
    assert defuse(value) == "'" + value


@pytest.mark.parametrize("value", SAFE)
def test_safe_values(value: str) -> None:
    assert formula_start(value) is None
    assert defuse(value) == value


@pytest.mark.parametrize("value", ["-1+2", "\u200b=1", "＝HYPERLINK(x)", "@x", "\t-1+1"])
def test_csv_cells_are_refused(value: str) -> None:
    body = f'name,备注\n"{value}x",ok\n客户,"{value}"\n'.encode()
    with pytest.raises(ImportFileError) as info:
        parse_customer_bytes(body, "c.csv")
    reasons = [str(p) for p in info.value.problems]
    assert [r.split(":")[0] for r in reasons] == ["row 2, column name", "row 3, column 备注"]
    assert all("which spreadsheet programs run as a formula" in r for r in reasons)


def test_negative_numbers_pass_in_csv() -> None:
    parsed = parse_customer_bytes("name,余额\n客户甲,-5\n客户乙,-12.50\n".encode(), "c.csv")
    assert [dict(r.attributes) for r in parsed.rows] == [{"余额": "-5"}, {"余额": "-12.50"}]


def test_xlsx_string_cells_are_checked(tmp_path: object) -> None:
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["name", "余额", "备注"])
    sheet.append(["客户甲", -5, "－1+2"])
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(ImportFileError) as info:
        parse_customer_bytes(out.getvalue(), "c.xlsx")
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith("row 2, column 备注: '－1+2' starts with '－'")


@pytest.mark.parametrize("name", ["=HYPERLINK(x)", "@VIP", "＝x", "\u200b=x"])
def test_tag_and_dimension_names_are_refused(name: str) -> None:
    text = (
        "version: 1\ndimensions:\n  - key: a\n    name: "
        + _quoted(name)
        + "\n    tags:\n      - name: "
        + _quoted(name)
        + "\n"
    )
    with pytest.raises(TaxonomyError) as info:
        load_taxonomy_text(text)
    paths = [p.path for p in info.value.problems]
    assert paths == ["dimensions[0].name", "dimensions[0].tags[0].name"]
    assert all("spreadsheet programs run as a formula" in p.reason for p in info.value.problems)


def _quoted(value: str) -> str:
    return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


def test_the_csv_report_defuses_formula_looking_names() -> None:
    import csv
    import io
    from datetime import UTC, datetime

    from core.reports.tag_health import TagHealth, TagReport, render_report_csv

    def health(dimension: str, tag: str) -> TagHealth:
        return TagHealth(dimension, tag, False, 3, 1, 2, 1, 0, 0, 0, 2 / 3, None)

    now = datetime(2025, 4, 1, tzinfo=UTC)
    report = TagReport(now, (health("value", "=HYPERLINK(1)"), health("@legacy", "VIP客户")), (), (), ())
    rows = list(csv.reader(io.StringIO(render_report_csv(report))))
    assert rows[0][:4] == ["dimension", "tag", "in_taxonomy", "holders"]
    assert [r[:2] for r in rows[1:]] == [["value", "'=HYPERLINK(1)"], ["'@legacy", "VIP客户"]]
    assert rows[1][10] == "0.6667"
