"""The one small interface every format writer implements. Nothing here knows Django."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

KINDS = ("text", "integer", "decimal", "float", "boolean", "date", "datetime", "time")
# OWASP: a cell starting with one of these may run as a formula in Excel, LibreOffice or Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    label: str
    kind: str = "text"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown column kind {self.kind!r}; expected one of {', '.join(KINDS)}.")


@dataclass(frozen=True)
class WriterOptions:
    escape_formulas: bool = True
    time_zone: dt.tzinfo = dt.UTC
    title: str = ""
    extra: dict = field(default_factory=dict)


def escape_formula(value: str) -> str:
    if value and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def text_formatters(columns: Sequence[ColumnSpec], options: WriterOptions, *, booleans: bool, decimals: bool
                    ) -> list[tuple[int, Callable]]:  # fmt: skip
    """(index, function) for each column whose values must become text: datetimes in the
    report's zone with offset, dates and times in ISO 8601, formula-escaped text, and optionally
    booleans (true/false) and decimals (exact digits)."""
    tz = options.time_zone
    by_kind: dict[str, Callable] = {
        "datetime": lambda v: v if v is None else v.astimezone(tz).isoformat(),
        "date": lambda v: v if v is None else v.isoformat(),
        "time": lambda v: v if v is None else v.isoformat(),
    }
    if booleans:
        by_kind["boolean"] = lambda v: v if v is None else ("true" if v else "false")
    if decimals:
        by_kind["decimal"] = lambda v: v if v is None else format(v, "f")
    if options.escape_formulas:
        by_kind["text"] = lambda v: escape_formula(v) if isinstance(v, str) else v
    return [(i, by_kind[c.kind]) for i, c in enumerate(columns) if c.kind in by_kind]


def apply_formatters(formatters: list[tuple[int, Callable]], row: Sequence) -> Sequence:
    if not formatters:
        return row
    row = list(row)
    for index, formatter in formatters:
        row[index] = formatter(row[index])
    return row


class Writer:
    """Writes a header, then rows (sequences in column order), into a binary file object."""

    extension: ClassVar[str] = ""
    content_type: ClassVar[str] = "application/octet-stream"

    def __init__(self, fh: BinaryIO, columns: Sequence[ColumnSpec], options: WriterOptions | None = None):
        self.fh = fh
        self.columns = list(columns)
        self.options = options or WriterOptions()

    def open(self) -> None:
        """Write whatever comes before the first row (a header, an opening bracket)."""

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Write whatever comes after the last row and flush; the file object stays open."""
