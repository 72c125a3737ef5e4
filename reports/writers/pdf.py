"""PDF for reports of a bounded size: a table with the title, the filters used, the generation
time, page numbers and the header row repeated on every page (reportlab).

A PDF table is laid out as a whole: it is written as one segment that holds the whole file, and
its rows are kept until close_segment(); a run is refused when the report has more rows than
REPORTS_PDF_MAX_ROWS (when asked for, and again when it starts), so that stays bounded.
"""

from __future__ import annotations

import datetime as dt
from xml.sax.saxutils import escape

import polars as pl
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from .base import ColumnSpec, Writer, iso_text, python_repr

WEIGHTS = {"text": 3.0, "datetime": 3.3, "date": 1.4, "time": 1.2, "decimal": 1.4, "float": 1.4, "integer": 1.1,
           "boolean": 0.9}  # fmt: skip
MAX_CELL = 500  # characters shown per cell; a PDF is for reading, the full text is in CSV/XLSX
MAX_LINES = 30  # lines shown per cell: a row always fits on a page
CLIPPED = "… [clipped]"
CELL_PADDING = 6  # reportlab's default left + right padding of a table cell, in points


class PdfWriter(Writer):
    extension = "pdf"
    content_type = "application/pdf"
    laid_out_whole = True

    def open_segment(self) -> None:
        self.styles = getSampleStyleSheet()
        self.cell_style = self.styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
        self.rows: list[tuple] = []
        # A PDF runs no formulas: text stays as it is. Values as the CSV shows them; NULL empty.
        self.texts = [self.text(c).cast(pl.String).fill_null("") for c in self.columns]

    def text(self, column: ColumnSpec) -> pl.Expr:
        value = pl.col(column.name)
        if column.kind == "boolean":
            return pl.when(value).then(pl.lit("true")).when(value.not_()).then(pl.lit("false"))
        if column.kind == "float":
            return python_repr(value)
        if column.kind == "text":
            long = value.str.len_chars() > MAX_CELL
            return pl.when(long).then(value.str.slice(0, MAX_CELL) + pl.lit("…")).otherwise(value)
        return iso_text(column, self.options)

    def write_batch(self, frame: pl.DataFrame) -> None:
        self.rows.extend(frame.select(self.texts).rows())

    def paragraph(self, text: str, width: float):
        """A table cell: the text wrapped to the column, clipped with a marker to at most MAX_LINES
        lines' height, so that no row is taller than a page."""
        if not text:
            return ""
        cell = Paragraph(escape(text).replace("\n", "<br/>"), self.cell_style)
        if len(text) <= 60 and text.count("\n") < 10:  # short text cannot reach MAX_LINES
            return cell
        cut = len(text)
        while cell.wrap(width, 1e9)[1] > MAX_LINES * self.cell_style.leading:  # halve until it fits
            cut //= 2
            cell = Paragraph(escape(text[:cut].rstrip() + CLIPPED).replace("\n", "<br/>"), self.cell_style)
        return cell

    def close_segment(self) -> dict:
        title = self.options.title or "Report"
        filters = self.options.extra.get("filters") or "none"
        generated = dt.datetime.now(self.options.time_zone).strftime("%Y-%m-%d %H:%M %Z")
        doc = SimpleDocTemplate(self.fh, pagesize=landscape(A4), title=title, leftMargin=10 * mm,
                                rightMargin=10 * mm, topMargin=12 * mm, bottomMargin=14 * mm)  # fmt: skip
        header = [Paragraph(f"<b>{escape(c.label)}</b>", self.cell_style) for c in self.columns]
        weights = [WEIGHTS[c.kind] for c in self.columns]
        widths = [doc.width * w / sum(weights) for w in weights]
        inner = [w - 2 * CELL_PADDING for w in widths]
        body = [[self.paragraph(text, width) for text, width in zip(row, inner, strict=True)] for row in self.rows]
        table = LongTable([header, *body], colWidths=widths, repeatRows=1, hAlign="LEFT")
        table.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf4")),
            ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f7f9")]),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("FONTSIZE", (0, 0), (-1, -1), 7),
        ]))  # fmt: skip
        story = [
            Paragraph(escape(title), self.styles["Title"]),
            Paragraph(
                f"Filters: {escape(filters)} · Generated {generated} · {len(self.rows):,} rows", self.styles["Normal"]
            ),  # fmt: skip
            Spacer(1, 4 * mm),
            table,
        ]

        def number_page(canvas, doc):
            canvas.saveState()
            canvas.setFont("Helvetica", 8)
            canvas.drawRightString(doc.pagesize[0] - 10 * mm, 7 * mm, f"{title} · page {doc.page}")
            canvas.restoreState()

        doc.build(story, onFirstPage=number_page, onLaterPages=number_page)
        self.rows = []
        return {}
