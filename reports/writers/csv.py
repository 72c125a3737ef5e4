"""CSV: RFC 4180 quoting and CRLF line ends, UTF-8 with an optional BOM, formula-safe text cells.

A batch is formatted a column at a time (Polars expressions, the bytes of Python's csv module with
QUOTE_MINIMAL) and written as one block. A segment is its rows; the join puts the header first.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence

import polars as pl

from .base import ColumnSpec, Piece, SegmentInfo, Writer, changed_where, escape_formulas, iso_text, python_repr, whole

BOM = "\ufeff"


def quoted(text: pl.Series) -> pl.Series:
    return '"' + text.str.replace_all('"', '""', literal=True) + '"'


class CsvWriter(Writer):
    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    rows_per_second = 450_000
    bom = False

    def open_segment(self) -> None:
        self.delimiter = self.options.extra.get("delimiter", ",")
        self.special = f'[{re.escape(self.delimiter)}"\r\n]'
        self.line = pl.concat_str([self.cell(c) for c in self.columns], separator=self.delimiter).alias("line")

    def cell(self, column: ColumnSpec) -> pl.Expr:
        """A column's cells as text: integers and decimals as digits, booleans true/false, datetimes
        ISO 8601 with offset, NULL empty. Text (and floats) come as text_cells() made them."""
        value = pl.col(column.name)
        if column.kind == "boolean":
            return pl.when(value).then(pl.lit("true")).when(value.not_()).then(pl.lit("false")).otherwise(pl.lit(""))
        if column.kind in ("text", "float"):
            return value.fill_null("")
        return iso_text(column, self.options).cast(pl.String).fill_null("")

    def text_cells(self, values: pl.Series, kind: str) -> pl.Series:
        """Text escaped if it could run, floats as repr() writes them; quoted (quotes doubled) where
        they hold the delimiter, a quote or a line break, as Python's csv module does."""
        if kind == "float":
            text = python_repr(values)
        else:
            text = escape_formulas(values) if self.options.escape_formulas else values
        return changed_where(text, text.str.contains(self.special), quoted)

    def write_batch(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        frame = frame.with_columns(self.text_cells(frame[c.name], c.kind) for c in self.columns
                                   if c.kind in ("text", "float"))  # fmt: skip
        lines = frame.select(self.line)
        if len(self.columns) == 1:  # csv quotes a lone empty field, or the row would vanish
            lines = lines.select(pl.when(pl.col("line") == "").then(pl.lit('""')).otherwise(pl.col("line")))
        lines.write_csv(self.fh, include_header=False, quote_style="never", line_terminator="\r\n")

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
