"""LibreOffice, a second reader beside openpyxl, opens the XLSX the segments make: deflate streams
joined, rows without numbers, sheets rolled over (Debian's libreoffice-calc-nogui).

(ZIP64, needed only past 4 GiB, is read by openpyxl and Python's zipfile in tests/test_writers.py;
LibreOffice 7.4 reads no ZIP64 central records, whoever wrote them.)"""

import csv
import datetime as dt
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from reports.writers import ColumnSpec, WriterOptions, write_file
from reports.writers.xlsx import XlsxWriter

pytestmark = [pytest.mark.slow]
SOFFICE = shutil.which("soffice") or "/usr/bin/soffice"
COLUMNS = [
    ColumnSpec("id", "Id", "integer"),
    ColumnSpec("note", "Note"),
    ColumnSpec("amount", "Amount", "decimal"),
    ColumnSpec("at", "At", "datetime"),
    ColumnSpec("paid", "Paid", "boolean"),
]
NOTES = ["plain", "=1+1", "a & b <c>", "ünï 🎉", 'quote "me"', "line\nbreak", "_x0041_", "tab\there", ""]


class SmallSheets(XlsxWriter):
    sheet_rows = 7


def rows(count: int) -> list[tuple]:
    at = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    return [
        (i, NOTES[i % len(NOTES)], Decimal(f"{i}.25"), at + dt.timedelta(hours=i), i % 2 == 0) for i in range(count)
    ]


def libreoffice_sheets(tmp_path: Path, writer_class, count: int) -> dict[str, list[list[str]]]:
    """The workbook's sheets as LibreOffice reads them (each exported to CSV)."""
    book = tmp_path / "book.xlsx"
    with book.open("wb") as fh:
        write_file(writer_class, fh, COLUMNS, rows(count), WriterOptions(title="Orders"), segment_rows=3)
    subprocess.run(
        [
            SOFFICE,
            "--headless",
            f"-env:UserInstallation=file://{tmp_path / 'profile'}",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
            "--outdir",
            str(tmp_path),
            str(book),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # Orders, Orders 2, ...
    paths = sorted(tmp_path.glob("book-*.csv"), key=lambda p: (len(p.stem), p.stem))
    return {path.stem.removeprefix("book-"): list(csv.reader(path.open(newline=""))) for path in paths}


def expected(row: tuple) -> list[str]:
    id_, note, amount, at, paid = row
    return [str(id_), note, f"{amount.normalize():f}", at.strftime("%Y-%m-%d %H:%M:%S"), "TRUE" if paid else "FALSE"]


def test_libreoffice_reads_every_value_of_a_segmented_workbook(tmp_path):
    sheets = libreoffice_sheets(tmp_path, XlsxWriter, 20)
    assert list(sheets) == ["Orders"]
    assert sheets["Orders"][0] == ["Id", "Note", "Amount", "At", "Paid"]
    assert sheets["Orders"][1:] == [expected(row) for row in rows(20)]


def test_libreoffice_sees_the_rows_roll_over_to_new_sheets(tmp_path):
    sheets = libreoffice_sheets(tmp_path, SmallSheets, 20)
    assert list(sheets) == ["Orders", "Orders 2", "Orders 3"]
    assert [[r[0] for r in sheet[1:]] for sheet in sheets.values()] == [
        [str(i) for i in range(0, 7)],
        [str(i) for i in range(7, 14)],
        [str(i) for i in range(14, 20)],
    ]
    assert all(sheet[0][0] == "Id" for sheet in sheets.values())
