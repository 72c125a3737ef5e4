"""PDF for reports of a bounded size: a table with the title, the filters used, the generation
time, page numbers and the header row repeated on every page (reportlab).

A PDF table is laid out as a whole, so the rows are held until close(); the request is refused up
front when a report has more rows than REPORTS_PDF_MAX_ROWS, so that stays bounded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from .base import Writer, row_formatter

WEIGHTS = {"text": 3.0, "datetime": 3.3, "date": 1.4, "time": 1.2, "decimal": 1.4, "float": 1.4, "integer": 1.1,
           "boolean": 0.9}  # fmt: skip
MAX_CELL = 500  # characters shown per cell; a PDF is for reading, the full text is in CSV/XLSX


class PdfWriter(Writer):
    extension = "pdf"
    content_type = "application/pdf"

    def open(self) -> None:
        # A PDF runs no formulas: text stays as it is.
        self.format_row = row_formatter(self.columns, self.options, booleans=True, decimals=True, escape=False)
        self.styles = getSampleStyleSheet()
        self.cell_style = self.styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
        self.rows: list[list] = []

    def write_rows(self, rows: Iterable[Sequence]) -> None:
        self.rows.extend(self._cells(self.format_row(row)) for row in rows)

    def _cells(self, row: Sequence) -> list:
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            if len(text) > MAX_CELL:
                text = text[:MAX_CELL] + "…"
            cells.append(Paragraph(escape(text).replace("\n", "<br/>"), self.cell_style) if text else "")
        return cells

    def close(self) -> None:
        title = self.options.title or "Report"
        filters = self.options.extra.get("filters") or "none"
        generated = dt.datetime.now(self.options.time_zone).strftime("%Y-%m-%d %H:%M %Z")
        doc = SimpleDocTemplate(self.fh, pagesize=landscape(A4), title=title, leftMargin=10 * mm,
                                rightMargin=10 * mm, topMargin=12 * mm, bottomMargin=14 * mm)  # fmt: skip
        header = [Paragraph(f"<b>{escape(c.label)}</b>", self.cell_style) for c in self.columns]
        weights = [WEIGHTS[c.kind] for c in self.columns]
        widths = [doc.width * w / sum(weights) for w in weights]
        table = LongTable([header, *self.rows], colWidths=widths, repeatRows=1, hAlign="LEFT")
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
