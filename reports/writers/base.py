"""The one small interface every format writer implements. Nothing here knows Django."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
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
