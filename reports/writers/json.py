"""JSON (one streamed array of objects) and NDJSON (one object a line).

Datetimes are ISO 8601 with offset, in the report's time zone; dates and times ISO 8601; NULL is
null. Decimals are written as strings of their exact digits ("12.50"): a JSON number would be read
as a binary float by most parsers and lose cents on large amounts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from .base import Piece, SegmentInfo, Writer, row_formatter, whole


class NdjsonWriter(Writer):
    extension = "ndjson"
    content_type = "application/x-ndjson"
    rows_per_second = 65_000
    row_start, row_end = "", "\n"

    def open_segment(self) -> None:
        self.names = [c.name for c in self.columns]
        self.encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
        # JSON has no formulas: text stays exactly as it is in the database.
        self.format_row = row_formatter(self.columns, self.options, booleans=False, decimals=True, escape=False)

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        names, encode, format_row = self.names, self.encode, self.format_row
        lines = [encode(dict(zip(names, format_row(row), strict=True))) for row in rows]
        if lines:
            joint = self.row_end + self.row_start
            self.fh.write((self.row_start + joint.join(lines) + self.row_end).encode())


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
