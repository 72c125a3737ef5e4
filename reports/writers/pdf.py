"""PDF for reports of a bounded size: a table with the title, the filters used, the generation
time, page numbers and the header row repeated on every page (reportlab).

A PDF table is laid out as a whole: it is written as one segment that holds the whole file, and
its rows are kept until close_segment(); a run is refused when the report has more rows than
REPORTS_PDF_MAX_ROWS (when asked for, and again when it starts), so that stays bounded.

The layout follows the content: each column is as wide as its values and its header's longest word
need (measured on a sample of rows), numbers are right-aligned and never broken, dates and booleans
are short, long text wraps; portrait when the columns fit, landscape when they do not, and text
columns give way when even that is too narrow. Text is set in DejaVu Sans, with Droid Sans Fallback
for Chinese and Japanese, Nanum Gothic for Korean and Symbola for emoji (in black and white), each
character in the first font that has it (Debian's fonts-dejavu-core, fonts-droid-fallback,
fonts-nanum and fonts-symbola; a missing one is skipped, and with none the PDF uses reportlab's
Helvetica, which shows only Latin-1).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import polars as pl
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape, portrait
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from .base import ColumnSpec, Writer, python_repr, zone_name

logger = logging.getLogger(__name__)
FONT_ROOT = Path("/usr/share/fonts/truetype")
# (name, regular, bold) under FONT_ROOT, in the order characters look for a font that has them.
FONTS = [
    ("DejaVuSans", "dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf"),
    ("DroidSansFallback", "droid/DroidSansFallbackFull.ttf", None),
    ("NanumGothic", "nanum/NanumGothic.ttf", None),
    ("Symbola", "ancient-scripts/Symbola_hint.ttf", None),
]
NUMERIC = {"integer", "decimal", "float"}
FONT_SIZE, LEADING = 7, 8.5
# points left and right of a cell's content
PADDING = 3
MARGIN = 8 * mm
# rows measured for the column widths, spread over the report
SAMPLE_ROWS = 500
# a text column is at most this wide before it wraps...
TEXT_MAX = 70 * mm
# ...and at least this wide when columns must give way
TEXT_MIN = 14 * mm
# characters shown per cell; a PDF is for reading, the full text is in CSV/XLSX
MAX_CELL = 500
# lines shown per cell: a row always fits on a page
MAX_LINES = 30
CLIPPED = "… [clipped]"


@dataclass(frozen=True)
class Face:
    name: str
    bold: str
    covers: frozenset[int]


@functools.cache
def faces() -> tuple[Face, ...]:
    """The fonts found on this machine, registered with reportlab once per process."""
    found = []
    for name, regular, bold in FONTS:
        if not (FONT_ROOT / regular).exists():
            logger.info("PDF font %s not found at %s: characters only it has will show as boxes.", name, regular)
            continue
        font = TTFont(name, FONT_ROOT / regular)
        pdfmetrics.registerFont(font)
        bold_name = name
        if bold and (FONT_ROOT / bold).exists():
            bold_name = f"{name}-Bold"
            pdfmetrics.registerFont(TTFont(bold_name, FONT_ROOT / bold))
        found.append(Face(name, bold_name, frozenset(font.face.charToGlyph)))
    return tuple(found) or (Face("Helvetica", "Helvetica-Bold", frozenset(range(256))),)


def markup(text: str, fonts: tuple[Face, ...]) -> str:
    """Paragraph markup of the text: each run of characters in the first font that has them."""
    main = fonts[0]

    def font_of(char: str) -> str:
        code = ord(char)
        return next((face.name for face in fonts if code in face.covers), main.name)

    parts = []
    for name, run in itertools.groupby(text, key=font_of):
        piece = escape("".join(run)).replace("\n", "<br/>")
        parts.append(piece if name == main.name else f'<font name="{name}">{piece}</font>')
    return "".join(parts)


class PdfWriter(Writer):
    extension = "pdf"
    content_type = "application/pdf"
    laid_out_whole = True
    # measured (bench/run.py --only PDF): the instant limit for PDF
    rows_per_second = 1_500

    def open_segment(self) -> None:
        self.fonts = faces()
        styles = getSampleStyleSheet()
        main = self.fonts[0]
        self.title_style = styles["Title"].clone("report-title", fontName=main.bold, fontSize=14, leading=17)
        self.note_style = styles["Normal"].clone("report-note", fontName=main.name, fontSize=8, leading=10)
        self.cell_style = styles["BodyText"].clone("cell", fontName=main.name, fontSize=FONT_SIZE, leading=LEADING)
        self.head_style = self.cell_style.clone("head", fontName=main.bold)
        self.rows: list[tuple[Any, ...]] = []
        # A PDF runs no formulas: text stays as it is; NULL empty.
        self.texts = [self.text(c).cast(pl.String).fill_null("") for c in self.columns]

    def text(self, column: ColumnSpec) -> pl.Expr:
        """Values as a reader wants them on paper: datetimes to the minute in the report's zone (named
        above the table), booleans as yes/no, long text cut."""
        value = pl.col(column.name)
        if column.kind == "boolean":
            return pl.when(value).then(pl.lit("yes")).when(value.not_()).then(pl.lit("no"))
        if column.kind == "float":
            return python_repr(value)
        # control characters (a tab, a lone CR) have no glyph: a space instead
        if column.kind == "text":
            value = value.str.replace_all(r"[\x00-\x09\x0b-\x1f\x7f]", " ")
            long = value.str.len_chars() > MAX_CELL
            return pl.when(long).then(value.str.slice(0, MAX_CELL) + pl.lit("…")).otherwise(value)
        if column.kind == "datetime":
            return value.dt.convert_time_zone(zone_name(self.options.time_zone)).dt.to_string("%Y-%m-%d %H:%M")
        if column.kind == "date":
            return value.dt.to_string("%Y-%m-%d")
        if column.kind == "time":
            return value.dt.to_string("%H:%M:%S")
        return value

    def write_batch(self, frame: pl.DataFrame) -> None:
        self.rows.extend(frame.select(self.texts).rows())

    def measure(self, text: str, bold: bool = False) -> float:
        font = self.fonts[0].bold if bold else self.fonts[0].name
        return max((pdfmetrics.stringWidth(line, font, FONT_SIZE) for line in text.split("\n")), default=0.0)

    def natural_widths(self) -> list[float]:
        """Each column's width: its values' (on a sample) or its header's longest word's, whichever is
        wider; text at most TEXT_MAX."""
        step = max(1, len(self.rows) // SAMPLE_ROWS)
        sample = self.rows[::step]
        natural = []
        for i, column in enumerate(self.columns):
            content = max((self.measure(row[i]) for row in sample), default=0.0)
            word = max((self.measure(w, bold=True) for w in column.label.split()), default=0.0)
            # room for the clipping marker, at most TEXT_MAX
            if column.kind == "text":
                content = min(max(content, self.measure(CLIPPED)), TEXT_MAX)
            natural.append(max(content, word) + 2 * PADDING + 1)
        return natural

    def fit(self, natural: list[float], available: float) -> list[float]:
        """Past `available`, the widest text columns give way first: all text columns wider than some
        width are cut to it (not below TEXT_MIN), the narrow ones keep theirs; if that is not enough
        (very many columns), every column shrinks in proportion."""
        text = [i for i, c in enumerate(self.columns) if c.kind == "text"]
        fixed = sum(w for i, w in enumerate(natural) if i not in text)
        widths = list(natural)
        if sum(natural) > available and text:
            cap = max(natural[i] for i in text)
            while cap > TEXT_MIN and fixed + sum(min(natural[i], cap) for i in text) > available:
                cap -= 1
            widths = [min(w, cap) if i in text else w for i, w in enumerate(natural)]
        if sum(widths) > available:
            widths = [w * available / sum(widths) for w in widths]
        return widths

    def cell(self, text: str, column: ColumnSpec, width: float) -> str | Paragraph:
        """Numbers, dates and short text as plain strings (one line, never broken); other text as a
        paragraph wrapped to the column, clipped with a marker to at most MAX_LINES lines' height."""
        if not text:
            return ""
        if column.kind != "text" or (text.isascii() and "\n" not in text and self.measure(text) <= width):
            return text
        cell = Paragraph(markup(text, self.fonts), self.cell_style)
        # short text cannot reach MAX_LINES
        if len(text) <= 60 and text.count("\n") < 10:
            return cell
        cut = len(text)
        # halve until it fits
        while cell.wrap(width, 1e9)[1] > MAX_LINES * LEADING:
            cut //= 2
            cell = Paragraph(markup(text[:cut].rstrip() + CLIPPED, self.fonts), self.cell_style)
        return cell

    def close_segment(self) -> dict[str, Any]:
        title = self.options.title or "Report"
        filters = self.options.extra.get("filters") or "none"
        zone = zone_name(self.options.time_zone)
        generated = dt.datetime.now(self.options.time_zone).strftime("%Y-%m-%d %H:%M")
        natural = self.natural_widths()
        page = portrait(A4) if sum(natural) <= portrait(A4)[0] - 2 * MARGIN else landscape(A4)
        widths = self.fit(natural, page[0] - 2 * MARGIN)
        doc = SimpleDocTemplate(
            self.fh,
            pagesize=page,
            title=title,
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN,
            bottomMargin=MARGIN + 4 * mm,
        )
        right = self.head_style.clone("head-right", alignment=TA_RIGHT)
        header = [
            Paragraph(markup(c.label, self.fonts), right if c.kind in NUMERIC else self.head_style)
            for c in self.columns
        ]
        inner = [w - 2 * PADDING for w in widths]
        body = [
            [self.cell(text, column, width) for text, column, width in zip(row, self.columns, inner, strict=True)]
            for row in self.rows
        ]
        table = LongTable([header, *body], colWidths=widths, repeatRows=1, hAlign="LEFT")
        numeric = [i for i, c in enumerate(self.columns) if c.kind in NUMERIC]
        table.setStyle(
            TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, -1), self.fonts[0].name),
                    ("FONTSIZE", (0, 0), (-1, -1), FONT_SIZE),
                    ("LEADING", (0, 0), (-1, -1), LEADING),
                    ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                    ("LEFTPADDING", (0, 0), (-1, -1), PADDING),
                    ("RIGHTPADDING", (0, 0), (-1, -1), PADDING),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf4")),
                    ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
                    ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f7f9")]),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    *[("ALIGN", (i, 1), (i, -1), "RIGHT") for i in numeric],
                ]
            )
        )
        story = [
            Paragraph(markup(title, self.fonts), self.title_style),
            Paragraph(
                markup(
                    f"Filters: {filters} · {len(self.rows):,} rows · generated {generated} · times in {zone}",
                    self.fonts,
                ),
                self.note_style,
            ),
            Spacer(1, 3 * mm),
            table,
        ]

        def number_page(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(self.fonts[0].name, 7)
            canvas.drawRightString(doc.pagesize[0] - MARGIN, MARGIN - 2 * mm, f"{title} · page {doc.page}")
            canvas.restoreState()

        doc.build(story, onFirstPage=number_page, onLaterPages=number_page)
        self.rows = []
        return {}
