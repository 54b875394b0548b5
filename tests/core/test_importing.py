"""Customer import files: CSV in UTF-8 / BOM / GBK, XLSX, and every refusal rule."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from core.importing.files import (
    CustomerRow,
    ImportFileError,
    ImportLimits,
    RowProblem,
    parse_customer_bytes,
    parse_customer_file,
)

HEADER = "name,company,owner,region,crm_id,wecom_external_userid,contract_end,tags,行业\n"


def _csv(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "客户.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _xlsx(tmp_path: Path, rows: list[list[object]]) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.create_sheet("说明").append(["这张表不会被读取"])
    path = tmp_path / "客户.xlsx"
    book.save(path)
    return path


def _problems(path: Path, limits: ImportLimits | None = None) -> list[str]:
    with pytest.raises(ImportFileError) as caught:
        parse_customer_file(path, limits)
    return [str(p) for p in caught.value.problems]


def test_utf8_csv_reads_every_column(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        HEADER + "深圳市腾飞科技,腾飞集团,zhangsan,华南,C-001,wmABC123,2025-12-31,"
        "VIP客户; 询价客户；续费意向,制造业\n",
    )
    result = parse_customer_file(path)
    assert result.format == "csv-utf-8"
    assert result.columns == (
        "name",
        "company",
        "owner",
        "region",
        "crm_id",
        "wecom_external_userid",
        "contract_end",
        "tags",
        "行业",
    )
    assert result.rows == (
        CustomerRow(
            row=2,
            name="深圳市腾飞科技",
            company="腾飞集团",
            owner="zhangsan",
            region="华南",
            crm_id="C-001",
            wecom_external_userid="wmABC123",
            contract_end=date(2025, 12, 31),
            tags=("VIP客户", "询价客户", "续费意向"),
            attributes={"行业": "制造业"},
        ),
    )


def test_bom_and_gbk_csv_are_detected(tmp_path: Path) -> None:
    text = (
        "客户名称,公司,负责人,地区,CRM编号,外部联系人ID,合同到期,标签\n"
        "北京星辰贸易,星辰,lisi,华北,C-9,,2026/1/5,沉默客户\n"
    )
    bom = parse_customer_file(_csv(tmp_path, text, "utf-8-sig", "bom.csv"))
    gbk = parse_customer_file(_csv(tmp_path, text, "gbk", "gbk.csv"))
    assert (bom.format, gbk.format) == ("csv-utf-8-bom", "csv-gb18030")
    assert bom.rows == gbk.rows
    row = gbk.rows[0]
    assert (row.name, row.owner, row.region, row.crm_id, row.wecom_external_userid) == (
        "北京星辰贸易",
        "lisi",
        "华北",
        "C-9",
        None,
    )
    assert row.contract_end == date(2026, 1, 5)
    assert gbk.columns[:3] == ("name", "company", "owner")


def test_headers_are_trimmed_and_case_insensitive(tmp_path: Path) -> None:
    result = parse_customer_file(_csv(tmp_path, "  NAME , Tags ,备注\n杭州云栖,VIP客户,老客户\n"))
    assert result.columns == ("name", "tags", "备注")
    assert result.rows[0].tags == ("VIP客户",)
    assert dict(result.rows[0].attributes) == {"备注": "老客户"}


def test_blank_lines_are_skipped_but_row_numbers_stay_true(tmp_path: Path) -> None:
    result = parse_customer_file(_csv(tmp_path, "name,crm_id\n\n甲公司,1\n , \n乙公司,2\n"))
    assert [(r.row, r.name) for r in result.rows] == [(3, "甲公司"), (5, "乙公司")]


def test_xlsx_first_sheet_with_date_cells_and_iso_strings(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path,
        [
            ["客户名称", "CRM编号", "合同到期", "标签", "员工数"],
            ["成都天府软件", 10086, datetime(2025, 6, 30), "VIP客户;询价客户", 250],
            [None, None, None, None, None],
            ["重庆山城物流", "C-2", "2025-07-01", None, 12.5],
        ],
    )
    result = parse_customer_file(path)
    assert result.format == "xlsx"
    first, second = result.rows
    assert (first.row, first.crm_id, first.contract_end, first.tags) == (
        2,
        "10086",
        date(2025, 6, 30),
        ("VIP客户", "询价客户"),
    )
    assert dict(first.attributes) == {"员工数": "250"}
    assert (second.row, second.contract_end, dict(second.attributes)) == (
        4,
        date(2025, 7, 1),
        {"员工数": "12.5"},
    )


def test_bytes_entry_point_for_uploads() -> None:
    result = parse_customer_bytes("name\n苏州工业园\n".encode(), "upload.CSV")
    assert result.rows[0].name == "苏州工业园"


def test_row_problems_are_all_collected(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "name,crm_id,wecom_external_userid,contract_end,tags\n"
        "甲公司,C-1,wm1,2025-13-01,\n"  # row 2: bad month
        ",C-2,,,\n"  # row 3: no name
        "乙公司,C-1,wm1,,\n"  # row 4: duplicate ids
        '丙公司,,,,=HYPERLINK("x")\n'  # row 5: formula
        "丁公司,,,明天,\n"  # row 6: not a date
        "丙公司,,,,\n",  # row 7: same name, no key
    )
    assert _problems(path) == [
        "row 2, column contract_end: '2025-13-01' is not a date (use YYYY-MM-DD)",
        "row 3, column name: name is empty; every customer needs a name",
        "row 4, column crm_id: 'C-1' also appears in row 2; each crm_id must be unique",
        "row 4, column wecom_external_userid: 'wm1' also appears in row 2; "
        "each wecom_external_userid must be unique",
        "row 5, column tags: '=HYPERLINK(\"x\")' starts with '=', "
        "which spreadsheet programs run as a formula; remove the leading '='",
        "row 6, column contract_end: '明天' is not a date (use YYYY-MM-DD)",
        "row 7, column name: '丙公司' also appears in row 5 and neither row has a crm_id "
        "or wecom_external_userid; add one to tell them apart",
    ]


@pytest.mark.parametrize("prefix", ["=", "+", "@"])
def test_csv_injection_prefixes_are_refused(tmp_path: Path, prefix: str) -> None:
    problems = _problems(_csv(tmp_path, f"name,备注\n广州花城,{prefix}SUM(A1)\n"))
    assert problems == [
        f"row 2, column 备注: '{prefix}SUM(A1)' starts with '{prefix}', "
        f"which spreadsheet programs run as a formula; remove the leading '{prefix}'"
    ]


def test_xlsx_formula_cells_are_refused(tmp_path: Path) -> None:
    path = _xlsx(tmp_path, [["name", "评分"], ["武汉光谷", "=1+1"]])
    assert _problems(path) == ["row 2, column 评分: cell holds a formula; paste values instead of formulas"]


def test_personal_data_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = _csv(tmp_path, "name,tags,备注,crm_id\n南京紫金,VIP客户;13812345678,无,11010519491231002X\n")
    problems = _problems(path)
    assert problems == [
        "row 2, column tags: contains a mobile phone number; personal data must not be imported"
    ]
    assert "13812345678" not in str(ImportFileError([RowProblem(2, "tags", problems[0])]))


def test_too_long_values_and_tags(tmp_path: Path) -> None:
    limits = ImportLimits(max_value_chars=20, max_tag_chars=5)
    problems = _problems(_csv(tmp_path, "name,tags\n" + "长" * 21 + ",VIP客户;超长的标签名字\n"), limits)
    assert problems == [
        "row 2, column name: value is 21 characters long (limit 20)",
        "row 2, column tags: tag '超长的标签名字' is 7 characters long (limit 5)",
    ]


def test_header_problems(tmp_path: Path) -> None:
    assert _problems(_csv(tmp_path, "公司,标签\n华为,VIP客户\n")) == [
        "row 1: no name column: the header row needs a column called name (or 客户名称/名称); "
        "found 公司, 标签"
    ]
    assert _problems(_csv(tmp_path, "name,客户名称\n华为,华为\n")) == [
        "row 1, column B: duplicate header '客户名称': column A ('name') is already name"
    ]
    assert _problems(_csv(tmp_path, "name,,\n华为,,多余\n")) == [
        "row 2, column C: value in a column without a header; name the column in the header row or delete it"
    ]


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    assert _problems(_csv(tmp_path, "\n \n")) == [
        "file is empty: expected a header row with at least a name column"
    ]
    assert _problems(_csv(tmp_path, "客户名称,标签\n")) == ["file has a header row but no customer rows"]


def test_unknown_type_and_size_and_row_caps(tmp_path: Path) -> None:
    assert _problems(_csv(tmp_path, "name\n华为\n", name="客户.xls")) == [
        "unknown file type '.xls' (save it as .xlsx or CSV first); allowed: .csv, .xlsx"
    ]
    assert _problems(_csv(tmp_path, "name\n华为\n", name="客户")) == [
        "unknown file type no extension; allowed: .csv, .xlsx"
    ]
    big = _csv(tmp_path, "name\n" + "客户\n" * 100)
    assert _problems(big, ImportLimits(max_bytes=100))[0].startswith("file is too large: 0.0 MB")
    many = _csv(tmp_path, "name\n" + "".join(f"客户{i}\n" for i in range(4)))
    assert _problems(many, ImportLimits(max_rows=3)) == [
        "too many rows: more than 3 customers; split the file"
    ]


def test_undecodable_and_broken_files(tmp_path: Path) -> None:
    assert _problems(_csv(tmp_path, "x", name="a.csv").with_name("a.csv")) == [
        "row 1: no name column: the header row needs a column called name (or 客户名称/名称); found x"
    ]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"name\n\xff\xff\xff\n")
    assert "not UTF-8 or GB18030/GBK text" in _problems(bad)[0]
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"name\n\xe5\x8d\x8e\x00\n")
    assert _problems(nul) == ["row 2, column name: contains the control character U+0000; remove it"]
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'name\n"unterminated\n')
    assert _problems(quoted) == ["row 2: unreadable CSV record: unexpected end of data"]
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"name\n")
    assert _problems(fake)[0].startswith("not a readable XLSX workbook")


def test_error_message_lists_problems_and_says_nothing_was_imported(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError) as caught:
        parse_customer_file(_csv(tmp_path, "name,contract_end\n华为,2025-02-30\n"))
    assert str(caught.value) == (
        "import file refused (1 problem, nothing imported):\n"
        "row 2, column contract_end: '2025-02-30' is not a date (use YYYY-MM-DD)"
    )


def test_collect_returns_good_rows_beside_row_problems(tmp_path: Path) -> None:
    text = "name,contract_end,tags\n华为,2025-12-31,VIP客户\n小米,2025-02-30,\n,2025-01-01,\n美团,,普通客户\n"
    result = parse_customer_file(_csv(tmp_path, text), collect=True)
    assert [r.name for r in result.rows] == ["华为", "美团"]
    assert [str(p) for p in result.problems] == [
        "row 3, column contract_end: '2025-02-30' is not a date (use YYYY-MM-DD)",
        "row 4, column name: name is empty; every customer needs a name",
    ]
    assert parse_customer_file(_csv(tmp_path, "name\n华为\n"), collect=True).problems == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("公司,标签\n华为,VIP客户\n", "no name column"),
        ("name\n", "no customer rows"),
        ("name,name\n华为,华为\n", "duplicate header"),
        ('name\n小米,2025-02-30\n"华为\n', "unreadable CSV record"),
    ],
)
def test_collect_still_raises_whole_file_problems(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ImportFileError) as caught:
        parse_customer_file(_csv(tmp_path, text), collect=True)
    assert any(expected in str(p) for p in caught.value.problems), caught.value.problems


def test_collect_still_raises_too_many_rows(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="too many rows"):
        parse_customer_bytes("name\n华为\n小米\n美团\n".encode(), "c.csv", ImportLimits(max_rows=2), collect=True)
