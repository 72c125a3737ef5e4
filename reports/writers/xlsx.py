"""XLSX with xlsxwriter in constant-memory mode: typed cells, a bold frozen header, column widths.

The fallback for reports.writers.xlsx_stream (the format's writer), which makes the same file faster;
both pass the same read-back tests.

Past Excel's last row the rows continue on a new sheet with the header repeated (never a silent
stop). Text longer than a cell may hold is cut with a visible marker. User text never becomes a
formula or a link. Excel has no time zones: datetimes are written in the report's zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xlsxwriter

from .base import Writer

EXCEL_MAX_ROWS = 1_048_576  # including the header row
CELL_LIMIT = 32_767
TRUNCATED = "…[truncated]"
WIDTHS = {"datetime": 20, "date": 12, "time": 10, "boolean": 8, "integer": 12, "decimal": 14, "float": 14}
NUMBER_FORMATS = {"datetime": "yyyy-mm-dd hh:mm:ss", "date": "yyyy-mm-dd", "time": "hh:mm:ss", "decimal": "0.00"}


def column_width(column) -> int:
    return max(WIDTHS.get(column.kind, 24), min(len(column.label) + 2, 40))


def sheet_title(title: str, number: int) -> str:
    """A name Excel accepts: at most 31 characters, none of []:*?/\\ or control characters, no
    apostrophe at either end, not "History"; "Orders", then "Orders 2", ... (unique: numbered)."""
    cleaned = "".join(" " if ch in "[]:*?/\\" or not ch.isprintable() else ch for ch in title or "")
    base = " ".join(cleaned.split())[:25].strip(" '") or "Report"
    if base.casefold() == "history":  # reserved by Excel
        base = "History sheet"
    return f"{base} {number}" if number > 1 else base


class XlsxWriter(Writer):
    extension = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    max_rows = EXCEL_MAX_ROWS  # per sheet, header included; tests set a small one

    def open(self) -> None:
        self.book = xlsxwriter.Workbook(
            self.fh,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "remove_timezone": True,
                "in_memory": False,
            },
        )
        self.header_format = self.book.add_format({"bold": True, "bottom": 1})
        self.formats = [
            self.book.add_format({"num_format": NUMBER_FORMATS[c.kind]}) if c.kind in NUMBER_FORMATS else None
            for c in self.columns
        ]
        self.tz = self.options.time_zone
        self.sheets = 0
        self._new_sheet()

    def _new_sheet(self) -> None:
        self.sheets += 1
        self.sheet = self.book.add_worksheet(sheet_title(self.options.title, self.sheets))
        for index, column in enumerate(self.columns):
            self.sheet.set_column(index, index, column_width(column), self.formats[index])
        self.sheet.write_row(0, 0, [c.label for c in self.columns], self.header_format)
        self.sheet.freeze_panes(1, 0)
        self.row = 1

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        kinds = [c.kind for c in self.columns]
        formats = self.formats
        for values in rows:
            if self.row >= self.max_rows:
                self._new_sheet()
            write = self.sheet.write
            for col, value in enumerate(values):
                if value is None:
                    continue
                kind = kinds[col]
                if kind == "text":
                    value = str(value)
                    if len(value) > CELL_LIMIT:
                        value = value[: CELL_LIMIT - len(TRUNCATED)] + TRUNCATED
                    self.sheet.write_string(self.row, col, value)
                elif kind == "decimal":
                    self.sheet.write_number(self.row, col, float(value), formats[col])
                elif kind == "datetime":
                    self.sheet.write_datetime(self.row, col, value.astimezone(self.tz), formats[col])
                else:
                    write(self.row, col, value, formats[col])
            self.row += 1

    def close(self) -> None:
        self.book.close()
