"""Format writers, by format name. Each takes a binary file object and rows; none knows Django."""

import io
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from .base import ColumnSpec, Piece, SegmentInfo, Slice, Writer, WriterOptions, cut_positions
from .csv import CsvWriter, ExcelCsvWriter
from .json import JsonWriter, NdjsonWriter
from .parquet import ParquetWriter
from .pdf import PdfWriter
from .xlsx import XlsxWriter


@dataclass(frozen=True)
class Format:
    name: str
    label: str
    writer_class: type[Writer]

    @property
    def extension(self) -> str:
        return self.writer_class.extension

    @property
    def content_type(self) -> str:
        return self.writer_class.content_type


FORMATS: dict[str, Format] = {
    f.name: f
    for f in [
        Format("csv", "CSV", CsvWriter),
        Format("csv_excel", "CSV for Excel", ExcelCsvWriter),
        Format("xlsx", "Excel (XLSX)", XlsxWriter),
        Format("json", "JSON", JsonWriter),
        Format("ndjson", "NDJSON", NdjsonWriter),
        Format("parquet", "Parquet", ParquetWriter),
        Format("pdf", "PDF", PdfWriter),
    ]
}


def write_file(
    writer_class: type[Writer],
    fh: BinaryIO,
    columns: Sequence[ColumnSpec],
    rows: Iterable[Sequence[Any]],
    options: WriterOptions | None = None,
    *,
    segment_rows: int | None = None,
) -> None:
    """Write a whole file of `rows` into fh in this process, through segments of `segment_rows` rows
    (one segment if None) held in memory: for small files and tests; reports.pipeline streams."""
    rows = list(rows)
    cuts = (
        []
        if writer_class.laid_out_whole
        else cut_positions(len(rows), segment_rows or len(rows) or 1, writer_class.sheet_rows)
    )
    written: dict[str, bytes] = {}
    segments: list[SegmentInfo] = []
    for start, end in itertools.pairwise([0, *cuts, len(rows)]):
        buffer = io.BytesIO()
        writer = writer_class(buffer, columns, options)
        writer.open_segment()
        writer.write_rows(rows[start:end])
        meta = writer.close_segment()
        name = f"segment-{len(segments)}"
        written[name] = buffer.getvalue()
        segments.append(SegmentInfo(name, len(written[name]), end - start, meta))
    join_in_memory(writer_class(fh, columns, options), segments, written)


def join_in_memory(joiner: Writer, segments: Sequence[SegmentInfo], written: dict[str, bytes]) -> None:
    """Join segments whose bytes are in `written` (by name) into the joiner's file object."""
    for piece in joiner.assemble(segments):
        joiner.fh.write(piece if isinstance(piece, bytes) else written[piece.name][piece.start : piece.end])


__all__ = [
    "FORMATS",
    "ColumnSpec",
    "Format",
    "Piece",
    "SegmentInfo",
    "Slice",
    "Writer",
    "WriterOptions",
    "join_in_memory",
    "write_file",
]
