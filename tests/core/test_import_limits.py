"""Import files that would exhaust the server (XLSX bombs) are refused before parsing; every echo is clipped."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import openpyxl
import pytest

import core.importing.files as files
from core.importing.files import ImportFileError, ImportLimits, parse_customer_bytes

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" '
    'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
    'Target="sharedStrings.xml"/></Relationships>'
)
_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def _package(sheet_data: str, shared: Sequence[str] | str = (), dimension: str | None = None) -> bytes:
    """A minimal XLSX whose first sheet holds `sheet_data` (the <sheetData> children)."""
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet {_NS}>{dim}<sheetData>{sheet_data}</sheetData></worksheet>'
    )
    if isinstance(shared, str):
        strings = shared
    else:
        items = "".join(f"<si><t>{s}</t></si>" for s in shared)
        strings = f'<sst {_NS} count="{len(shared)}" uniqueCount="{len(shared)}">{items}</sst>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        z.writestr("xl/sharedStrings.xml", strings)
    return out.getvalue()


def _header_and_row() -> str:
    return '<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2" t="s"><v>1</v></c></row>'


def _refused(data: bytes, limits: ImportLimits | None = None) -> list[str]:
    with pytest.raises(ImportFileError) as info:
        parse_customer_bytes(data, "客户.xlsx", limits)
    return [str(p) for p in info.value.problems]


@pytest.fixture
def no_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if openpyxl is asked to open the workbook: the limits must refuse it first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the workbook was parsed")

    monkeypatch.setattr(openpyxl, "load_workbook", refuse)


def test_a_small_package_is_read() -> None:
    parsed = parse_customer_bytes(_package(_header_and_row(), ["name", "上海明远"]), "客户.xlsx")
    assert [r.name for r in parsed.rows] == ["上海明远"]


def test_one_huge_shared_string_is_refused_from_the_zip_directory(no_reader: None) -> None:
    # 300 MB in the field; 3 MB here against a 1 MB limit: same code path, a fraction of the memory.
    data = _package(_header_and_row(), ["name", "A" * 3_000_000])
    assert len(data) < 50_000
    [problem] = _refused(data, ImportLimits(max_xlsx_part_bytes=1024 * 1024))
    assert "workbook part xl/sharedStrings.xml unpacks to 2.9 MB (limit 1.0 MB)" in problem
    assert len(problem) < 300


def test_a_highly_compressed_part_is_refused(no_reader: None) -> None:
    [problem] = _refused(_package(_header_and_row(), ["name", "B" * 3_000_000]))
    assert "is compressed" in problem and "to 1 (limit 100 to 1)" in problem


def test_a_declared_sheet_range_past_the_limits_is_refused(no_reader: None) -> None:
    far_row = '<row r="100000000"><c r="A100000000" t="s"><v>1</v></c></row>'
    [problem] = _refused(_package(_header_and_row() + far_row, ["name", "x"], dimension="A1:A100000000"))
    assert "the sheet spans 100,000,000 rows, empty ones included (limit 100,000)" in problem
    [problem] = _refused(_package(_header_and_row(), ["name", "x"], dimension="A1:XFC2"))
    assert "the sheet spans 16,383 columns" in problem


def test_too_many_declared_shared_strings_are_refused(no_reader: None) -> None:
    strings = f'<sst {_NS} count="5000000" uniqueCount="5000000"><si><t>name</t></si></sst>'
    [problem] = _refused(_package(_header_and_row(), strings))
    assert "declares 5,000,000 distinct texts" in problem


def test_rows_are_counted_empty_ones_included_while_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a dimension, a far row is caught by the row count; reading stops at the limit."""
    seen: list[int] = []
    real = files._xlsx_row

    def counting(number: int, cells: tuple[object, ...], limits: ImportLimits) -> list[files.Cell]:
        seen.append(number)
        return real(number, cells, limits)

    monkeypatch.setattr(files, "_xlsx_row", counting)
    far_row = '<row r="100000000"><c r="A100000000" t="s"><v>1</v></c></row>'
    [problem] = _refused(_package(_header_and_row() + far_row, ["name", "x"]), ImportLimits(max_sheet_rows=1000))
    assert "more than 1,000 rows, empty ones included" in problem
    assert max(seen) == 1001  # stopped at the limit, not at row 100,000,000


def test_many_columns_give_a_short_error() -> None:
    cells = "".join(f'<c r="{_letters(i)}1" t="s"><v>0</v></c>' for i in range(1, 1001))
    problems = _refused(_package(f'<row r="1">{cells}</row>', ["x" * 400]))
    assert problems == ["row 1: too many columns: 1000 (limit 200)"]
    duplicated = "".join(f'<c r="{_letters(i)}1" t="s"><v>0</v></c>' for i in range(1, 200))
    with pytest.raises(ImportFileError) as info:
        parse_customer_bytes(_package(f'<row r="1">{duplicated}</row>', ["名称" + "长" * 400]), "客户.xlsx")
    assert len(str(info.value)) < 20_000  # 50 problems shown, "… and N more", every value clipped


def test_problem_lists_are_capped() -> None:
    rows = "\n".join(f"=bad{i}" for i in range(20_000))
    with pytest.raises(ImportFileError) as info:
        parse_customer_bytes(("name\n" + rows + "\n").encode(), "c.csv", ImportLimits(max_problems=500))
    assert len(info.value.problems) == 501
    assert str(info.value.problems[-1]) == "more than 500 problems; fix these and try again"


def test_a_damaged_sheet_is_a_file_problem() -> None:
    data = _package('<row r="1"><c r="A1" t="s"><v>7</v></c></row>', ["name"])
    problems = _refused(data)
    assert len(problems) == 1 and ("unreadable XLSX" in problems[0] or "not a readable XLSX" in problems[0])


def _letters(n: int) -> str:
    out = ""
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(65 + r) + out
    return out


def test_empty_row_elements_are_counted_before_parsing(no_reader: None) -> None:
    """3 million `<row/>` elements in the field; 3,000 here against a limit of 1,000."""
    empty = "".join(f'<row r="{r}"/>' for r in range(2, 3002))
    [problem] = _refused(_package(_header_and_row() + empty, ["name", "x"]), ImportLimits(max_sheet_rows=1000))
    assert "more than 1,000 rows, empty ones included" in problem


def test_row_elements_split_across_read_chunks_are_counted_once() -> None:
    """Rows near the limit are counted exactly, whatever the chunk boundaries (1 MB reads)."""
    filler = "x" * 400  # 4,000 rows of ~470 bytes: the sheet spans two 1 MB reads
    rows = "".join(
        f'<row r="{r}"><c r="A{r}" t="inlineStr"><is><t>{filler}{r}</t></is></c></row>' for r in range(3, 4003)
    )
    data = _package(_header_and_row() + rows, ["name", "x"])  # 4,002 row elements in all
    assert "more than 4,001 rows" in _refused(data, ImportLimits(max_sheet_rows=4001))[0]
    parsed = parse_customer_bytes(data, "客户.xlsx", ImportLimits(max_sheet_rows=4002, max_rows=10_000))
    assert len(parsed.rows) == 4001
