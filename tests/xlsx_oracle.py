"""The tests' oracle for XLSX: the same workbook made by xlsxwriter in constant-memory mode (typed
cells, a bold frozen header, column widths, a new sheet past the row limit, long text cut with a
marker, text never a formula or a link). reports.writers.xlsx must read back the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xlsxwriter

from reports.writers.base import Writer
from reports.writers.xlsx import CELL_LIMIT, EXCEL_MAX_ROWS, TRUNCATED, column_width, sheet_title

NUMBER_FORMATS = {"datetime": "yyyy-mm-dd hh:mm:ss", "date": "yyyy-mm-dd", "time": "hh:mm:ss", "decimal": "0.00"}


class OracleXlsxWriter(Writer):
    extension = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    # data rows per sheet, under the header; tests set a small one
    sheet_rows = EXCEL_MAX_ROWS - 1

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
            if self.row > self.sheet_rows:
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
