"""The one small interface every format writer implements. Nothing here knows Django."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

KINDS = ("text", "integer", "decimal", "float", "boolean", "date", "datetime", "time")
# Formula injection (README, "Security"). OWASP: a cell starting with = + - @ TAB or CR may run as a
# formula in Excel, LibreOffice or Google Sheets. Some applications skip leading whitespace, or read
# full-width and small-form look-alikes (＝ ＋ － ＠ ﹦ ﹢ ﹣ ﹫) and the minus sign − as the signs, so text
# is escaped when it starts with TAB or CR, or when its first character after any whitespace and
# invisible format characters is one of those signs. The classes are shared with the CSV written by
# PostgreSQL (reports.fastpath), whose regular expressions read them alike.
FORMULA_SIGNS = "=+\\-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b\u2212"
SKIPPED_BEFORE_FORMULA = (
    "\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u180e\u2000-\u200f\u2028\u2029\u202f\u205f\u2060\u3000\ufeff"
)
FORMULA_RISK_PATTERN = f"[\t\r]|[{SKIPPED_BEFORE_FORMULA}]*[{FORMULA_SIGNS}]"
FORMULA_RISK = re.compile(FORMULA_RISK_PATTERN)


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


# Every character a risky text can start with: text starting otherwise needs no regular expression.
FORMULA_FIRST_CHARACTERS = frozenset(
    re.findall(f"[{SKIPPED_BEFORE_FORMULA}{FORMULA_SIGNS}]", "".join(map(chr, range(0x10000))))
)


def formula_risk(text: str) -> bool:
    return bool(text) and text[0] in FORMULA_FIRST_CHARACTERS and FORMULA_RISK.match(text) is not None


def row_formatter(columns: Sequence[ColumnSpec], options: WriterOptions, *, booleans: bool, decimals: bool,
                  escape: bool) -> Callable[[Sequence], Sequence]:  # fmt: skip
    """A function turning a row's values into text where the format needs it: datetimes in the
    report's zone with offset, dates and times in ISO 8601, and optionally formula-escaped text,
    booleans (true/false) and decimals (plain digits). Other values pass through untouched.

    It is generated once per column layout as one expression (`lambda r: (r[0], f1(r[1]), ...)`),
    which is the cheapest per-row shape in CPython: this runs for every row of every report.
    """
    tz = options.time_zone

    def datetime_text(v):
        if v is None:
            return None
        return (v if v.tzinfo is tz else v.astimezone(tz)).isoformat()

    by_kind: dict[str, Callable] = {
        "datetime": datetime_text,
        "date": lambda v: None if v is None else v.isoformat(),
        "time": lambda v: None if v is None else v.isoformat(),
    }
    if booleans:
        by_kind["boolean"] = lambda v: None if v is None else ("true" if v else "false")
    if decimals:
        by_kind["decimal"] = lambda v: None if v is None else format(v, "f")
    if escape:
        first, risky = FORMULA_FIRST_CHARACTERS, FORMULA_RISK.match
        by_kind["text"] = lambda v: "'" + v if v.__class__ is str and v and v[0] in first and risky(v) else v
    functions = {f"f{i}": by_kind[c.kind] for i, c in enumerate(columns) if c.kind in by_kind}
    if not functions:
        return lambda row: row
    cells = ", ".join(f"f{i}(r[{i}])" if f"f{i}" in functions else f"r[{i}]" for i in range(len(columns)))
    return eval(f"lambda r: ({cells},)", functions)  # noqa: S307 - built from column indexes only


@dataclass(frozen=True)
class SegmentInfo:
    """A written segment as the join sees it: where its bytes are, how many, its rows and meta."""

    name: str
    size: int
    rows: int
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Slice:
    """Bytes `start` to `end` (exclusive) of a stored segment: a piece of the final file by reference."""

    name: str
    start: int
    end: int


Piece = bytes | Slice


def cut_positions(total: int, every: int, sheet_rows: int | None = None) -> list[int]:
    """Where `total` rows are cut into segments of at most `every` rows that never straddle a sheet of
    `sheet_rows` rows: the row counts before each cut, in order (none for a single segment)."""
    cuts = set(range(every, total, every))
    if sheet_rows:
        cuts.update(range(sheet_rows, total, sheet_rows))
    return sorted(cuts)


def whole(segment: SegmentInfo, start: int = 0) -> list[Piece]:
    """A segment's bytes from `start` as a piece, or none if that is nothing."""
    return [Slice(segment.name, start, segment.size)] if segment.size > start else []


class Writer:
    """Writes rows (sequences in column order) in segments, and says how the segments make one file.

    A report's rows are cut into key-range segments that any worker writes on its own:
    open_segment(), write_rows() a chunk at a time, close_segment() -> meta. Then assemble() lists
    the final file's pieces: bytes the join writes (a header, a footer) and slices of the segments,
    in order, so that a storage may put the file together without the bytes passing through the
    worker (S3's UploadPartCopy). The file is the same however the rows were cut.
    """

    extension: ClassVar[str] = ""
    content_type: ClassVar[str] = "application/octet-stream"
    # Formats laid out as a whole (a PDF table) are written as one segment holding the whole file,
    # which keeps every row until close_segment(): runs of them are capped.
    laid_out_whole: ClassVar[bool] = False
    # Rows per sheet, where the format has sheets (XLSX): segments never straddle two.
    sheet_rows: ClassVar[int | None] = None
    # About how many rows a second one worker writes in this format (12 columns, one core; measured
    # by the benchmark): segments are sized to take REPORTS_SEGMENT_SECONDS.
    rows_per_second: ClassVar[int] = 50_000

    def __init__(self, fh: BinaryIO, columns: Sequence[ColumnSpec], options: WriterOptions | None = None):
        self.fh = fh
        self.columns = list(columns)
        self.options = options or WriterOptions()

    def open_segment(self) -> None:
        """Get ready to write one segment's rows into fh."""

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        raise NotImplementedError

    def close_segment(self) -> dict:
        """Flush the segment; return what assemble() will need of it (JSON-able), if anything."""
        return {}

    def assemble(self, segments: Sequence[SegmentInfo]) -> list[Piece]:
        """The final file as pieces, from the segments in order (fh is not used)."""
        return [piece for segment in segments for piece in whole(segment)]
