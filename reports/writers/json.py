"""JSON (one streamed array of objects) and NDJSON (one object a line).

Datetimes are ISO 8601 with offset, in the report's time zone; dates and times ISO 8601; NULL is
null. Decimals are written as strings of their exact digits ("12.50"): a JSON number would be read
as a binary float by most parsers and lose cents on large amounts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from .base import Writer, row_formatter


class NdjsonWriter(Writer):
    extension = "ndjson"
    content_type = "application/x-ndjson"
    splittable = True

    def open(self) -> None:
        self.open_part()

    def open_part(self) -> None:
        self.names = [c.name for c in self.columns]
        self.encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
        # JSON has no formulas: text stays exactly as it is in the database.
        self.format_row = row_formatter(self.columns, self.options, booleans=False, decimals=True, escape=False)
        self.first = True

    def encode_rows(self, rows: Iterable[Sequence]) -> list[str]:
        names, encode, format_row = self.names, self.encode, self.format_row
        return [encode(dict(zip(names, format_row(row), strict=True))) for row in rows]

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        lines = self.encode_rows(rows)
        if lines:
            self.fh.write(("\n".join(lines) + "\n").encode())


class JsonWriter(NdjsonWriter):
    extension = "json"
    content_type = "application/json"

    def open(self) -> None:
        self.open_part()
        self.fh.write(b"[")

    def append_part(self, part) -> None:
        # A part is its rows as this writer writes them after "[": "\n{...},\n{...}". Between two
        # parts goes the comma the first part's last row would have had.
        head = part.read(1)
        if head:
            self.fh.write(head if self.first else b"," + head)
            self.first = False
            super().append_part(part)

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        lines = self.encode_rows(rows)
        if lines:
            prefix = "\n" if self.first else ",\n"
            self.first = False
            self.fh.write((prefix + ",\n".join(lines)).encode())

    def close(self) -> None:
        self.fh.write(b"\n]\n" if not self.first else b"]\n")
