"""Format writers, by format name. Each takes a binary file object and rows; none knows Django."""

from dataclasses import dataclass

from .base import ColumnSpec, Writer, WriterOptions
from .csv import CsvWriter, ExcelCsvWriter
from .json import JsonWriter, NdjsonWriter
from .pdf import PdfWriter
from .xlsx_stream import StreamingXlsxWriter


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
        # reports.writers.xlsx.XlsxWriter (xlsxwriter) makes the same file, slower: the fallback.
        Format("xlsx", "Excel (XLSX)", StreamingXlsxWriter),
        Format("json", "JSON", JsonWriter),
        Format("ndjson", "NDJSON", NdjsonWriter),
        Format("pdf", "PDF", PdfWriter),
    ]
}

__all__ = ["FORMATS", "ColumnSpec", "Format", "Writer", "WriterOptions"]
