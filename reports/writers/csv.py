"""CSV: RFC 4180 quoting and CRLF line ends, UTF-8 with an optional BOM, formula-safe text cells.

A batch is written by Polars' CSV writer, with the few cells it would write otherwise than Python's
csv module (QUOTE_MINIMAL) made text first: the same bytes. A segment is its rows; the join puts the
header first.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import polars as pl

from .base import ColumnSpec, Piece, SegmentInfo, Writer, escape_formulas, iso_text, python_repr, whole

BOM = "\ufeff"


class CsvWriter(Writer):
    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    rows_per_second = 450_000
    bom = False

    def open_segment(self) -> None:
        self.delimiter = self.options.extra.get("delimiter", ",")
        if len(self.delimiter.encode()) != 1 or self.delimiter in '"\r\n':
            raise ValueError(
                f"A CSV delimiter is one ASCII character other than a quote or a line break, not {self.delimiter!r}."
            )
        # Cells as text where Polars' own writer would not write what Python's csv module does: datetimes
        # (isoformat's microsecond rule), floats (repr), formula-like text; empty text made NULL, which
        # is written unquoted (Polars quotes an empty string, csv does not).
        self.cells = [
            self.cell(c).alias(c.name) for c in self.columns if c.kind not in ("integer", "boolean", "decimal")
        ]
        # A row of one empty cell is written as "" (as csv does), else it would vanish as an empty line.
        self.null = '""' if len(self.columns) == 1 else ""

    def cell(self, column: ColumnSpec) -> pl.Expr:
        value = pl.col(column.name)
        if column.kind == "text":
            return pl.when(value != "").then(value)
        if column.kind == "float":
            return python_repr(value)
        return iso_text(column, self.options)

    def write_batch(self, frame: pl.DataFrame) -> None:
        """The batch in Polars' CSV writer, quoting as csv's QUOTE_MINIMAL does: cells holding the
        delimiter, a quote or a line break are quoted, quotes doubled; NULL is an empty cell, integers
        and decimals their digits, booleans true/false."""
        if not frame.height:
            return
        if self.options.escape_formulas:
            frame = escape_formulas(frame, [c.name for c in self.columns if c.kind == "text"])
        frame.select(pl.col(c.name) for c in self.columns).with_columns(self.cells).write_csv(
            self.fh,
            include_header=False,
            separator=self.delimiter,
            quote_style="necessary",
            null_value=self.null,
            line_terminator="\r\n",
        )

    def header(self) -> bytes:
        text = io.StringIO(newline="")
        text.write(BOM if self.bom else "")
        csv.writer(text, delimiter=self.delimiter, lineterminator="\r\n").writerow([c.label for c in self.columns])
        return text.getvalue().encode()

    def assemble(self, segments: Sequence[SegmentInfo]) -> list[Piece]:
        self.open_segment()
        return [self.header(), *(piece for segment in segments for piece in whole(segment))]


class ExcelCsvWriter(CsvWriter):
    """The same CSV with a UTF-8 byte-order mark, so Excel reads accents and emoji right."""

    bom = True
