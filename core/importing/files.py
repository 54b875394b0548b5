"""Customer import files (design.md 3.6): read a CSV or the first sheet of an XLSX into checked rows.

Reading is all-or-nothing: every problem in the file is collected and raised together as ImportFileError,
so the caller writes nothing unless the whole file is clean. Nothing here touches the database.
With `collect=True` row problems come back in `ImportFile.problems` beside the rows that passed, so the
import service can add the problems only it can see (unknown tags, ambiguous customers) and report every
row problem in one run; problems with the file as a whole (type, size, encoding, header, unreadable record,
too many rows) are still raised at once, since no row list can be trusted then.

Decisions worth knowing:
- CSV text is UTF-8 (with or without BOM), UTF-16 with BOM, or GB18030 (a superset of GBK, which Chinese
  Excel uses for "CSV"); `ImportFile.format` says which one was read.
- Formula-looking text cells are refused in CSV and XLSX alike (tagging.formula: `=`, `+`, `-`, `@`, their
  full-width forms, a leading tab or carriage return, after invisible characters; plain numbers such as
  `-5` pass); XLSX formula cells are refused too (paste values instead), because the formula text is not
  the value the user sees.
- Personal data (ID, mobile and bank card numbers) is refused in every cell except the identifier columns
  `owner`, `crm_id` and `wecom_external_userid`: those are system keys whose digits would often trip the
  checksum tests by chance, and they are never shown as tags.
- `contract_end` accepts YYYY-MM-DD, the YYYY/M/D form Chinese Excel writes into CSV, and XLSX date cells.
- Two rows with the same name and neither crm_id nor wecom_external_userid are refused: an idempotent
  import would have no way to tell them apart.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

from core.progress import PhaseCounter, Progress
from tagging.formula import FORMULA_STARTS, describe_start, formula_start
from tagging.normaliser import name_key
from tagging.pii import describe, find_pii, mask

FIELDS = ("name", "company", "owner", "region", "crm_id", "wecom_external_userid", "contract_end", "tags")
ALLOWED_SUFFIXES = (".csv", ".xlsx")
IDENTIFIER_FIELDS = frozenset({"owner", "crm_id", "wecom_external_userid"})

# Header spellings, compared through name_key (NFKC, case-folded, traditional to simplified, trimmed).
HEADER_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        **{f: f for f in FIELDS},
        "客户名称": "name",
        "名称": "name",
        "公司": "company",
        "负责人": "owner",
        "区域": "region",
        "地区": "region",
        "crm编号": "crm_id",
        "外部联系人id": "wecom_external_userid",
        "合同到期": "contract_end",
        "标签": "tags",
    }
)
PROGRESS_EVERY = 5_000  # rows read between progress reports
_TAG_SEPARATORS = re.compile(r"[;；]")
_DATE = re.compile(r"(\d{4})([-/])(\d{1,2})\2(\d{1,2})")
# Control characters other than tab and newline; PostgreSQL refuses NUL in text outright.
_CONTROL = frozenset(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_CONTROL_CHAR = re.compile("[" + "".join(re.escape(ch) for ch in sorted(_CONTROL)) + "]")


@dataclass(frozen=True, slots=True)
class ImportLimits:
    """Caps that keep one import file from exhausting memory or filling the database with junk."""

    max_rows: int = 50_000
    max_bytes: int = 20 * 1024 * 1024
    max_columns: int = 200
    max_value_chars: int = 500
    max_tag_chars: int = 64
    max_tags_per_row: int = 100
    # XLSX parts, checked from the zip directory before anything is parsed (a 300 KB file can hold a
    # 300 MB string); the sheet's rows and columns count empty ones too.
    max_xlsx_part_bytes: int = 64 * 1024 * 1024
    max_xlsx_total_bytes: int = 160 * 1024 * 1024
    max_xlsx_ratio: int = 100
    max_xlsx_entries: int = 2_000
    max_shared_strings: int = 1_000_000
    max_sheet_rows: int = 100_000
    max_sheet_columns: int = 1_000
    max_problems: int = 5_000

    @classmethod
    def command_line(cls) -> ImportLimits:
        """The caps of `kebiao customers import`: a whole CRM export in one file (uploads keep the defaults)."""
        return cls(max_rows=2_000_000, max_bytes=1024 * 1024 * 1024, max_sheet_rows=2_000_001)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem in an import file; `row` is the spreadsheet row (header = 1), None for the whole file."""

    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row is not None else []
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class ImportFileError(ValueError):
    """The file was refused; `problems` lists every reason, by row (whole-file problems first)."""

    SHOWN = 50  # the message lists this many; `problems` keeps them all

    def __init__(self, problems: list[RowProblem]) -> None:
        self.problems = problems
        lines = [str(p) for p in problems[: self.SHOWN]]
        if len(problems) > self.SHOWN:
            lines.append(f"… and {len(problems) - self.SHOWN} more problems")
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"import file refused ({len(problems)} {noun}, nothing imported):\n" + "\n".join(lines))


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One checked customer row; `row` is the spreadsheet row number the user sees (header = 1)."""

    row: int
    name: str
    company: str | None = None
    owner: str | None = None
    region: str | None = None
    crm_id: str | None = None
    wecom_external_userid: str | None = None
    contract_end: date | None = None
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class ImportFile:
    """A checked import file; `format` is csv-utf-8, csv-utf-8-bom, csv-utf-16, csv-gb18030 or xlsx.

    `rows` holds the rows that passed; `problems` the refused rows' problems (only ever non-empty when
    parsed with collect=True, otherwise they are raised).
    """

    rows: tuple[CustomerRow, ...]
    columns: tuple[str, ...]
    format: str
    problems: tuple[RowProblem, ...] = ()
    # (row, tag names) of refused rows: the import checks them against the taxonomy too, so one run lists all
    refused_tags: tuple[tuple[int, tuple[str, ...]], ...] = ()


def parse_customer_file(
    path: str | Path, limits: ImportLimits | None = None, *, collect: bool = False, progress: Progress | None = None
) -> ImportFile:
    """Read and check a customer CSV/XLSX file; raises ImportFileError listing every problem.

    With collect=True only whole-file problems are raised; row problems are returned in `problems`.
    `progress` hears ("reading", rows, about how many) as rows are checked.
    """
    path = Path(path)
    limits = limits or ImportLimits()
    _check_suffix(path.name)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFileError([RowProblem(None, None, f"cannot read {path}: {exc.strerror}")]) from exc
    _check_size(size, limits)
    return parse_customer_bytes(path.read_bytes(), path.name, limits, collect=collect, progress=progress)


def parse_customer_bytes(
    data: bytes,
    filename: str,
    limits: ImportLimits | None = None,
    *,
    collect: bool = False,
    progress: Progress | None = None,
) -> ImportFile:
    """Like parse_customer_file for an uploaded body; `filename` decides CSV or XLSX by its extension."""
    limits = limits or ImportLimits()
    suffix = _check_suffix(filename)
    _check_size(len(data), limits)
    if suffix == ".csv":
        fmt, text = _decode(data)
        counter = PhaseCounter(progress, "reading", max(text.count("\n") - 1, 1))
        return _Checker(limits, counter).check(_csv_rows(text), fmt, collect=collect)
    counter = PhaseCounter(progress, "reading", max(_xlsx_row_estimate(data) - 1, 1))
    return _Checker(limits, counter).check(_xlsx_rows(data, limits), "xlsx", collect=collect)


def _xlsx_row_estimate(data: bytes) -> int:
    """The first sheet's declared last row (0 when it declares none or cannot be read yet)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            for entry in package.infolist():
                if entry.filename.lower().startswith("xl/worksheets/") and entry.filename.lower().endswith(".xml"):
                    found = _DIMENSION.search(_head(package, entry))
                    return max(int(found[2] or 0), int(found[4] or 0)) if found else 0
    except _UNREADABLE_PACKAGE:
        return 0
    return 0


# ---------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class _Formula:
    """An XLSX formula cell: refused, since the stored text is not the value the user sees."""

    text: str


Cell = str | int | float | bool | date | datetime | time | _Formula | None


def _check_suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "no extension"
        hint = " (save it as .xlsx or CSV first)" if suffix in (".xls", ".et", ".numbers", ".ods") else ""
        raise ImportFileError(
            [RowProblem(None, None, f"unknown file type {shown}{hint}; allowed: {', '.join(ALLOWED_SUFFIXES)}")]
        )
    return suffix


def _check_size(size: int, limits: ImportLimits) -> None:
    if size > limits.max_bytes:
        raise ImportFileError(
            [RowProblem(None, None, f"file is too large: {_mb(size)} (limit {_mb(limits.max_bytes)}); split it")]
        )


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _decode(data: bytes) -> tuple[str, str]:
    """(format, text) of CSV bytes: BOMs first, then strict UTF-8, then GB18030 (covers GBK)."""
    if data.startswith(codecs.BOM_UTF8):
        candidates = [("csv-utf-8-bom", "utf-8", data[len(codecs.BOM_UTF8) :])]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = [("csv-utf-16", "utf-16", data)]
    else:
        candidates = [("csv-utf-8", "utf-8", data), ("csv-gb18030", "gb18030", data)]
    failure: UnicodeDecodeError | None = None
    for fmt, encoding, body in candidates:
        try:
            return fmt, body.decode(encoding)
        except UnicodeDecodeError as exc:
            failure = failure or exc
    at = f" (bad byte at offset {failure.start})" if failure else ""
    raise ImportFileError(
        [RowProblem(None, None, f"the CSV is not UTF-8 or GB18030/GBK text{at}; save it as 'CSV UTF-8'")]
    )


def _csv_rows(text: str) -> Iterator[tuple[int, list[Cell]]]:
    """(row number, cells) for every record; raises _Broken at a record the reader cannot parse."""
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    # strict: a stray quote must be an error, not a cell that silently swallows the rest of the file
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    number = 0
    while True:
        number += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _Broken(number, f"unreadable CSV record: {exc}") from exc
        yield number, list(record)


class _Broken(Exception):
    """A record the reader cannot continue past (NUL byte, oversize field)."""

    def __init__(self, row: int | None, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


_DIMENSION = re.compile(rb"<(?:\w+:)?dimension\s+ref=\"([A-Z]{1,3})?([0-9]{1,10})?(?::([A-Z]{1,3})([0-9]{1,10}))?\"")
_UNIQUE_COUNT = re.compile(rb"<(?:\w+:)?sst\b[^>]*?\buniqueCount=\"([0-9]{1,12})\"")
_HEAD_BYTES = 64 * 1024


# What a damaged package raises while its directory and heads are read (RuntimeError: an encrypted part;
# zlib.error: a corrupt compressed stream).
_UNREADABLE_PACKAGE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
    EOFError,
)


def check_xlsx_package(data: bytes, limits: ImportLimits) -> None:
    """Refuse an XLSX whose parts are too large, too compressed, or whose sheet spans too much, unparsed.

    Reads only the zip directory and the first bytes of the sheets and of sharedStrings.xml, so a bomb
    costs next to nothing; raises _Broken with the reason.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            entries = package.infolist()
            if len(entries) > limits.max_xlsx_entries:
                raise _Broken(None, f"the workbook holds {len(entries):,} parts (limit {limits.max_xlsx_entries:,})")
            total = 0
            for entry in entries:
                total += entry.file_size
                _check_part(entry, limits)
            if total > limits.max_xlsx_total_bytes:
                raise _Broken(
                    None,
                    f"the workbook unpacks to {_mb(total)} (limit {_mb(limits.max_xlsx_total_bytes)}); "
                    "split it or save it as CSV",
                )
            for entry in entries:
                name = entry.filename.lower()
                if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                    _check_dimension(_head(package, entry), limits)
                    _check_row_count(package, entry, limits)
                elif name == "xl/sharedstrings.xml":
                    _check_shared_strings(_head(package, entry), limits)
    except _UNREADABLE_PACKAGE as exc:
        raise _Broken(
            None, f"not a readable XLSX workbook ({exc.__class__.__name__}); save it again from Excel"
        ) from exc


def _check_part(entry: zipfile.ZipInfo, limits: ImportLimits) -> None:
    name = _clip(entry.filename, 60)
    if entry.file_size > limits.max_xlsx_part_bytes:
        raise _Broken(
            None,
            f"workbook part {name} unpacks to {_mb(entry.file_size)} (limit {_mb(limits.max_xlsx_part_bytes)}); "
            "split the file or save it as CSV",
        )
    ratio = entry.file_size / max(entry.compress_size, 1)
    if entry.file_size > 1024 * 1024 and ratio > limits.max_xlsx_ratio:
        raise _Broken(
            None,
            f"workbook part {name} is compressed {ratio:,.0f} to 1 (limit {limits.max_xlsx_ratio} to 1), "
            "which only a damaged or hostile file does; save it again from Excel",
        )


def _head(package: zipfile.ZipFile, entry: zipfile.ZipInfo) -> bytes:
    """The first bytes of a part, decompressed."""
    with package.open(entry) as stream:
        return stream.read(_HEAD_BYTES)


def _check_dimension(head: bytes, limits: ImportLimits) -> None:
    """Refuse a sheet whose declared used range is larger than the limits (empty rows and columns count)."""
    found = _DIMENSION.search(head)
    if found is None:
        return
    rows = max(int(found[2] or 0), int(found[4] or 0))
    columns = max(_column_number(found[1]), _column_number(found[3]))
    if rows > limits.max_sheet_rows:
        raise _Broken(
            None,
            f"the sheet spans {rows:,} rows, empty ones included (limit {limits.max_sheet_rows:,}); delete the "
            "rows below the data and save again",
        )
    if columns > limits.max_sheet_columns:
        raise _Broken(
            None,
            f"the sheet spans {columns:,} columns, empty ones included (limit {limits.max_sheet_columns:,}); "
            "delete the columns right of the data and save again",
        )


_ROW_TAG = re.compile(rb"<(?:\w+:)?row[\s>/]")


def _check_row_count(package: zipfile.ZipFile, entry: zipfile.ZipInfo, limits: ImportLimits) -> None:
    """Count the sheet's row elements (empty ones too) in one streaming pass, stopping past the limit.

    The reader would otherwise walk every row of a sheet without a dimension before the first one is seen.
    """
    rows = 0
    pending = b""
    with package.open(entry) as stream:
        while chunk := stream.read(1024 * 1024):
            buffer = pending + chunk
            cut = buffer.rfind(b"<")  # a tag may continue in the next chunk: keep it for then
            if cut < 0:
                pending = b""
                continue
            rows += len(_ROW_TAG.findall(buffer, 0, cut))
            pending = buffer[cut:]
            if rows > limits.max_sheet_rows:
                break
    rows += len(_ROW_TAG.findall(pending))
    if rows > limits.max_sheet_rows:
        raise _Broken(
            None,
            f"the sheet has more than {limits.max_sheet_rows:,} rows, empty ones included; delete the rows below "
            "the data and save again",
        )


def _column_number(letters: bytes | None) -> int:
    number = 0
    for ch in letters or b"":
        number = number * 26 + (ch - ord("A") + 1)
    return number


def _check_shared_strings(head: bytes, limits: ImportLimits) -> None:
    found = _UNIQUE_COUNT.search(head)
    if found is not None and int(found[1]) > limits.max_shared_strings:
        raise _Broken(
            None,
            f"the workbook declares {int(found[1]):,} distinct texts (limit {limits.max_shared_strings:,}); "
            "split the file",
        )


def _xlsx_rows(data: bytes, limits: ImportLimits) -> Iterator[tuple[int, list[Cell]]]:
    """(row number, cells) of the first worksheet, empty rows included so numbers match Excel's.

    The package is checked first (check_xlsx_package); rows and columns are counted as they are read,
    empty ones included, and reading stops with _Broken past the sheet limits.
    """
    check_xlsx_package(data, limits)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # any failure of the reader on a damaged file is the file's problem
        raise _Broken(
            None, f"not a readable XLSX workbook ({exc.__class__.__name__}); save it again from Excel"
        ) from exc
    number = 0
    try:
        if not book.worksheets:
            raise _Broken(None, "the workbook has no worksheet")
        for number, cells in enumerate(book.worksheets[0].iter_rows(min_row=1), start=1):
            yield number, _xlsx_row(number, cells, limits)
    except _Broken:
        raise
    except Exception as exc:  # a damaged sheet (bad XML, bad cell reference, corrupt zip stream)
        raise _Broken(
            number + 1 or None,
            f"unreadable XLSX sheet ({exc.__class__.__name__}); save it again from Excel",
        ) from exc
    finally:
        book.close()


def _xlsx_row(number: int, cells: tuple[Any, ...], limits: ImportLimits) -> list[Cell]:
    """One sheet row's values (formula cells marked), refused past the sheet's row and column limits."""
    if number > limits.max_sheet_rows:
        raise _Broken(
            None,
            f"the sheet has more than {limits.max_sheet_rows:,} rows, empty ones included; delete the "
            "rows below the data and save again",
        )
    if len(cells) > limits.max_sheet_columns:
        raise _Broken(
            number,
            f"the row has {len(cells):,} columns, empty ones included (limit "
            f"{limits.max_sheet_columns:,}); delete the columns right of the data",
        )
    row: list[Cell] = []
    for cell in cells:
        value = cell.value
        if getattr(cell, "data_type", None) == "f":
            value = _Formula(str(value))
        row.append(value)
    return row


# ---------------------------------------------------------------- checking


@dataclass(slots=True)
class _Column:
    index: int
    letter: str
    header: str
    field: str | None  # a FIELDS name, or None for a free attribute

    @property
    def label(self) -> str:
        return self.field or _clip(self.header, 60)


class _Checker:
    """Turns raw rows into CustomerRows, collecting every problem instead of stopping at the first."""

    def __init__(self, limits: ImportLimits, progress: PhaseCounter | None = None) -> None:
        self.limits = limits
        self.progress = progress or PhaseCounter(None, "reading", 0)
        self.problems: list[RowProblem] = []
        self.seen_crm: dict[str, int] = {}
        self.seen_wecom: dict[str, int] = {}
        self.seen_unkeyed_names: dict[str, int] = {}
        self.reported_headerless: set[int] = set()
        self.refused_tags: list[tuple[int, tuple[str, ...]]] = []

    def check(self, raw_rows: Iterator[tuple[int, list[Cell]]], fmt: str, *, collect: bool) -> ImportFile:
        """The checked file; raises ImportFileError on any problem, or only on whole-file ones if collect."""
        rows: list[CustomerRow] = []
        columns: list[_Column] | None = None
        data_rows = 0
        fatal = False  # a problem with the file as a whole: the rows read so far are not the whole story
        try:
            for number, cells in raw_rows:
                if all(_is_blank(c) for c in cells):
                    continue
                if columns is None:
                    columns = self._header(number, cells)
                    if columns is None:
                        raise ImportFileError(self.problems)
                    continue
                data_rows += 1
                if data_rows % PROGRESS_EVERY == 0:
                    self.progress(PROGRESS_EVERY)
                if data_rows > self.limits.max_rows:
                    self._add(
                        None,
                        None,
                        f"too many rows: more than {self.limits.max_rows:,} customers; split the file",
                    )
                    fatal = True
                    break
                row = self._row(number, cells, columns)
                if row is not None:
                    rows.append(row)
        except _Broken as broken:
            self._add(broken.row, None, broken.reason)
            fatal = True
        self.progress(data_rows % PROGRESS_EVERY)
        if columns is None and not self.problems:
            self._add(None, None, "file is empty: expected a header row with at least a name column")
        elif columns is not None and data_rows == 0 and not self.problems:
            self._add(None, None, "file has a header row but no customer rows")
        if self.problems and (fatal or columns is None or not collect or data_rows == 0):
            raise ImportFileError(self.problems)
        assert columns is not None
        return ImportFile(
            tuple(rows), tuple(c.label for c in columns), fmt, tuple(self.problems), tuple(self.refused_tags)
        )

    def _add(self, row: int | None, column: str | None, reason: str) -> None:
        self.problems.append(RowProblem(row, column, reason))
        if len(self.problems) == self.limits.max_problems:
            raise _Broken(None, f"more than {self.limits.max_problems:,} problems; fix these and try again")

    def _header(self, number: int, cells: list[Cell]) -> list[_Column] | None:
        """The columns named by the header row, or None (with problems added) when it cannot be used."""
        while cells and _is_blank(cells[-1]):
            cells = cells[:-1]  # XLSX sheets often report formatted but empty columns
        if len(cells) > self.limits.max_columns:
            self._add(number, None, f"too many columns: {len(cells)} (limit {self.limits.max_columns})")
            return None
        columns: list[_Column] = []
        by_key: dict[str, _Column] = {}
        for index, cell in enumerate(cells):
            header = _text(cell).strip()
            letter = get_column_letter(index + 1)
            if not header:
                continue
            if len(header) > self.limits.max_value_chars:
                self._add(
                    number,
                    letter,
                    f"header '{_clip(header)}' is {len(header):,} characters long "
                    f"(limit {self.limits.max_value_chars})",
                )
                continue
            key = name_key(header)
            known = HEADER_ALIASES.get(key)
            identity = known or key
            column = _Column(index, letter, header, known)
            if identity in by_key:
                first = by_key[identity]
                self._add(
                    number,
                    letter,
                    f"duplicate header '{_clip(header)}': column {first.letter} ('{_clip(first.header)}') is already "
                    f"{first.label}",
                )
                continue
            by_key[identity] = column
            columns.append(column)
        if "name" not in by_key:
            found = _clip(", ".join(_clip(c.header) for c in columns[:20]), 200) or "nothing"
            self._add(
                number,
                None,
                f"no name column: the header row needs a column called name (or 客户名称/名称); found {found}",
            )
        return None if self.problems else columns

    def _row(self, number: int, cells: list[Cell], columns: list[_Column]) -> CustomerRow | None:
        """One CustomerRow, or None when the row has problems (which are recorded)."""
        before = len(self.problems)
        self._check_headerless(number, cells, columns)
        values: dict[str, str] = {}
        contract_end: date | None = None
        attributes: dict[str, str] = {}
        refused: set[str] = set()  # cells already reported; no second message about them
        for column in columns:
            cell = cells[column.index] if column.index < len(cells) else None
            if column.field == "contract_end" and isinstance(cell, date | datetime):
                contract_end = cell.date() if isinstance(cell, datetime) else cell
                continue
            value = self._cell_text(number, column, cell)
            if value is None:
                refused.add(column.label)
            if not value:
                continue
            if column.field == "contract_end":
                contract_end = self._date(number, column, cell, value)
            elif column.field is not None:
                values[column.field] = value
            else:
                attributes[column.header] = value
        name = values.get("name", "")
        if not name and "name" not in refused:
            self._add(number, "name", "name is empty; every customer needs a name")
        tags = self._tags(number, values.get("tags", ""))
        self._check_unique(number, name, values.get("crm_id"), values.get("wecom_external_userid"))
        if len(self.problems) > before:
            if tags:
                self.refused_tags.append((number, tags))
            return None
        return CustomerRow(
            row=number,
            name=name,
            company=values.get("company"),
            owner=values.get("owner"),
            region=values.get("region"),
            crm_id=values.get("crm_id"),
            wecom_external_userid=values.get("wecom_external_userid"),
            contract_end=contract_end,
            tags=tags,
            attributes=MappingProxyType(attributes),
        )

    def _check_headerless(self, number: int, cells: list[Cell], columns: list[_Column]) -> None:
        named = {c.index for c in columns}
        for index, cell in enumerate(cells):
            if index in named or _is_blank(cell) or index in self.reported_headerless:
                continue
            self.reported_headerless.add(index)  # once per column is enough to explain it
            self._add(
                number,
                get_column_letter(index + 1),
                "value in a column without a header; name the column in the header row or delete it",
            )

    def _cell_text(self, number: int, column: _Column, cell: Cell) -> str | None:
        """The trimmed text of a cell, or None when it is refused (problem recorded)."""
        if isinstance(cell, _Formula):
            self._add(number, column.label, "cell holds a formula; paste values instead of formulas")
            return None
        raw = _text(cell)
        value = raw.strip()
        if not value:
            return value
        start = formula_start(raw) if isinstance(cell, str) and not _plain_start(raw) else None
        if start is not None:
            shown = describe_start(start)
            self._add(
                number,
                column.label,
                f"'{_clip(value)}' starts with {shown}, which spreadsheet programs run as a formula; "
                f"remove the leading {shown}",
            )
            return None
        found = _CONTROL_CHAR.search(value)
        control = found[0] if found else None
        if control is not None:
            self._add(number, column.label, f"contains the control character U+{ord(control):04X}; remove it")
            return None
        if len(value) > self.limits.max_value_chars:
            self._add(
                number,
                column.label,
                f"value is {len(value)} characters long (limit {self.limits.max_value_chars})",
            )
            return None
        if column.field not in IDENTIFIER_FIELDS:
            hits = find_pii(value)
            if hits:
                self._add(number, column.label, f"contains {describe(hits[0])}; personal data must not be imported")
                return None
        return value

    def _date(self, number: int, column: _Column, cell: Cell, value: str) -> date | None:
        if isinstance(cell, int | float) and not isinstance(cell, bool):
            self._add(number, column.label, f"{value} is a number, not a date (format the cell as a date)")
            return None
        match = _DATE.fullmatch(value)
        if match:
            try:
                return date(int(match[1]), int(match[3]), int(match[4]))
            except ValueError:
                pass
        self._add(number, column.label, f"'{_clip(value)}' is not a date (use YYYY-MM-DD)")
        return None

    def _tags(self, number: int, value: str) -> tuple[str, ...]:
        names: list[str] = []
        keys: set[str] = set()
        for part in _TAG_SEPARATORS.split(value):
            tag = " ".join(part.split())
            if not tag or name_key(tag) in keys:
                continue
            if len(tag) > self.limits.max_tag_chars:
                self._add(
                    number,
                    "tags",
                    f"tag '{_clip(tag)}' is {len(tag)} characters long (limit {self.limits.max_tag_chars})",
                )
                continue
            keys.add(name_key(tag))
            names.append(tag)
        if len(names) > self.limits.max_tags_per_row:
            self._add(number, "tags", f"{len(names)} tags (limit {self.limits.max_tags_per_row} per customer)")
        return tuple(names)

    def _check_unique(self, number: int, name: str, crm_id: str | None, wecom_id: str | None) -> None:
        for column, value, seen in (
            ("crm_id", crm_id, self.seen_crm),
            ("wecom_external_userid", wecom_id, self.seen_wecom),
        ):
            if value is None:
                continue
            if value in seen:
                self._add(
                    number,
                    column,
                    f"'{_clip(value)}' also appears in row {seen[value]}; each {column} must be unique",
                )
            else:
                seen[value] = number
        if name and crm_id is None and wecom_id is None:
            key = name_key(name)
            if key in self.seen_unkeyed_names:
                first = self.seen_unkeyed_names[key]
                self._add(
                    number,
                    "name",
                    f"'{_clip(name)}' also appears in row {first} and neither row has a crm_id or "
                    "wecom_external_userid; add one to tell them apart",
                )
            else:
                self.seen_unkeyed_names[key] = number


def _plain_start(raw: str) -> bool:
    """True when the first character alone shows a text cannot be formula-looking (the common case, decided
    without tagging.formula's scan): not white space, not invisible, not a formula starter."""
    first = raw[:1]
    return bool(first) and not first.isspace() and first not in FORMULA_STARTS and unicodedata.category(first) != "Cf"


def _is_blank(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _text(cell: Cell) -> str:
    """Cell value as the text a user would read in the sheet."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))  # 10086.0 from XLSX is the id 10086
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == time() else cell.isoformat(sep=" ")
    if isinstance(cell, date | time):
        return cell.isoformat()
    if isinstance(cell, _Formula):
        return cell.text
    return str(cell)


def _clip(value: str, limit: int = 40) -> str:
    """A value shortened for an error message, personal numbers masked so the message can be logged."""
    value = mask(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"
