"""The one small interface every format writer implements, and what they share. Nothing here knows
Django. Writers take columnar batches (Polars frames) and format whole columns at once."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar

import polars as pl

KINDS = ("text", "integer", "decimal", "float", "boolean", "date", "datetime", "time")
# Formula injection (docs/security.md). OWASP: a cell starting with = + - @ TAB or CR may run as a
# formula in Excel, LibreOffice or Google Sheets. Some applications skip leading whitespace, or read
# full-width and small-form look-alikes (＝ ＋ － ＠ ﹦ ﹢ ﹣ ﹫) and the minus sign − as the signs, so text
# is escaped when it starts with TAB or CR, or when its first character after any whitespace and
# invisible format characters (Unicode's category Cf, every one of them: soft hyphen, direction marks,
# embeddings and isolates, Arabic letter mark, invisible operators, tags...) is one of those signs.
# (Python's re and Polars' Rust regex read the pattern alike.)
FORMULA_SIGNS = "=+\\-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b\u2212"
WHITESPACE = "\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Unicode 15's category Cf (tests/test_formula_escaping.py checks it against unicodedata).
FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
SKIPPED_BEFORE_FORMULA = WHITESPACE + FORMAT_CHARACTERS
FORMULA_RISK_PATTERN = f"[\t\r]|[{SKIPPED_BEFORE_FORMULA}]*[{FORMULA_SIGNS}]"
FORMULA_RISK = re.compile(FORMULA_RISK_PATTERN)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    label: str
    kind: str = "text"
    # decimals: digits in all and after the point, where known (Parquet types them)
    precision: int | None = None
    scale: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Unknown column kind {self.kind!r}; expected one of {', '.join(KINDS)}.")


@dataclass(frozen=True)
class WriterOptions:
    escape_formulas: bool = True
    time_zone: dt.tzinfo = dt.UTC
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# Every character a risky text can start with: text starting otherwise needs no regular expression.
def formula_risk(text: str) -> bool:
    return bool(text) and FORMULA_RISK.match(text) is not None


# The frames writers take: one column per ColumnSpec, named after it, of the Polars type of its kind.
# Decimals travel as the text of their exact digits ("-12.50"), datetimes as microseconds in UTC.
DTYPES: dict[str, pl.DataType | type[pl.DataType]] = {
    "text": pl.String,
    "integer": pl.Int64,
    "decimal": pl.String,
    "float": pl.Float64,
    "boolean": pl.Boolean,
    "date": pl.Date,
    "datetime": pl.Datetime("us", "UTC"),
    "time": pl.Time,
}


# quantizing never rounds a decimal's whole digits away
EXACT = decimal.Context(prec=decimal.MAX_PREC)


def frame_from_rows(columns: Sequence[ColumnSpec], rows: Iterable[Sequence[Any]]) -> pl.DataFrame:
    """Python rows (values in column order) as the frame writers take: the slow way, for databases
    without a columnar driver, computed columns and tests."""
    values: list[Sequence[Any]] = list(zip(*rows, strict=True)) or [()] * len(columns)
    series = []
    for spec, column in zip(columns, values, strict=True):
        # to the declared places, as PostgreSQL gives them (SQLite: a float's digits)
        if spec.kind == "decimal":
            places = None if spec.scale is None else decimal.Decimal(1).scaleb(-spec.scale)
            column = [
                None if v is None else format(v if places is None else v.quantize(places, context=EXACT), "f")
                for v in column
            ]
        elif spec.kind == "datetime":
            column = [None if v is None else v.astimezone(dt.UTC).replace(tzinfo=None) for v in column]
            series.append(pl.Series(spec.name, column, dtype=pl.Datetime("us")).dt.replace_time_zone("UTC"))
            continue
        series.append(pl.Series(spec.name, column, dtype=DTYPES[spec.kind]))
    return pl.DataFrame(series)


def zone_name(zone: dt.tzinfo) -> str:
    """The IANA name of a zone (what Polars takes)."""
    return "UTC" if zone is dt.UTC else str(getattr(zone, "key", zone))


def iso_text(column: ColumnSpec, options: WriterOptions) -> pl.Expr:
    """Dates, times and datetimes as Python's isoformat() writes them: datetimes in the report's zone
    with offset, microseconds only when not zero. Other kinds as they are."""
    value = pl.col(column.name)
    # (".000000" can stand only where the microseconds are)
    if column.kind == "datetime":
        # the offset written as it is: twice as fast as looking it up
        if options.time_zone is dt.UTC:
            text = value.dt.replace_time_zone(None).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        else:
            text = value.dt.convert_time_zone(zone_name(options.time_zone)).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f%:z")
        return text.str.replace(".000000", "", literal=True)
    if column.kind == "date":
        return value.dt.to_string("%Y-%m-%d")
    if column.kind == "time":
        return value.dt.to_string("%H:%M:%S%.6f").str.replace(".000000", "", literal=True)
    return value


def changed_where(
    frame: pl.DataFrame,
    names: Sequence[str],
    where: Callable[[pl.Expr], pl.Expr],
    change: Callable[[pl.Series], pl.Series],
) -> pl.DataFrame:
    """The frame with change() applied to the values of the columns `names` that `where` holds for.
    Rules such as quoting or escaping touch few values: changing only those is cheaper than an
    expression computing both branches. The tests run as one select (its regular expressions
    compiled once, not once a column a batch), and only columns with a value to change are touched."""
    tests = frame.select(where(pl.col(name)).alias(name) for name in names)
    changed = []
    for name in names:
        if tests[name].any():
            at, values = tests[name].arg_true(), frame[name]
            changed.append(values.scatter(at, change(values.gather(at))))
    return frame.with_columns(changed) if changed else frame


def escape_formulas(frame: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """Text a spreadsheet may run as a formula gets a leading apostrophe (FORMULA_RISK), in the columns `names`."""
    return changed_where(
        frame, names, lambda text: text.str.contains(f"^(?:{FORMULA_RISK_PATTERN})"), lambda risky: "'" + risky
    )


def python_repr[T: (pl.Expr, pl.Series)](value: T) -> T:
    """Floats as Python's repr() writes them (shortest round-trip digits, exponents outside
    1e-4..1e16): per value in Python, the one slow step, for the rare float columns."""
    return value.map_elements(repr, return_dtype=pl.String)


@dataclass(frozen=True)
class SegmentInfo:
    """A written segment as the join sees it: where its bytes are, how many, its rows and meta."""

    name: str
    size: int
    rows: int
    meta: dict[str, Any] = field(default_factory=dict)


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
    open_segment(), write_batch() a batch at a time, close_segment() -> meta. Then assemble() lists
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

    def write_batch(self, frame: pl.DataFrame) -> None:
        """Write a batch of rows: a frame with a column per ColumnSpec (frame_from_rows shows the types)."""
        raise NotImplementedError

    def write_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Python rows, the slow way (tests, and whoever has rows rather than batches)."""
        self.write_batch(frame_from_rows(self.columns, rows))

    def close_segment(self) -> dict[str, Any]:
        """Flush the segment; return what assemble() will need of it (JSON-able), if anything."""
        return {}

    def assemble(self, segments: Sequence[SegmentInfo]) -> list[Piece]:
        """The final file as pieces, from the segments in order (fh is not used)."""
        return [piece for segment in segments for piece in whole(segment)]
