"""JSON (one streamed array of objects) and NDJSON (one object a line).

Datetimes are ISO 8601 with offset, in the report's time zone; dates and times ISO 8601; NULL is
null. Decimals are written as strings of their exact digits ("12.50"): a JSON number would be read
as a binary float by most parsers and lose cents on large amounts. The objects are written by
Polars' JSON encoder (or, for reports with float columns, put together from each member's text),
byte for byte what Python's json module writes (compact separators, ensure_ascii=False).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import polars as pl

from .base import ColumnSpec, Piece, SegmentInfo, Writer, changed_where, iso_text, whole

# What json escapes in a string (ensure_ascii=False): the quote, the backslash and control characters.
SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
ESCAPES = {chr(c): SHORT.get(chr(c), f"\\u{c:04x}") for c in range(0x20)} | SHORT


NEEDS_ESCAPE = '["\\\\\x00-\x1f]'


def json_escaped(frame: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """The text columns `names` as they stand inside a JSON string: the few values holding what json
    escapes are changed."""
    return changed_where(
        frame, names, lambda text: text.str.contains(NEEDS_ESCAPE), lambda text: text.str.replace_many(ESCAPES)
    )


class NdjsonWriter(Writer):
    extension = "ndjson"
    content_type = "application/x-ndjson"
    rows_per_second = 400_000
    row_start, row_end = "", "\n"

    def open_segment(self) -> None:
        self.floats = any(column.kind == "float" for column in self.columns)
        if not self.floats:
            # Polars' own JSON encoder writes the objects as json does (escapes, null, true/false,
            # integers: tested), a third less work than putting them together from their members' text.
            values = [iso_text(column, self.options).alias(column.name) for column in self.columns]
            self.line = pl.concat_str([pl.lit(self.row_start), pl.struct(values).struct.json_encode()]).alias("line")
            return
        # Floats as json writes them (NaN, Infinity, 1e-05), which Polars' encoder does not: each member's text.
        members = []
        for i, column in enumerate(self.columns):
            key = ("{" if i == 0 else ",") + json.dumps(column.name, ensure_ascii=False) + ":"
            members += [pl.lit(key), self.value(column).fill_null("null")]
        self.line = pl.concat_str([pl.lit(self.row_start), *members, pl.lit("}")]).alias("line")

    def value(self, column: ColumnSpec) -> pl.Expr:
        value = pl.col(column.name)
        if column.kind == "integer":
            return value.cast(pl.String)
        # json's own float text (Infinity, NaN and exponents as Python writes them)
        if column.kind == "float":
            return value.map_elements(json.dumps, return_dtype=pl.String)
        if column.kind == "boolean":
            return pl.when(value).then(pl.lit("true")).when(value.not_()).then(pl.lit("false"))
        # Text as json_escaped() made it; decimals, dates and times hold nothing json escapes.
        return pl.lit('"') + iso_text(column, self.options).cast(pl.String) + pl.lit('"')

    def write_batch(self, frame: pl.DataFrame) -> None:
        if frame.height:
            if self.floats:
                frame = json_escaped(frame, [c.name for c in self.columns if c.kind == "text"])
            frame.select(self.line).write_csv(
                self.fh, include_header=False, quote_style="never", line_terminator=self.row_end
            )


class JsonWriter(NdjsonWriter):
    """`[`, the rows separated by `,\\n`, `\\n]\\n`. Each row of a segment is written after a `,\\n`; the
    join leaves out the comma before the very first row."""

    extension = "json"
    content_type = "application/json"
    row_start, row_end = ",\n", ""

    def assemble(self, segments: Sequence[SegmentInfo]) -> list[Piece]:
        rows = [segment for segment in segments if segment.size]
        if not rows:
            return [b"[]\n"]
        first, *rest = rows
        return [b"[", *whole(first, start=1), *(piece for segment in rest for piece in whole(segment)), b"\n]\n"]
