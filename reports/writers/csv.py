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

from .base import ColumnSpec, Piece, SegmentInfo, Writer, escape_formulas, iso_text, python_repr, whole

BOM = "\ufeff"


class CsvWriter(Writer):
    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    rows_per_second = 400_000
    bom = False

    def open_segment(self) -> None:
        self.delimiter = self.options.extra.get("delimiter", ",")
        self.line = pl.concat_str([self.cell(c) for c in self.columns], separator=self.delimiter).alias("line")

    def cell(self, column: ColumnSpec) -> pl.Expr:
        """A column's cells as text: integers and decimals as digits, booleans true/false, datetimes
        ISO 8601 with offset, NULL empty; text quoted where it must be, escaped if it could run."""
        value = pl.col(column.name)
        if column.kind == "boolean":
            return pl.when(value).then(pl.lit("true")).when(value.not_()).then(pl.lit("false")).otherwise(pl.lit(""))
        if column.kind == "text":
            text = escape_formulas(value) if self.options.escape_formulas else value
            return self.quoted(text).fill_null("")
        if column.kind == "float":
            return self.quoted(python_repr(value)).fill_null("")
        return iso_text(column, self.options).cast(pl.String).fill_null("")

    def quoted(self, text: pl.Expr) -> pl.Expr:
        """Quoted (quotes doubled) when it holds the delimiter, a quote or a line break, as csv does."""
        special = text.str.contains(f'[{re.escape(self.delimiter)}"\r\n]')
        return (
            pl.when(special)
            .then(pl.lit('"') + text.str.replace_all('"', '""', literal=True) + pl.lit('"'))
            .otherwise(text)
        )

    def write_batch(self, frame: pl.DataFrame) -> None:
        if frame.height:
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
