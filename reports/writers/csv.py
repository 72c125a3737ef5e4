"""CSV: RFC 4180 quoting and CRLF line ends, UTF-8 with an optional BOM, formula-safe text cells."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence

from .base import Writer, escape_formula

BOM = "\ufeff"


def _boolean(value):
    return value if value is None else ("true" if value else "false")


class CsvWriter(Writer):
    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    bom = False

    def open(self) -> None:
        self.text = io.TextIOWrapper(self.fh, encoding="utf-8", newline="", write_through=True)
        delimiter = self.options.extra.get("delimiter", ",")
        self.writer = csv.writer(self.text, delimiter=delimiter, lineterminator="\r\n")
        self.formatters = self._formatters()
        if self.bom:
            self.text.write(BOM)
        self.writer.writerow([column.label for column in self.columns])

    def _formatters(self) -> list[tuple[int, Callable]]:
        """(index, function) for every column whose value needs more than str()."""
        tz = self.options.time_zone
        by_kind = {
            "boolean": _boolean,
            "datetime": lambda v: v if v is None else v.astimezone(tz).isoformat(),
            "date": lambda v: v if v is None else v.isoformat(),
            "time": lambda v: v if v is None else v.isoformat(),
        }
        if self.options.escape_formulas:
            by_kind["text"] = lambda v: escape_formula(v) if isinstance(v, str) else v
        return [(i, by_kind[c.kind]) for i, c in enumerate(self.columns) if c.kind in by_kind]

    def format_row(self, row: Sequence) -> Sequence:
        if not self.formatters:
            return row
        row = list(row)
        for index, formatter in self.formatters:
            row[index] = formatter(row[index])
        return row

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        self.writer.writerows(map(self.format_row, rows))

    def close(self) -> None:
        self.text.flush()
        self.text.detach()


class ExcelCsvWriter(CsvWriter):
    """The same CSV with a UTF-8 byte-order mark, so Excel reads accents and emoji right."""

    bom = True
