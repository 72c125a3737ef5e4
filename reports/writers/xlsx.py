"""XLSX written in segments: typed cells, a bold frozen header, column widths, a new sheet past
Excel's last row, long text cut with a marker, text never a formula or a link.

Each segment is the sheet XML of its rows, deflated on its own and ended with a sync flush; the join
makes the zip around them (reports.writers.zipjoin) without inflating or deflating them again. Rows
carry no row number (`r` is optional in ECMA-376 and Excel, LibreOffice and Google Sheets count
rows without it), so a segment does not depend on the others; the join starts a new sheet where
adding the next segment would pass Excel's row limit, and the plan cuts segments at those rows, so
the sheets roll over exactly there. Inline strings (no shared-string table), one XML string and one
deflate call per batch. Excel has no time zones: datetimes are written in the report's zone.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import polars as pl

from .base import ColumnSpec, Piece, SegmentInfo, Writer, whole, zone_name
from .zipjoin import SYNC_FLUSH, Entry, StreamJoin, compressor, crc32, zip_pieces

# including the header row
EXCEL_MAX_ROWS = 1_048_576
DEFLATE_BLOCK = 1 << 20
CELL_LIMIT = 32_767
TRUNCATED = "…[truncated]"
WIDTHS = {"datetime": 20, "date": 12, "time": 10, "boolean": 8, "integer": 12, "decimal": 14, "float": 14}


def column_width(column: ColumnSpec) -> int:
    return max(WIDTHS.get(column.kind, 24), min(len(column.label) + 2, 40))


def sheet_title(title: str, number: int) -> str:
    """A name Excel accepts: at most 31 characters, none of []:*?/\\ or control characters, no
    apostrophe at either end, not "History"; "Orders", then "Orders 2", ... (unique: numbered)."""
    cleaned = "".join(" " if ch in "[]:*?/\\" or not ch.isprintable() else ch for ch in title or "")
    base = " ".join(cleaned.split())[:25].strip(" '") or "Report"
    # reserved by Excel
    if base.casefold() == "history":
        base = "History sheet"
    return f"{base} {number}" if number > 1 else base


EPOCH = dt.datetime(1899, 12, 30)
DAY = 86_400.0
# Styles (cellXfs indexes in STYLES below).
HEADER, DATE, DATETIME, TIME, DECIMAL = 1, 2, 3, 4, 5
# Characters XML 1.0 cannot carry (and CR, which XML parsers turn into LF), plus text that already
# looks like an OOXML escape: all written as _xHHHH_, as Excel expects.
NEEDS_ESCAPE = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)")

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
NS_R = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet {NS}><numFmts count="3"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>\
<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/><numFmt numFmtId="166" formatCode="hh:mm:ss"/></numFmts>\
<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font><font><b/><sz val="11"/><name val="Calibri"/></font>\
</fonts><fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/>\
</fill></fills><borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border><border><left/><right/>\
<top/><bottom style="thin"><color auto="1"/></bottom><diagonal/></border></borders>\
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="6">\
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>\
<xf numFmtId="0" fontId="1" fillId="0" borderId="1" xfId="0" applyFont="1" applyBorder="1"/>\
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>\
<xf numFmtId="2" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>\
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>"""


def xml_text(value: str) -> str:
    if len(value) > CELL_LIMIT:
        value = value[: CELL_LIMIT - len(TRUNCATED)] + TRUNCATED
    value = escape(value)
    if NEEDS_ESCAPE.search(value):
        value = NEEDS_ESCAPE.sub(lambda m: f"_x{ord(m.group(0)):04X}_", value)
    return value


def text_cell(value: object, style: int = 0) -> str:
    if value is None:
        return "<c/>"
    style_attr = f' s="{style}"' if style else ""
    return f'<c t="inlineStr"{style_attr}><is><t xml:space="preserve">{xml_text(str(value))}</t></is></c>'


# The cells of a column, a batch at a time (Polars). Numbers are written as Python's repr() writes the
# same double: Excel reads back exactly the value the row-at-a-time writer wrote.
# 1899-12-30 (Excel's day 0) to 1970-01-01, in microseconds
TO_1970_US = 25_569 * 86_400 * 1_000_000
# Text that xml_text() would change: long, or holding what XML escapes or cannot carry, or _xHHHH_.
CHANGED_BY_XML = "[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9A-Fa-f]{4}_"


def number_text(values: pl.Series) -> pl.Series:
    """Doubles as repr() writes them: Polars' text where it is the same (shortest digits, no exponent),
    repr() itself for the few outside 1e-4..1e16."""
    text = values.cast(pl.String)
    size = values.abs()
    odd = ((size < 1e-4) & (size != 0)) | (size >= 1e16) | values.is_nan() | values.is_infinite()
    if odd.any():
        where = odd.fill_null(False).arg_true()
        text = text.scatter(where, [repr(v) for v in values.gather(where).to_list()])
    return text


def serial_number(values: pl.Series, kind: str, zone: str) -> pl.Series:
    """Dates, datetimes (in `zone`) and times as Excel's day numbers."""
    if kind == "date":
        return (values.cast(pl.Int32) + 25_569).cast(pl.String)
    if kind == "time":
        nanoseconds = values.cast(pl.Int64)
        seconds = (nanoseconds // 1_000_000_000).cast(pl.Float64)
        return number_text((seconds + (nanoseconds // 1000 % 1_000_000).cast(pl.Float64) / 1e6) / DAY)
    local = values.dt.convert_time_zone(zone).dt.replace_time_zone(None).dt.epoch("us")
    return number_text((local + TO_1970_US).cast(pl.Float64) / 1e6 / DAY)


def text_cells(values: pl.Series) -> pl.Series:
    """xml_text() for a whole column: the few values it changes go through it, the rest stay."""
    changed = ((values.str.len_bytes() > CELL_LIMIT) | values.str.contains(CHANGED_BY_XML)).fill_null(False)
    if not changed.any():
        return values
    where = changed.arg_true()
    return values.scatter(where, [xml_text(v) for v in values.gather(where).to_list()])


def cells(values: pl.Series, kind: str, zone: str) -> pl.Series:
    """The <c> element of each value of a column of this kind."""
    if kind == "text":
        inner, start, end = text_cells(values), '<c t="inlineStr"><is><t xml:space="preserve">', "</t></is></c>"
    elif kind == "boolean":
        inner, start, end = values.cast(pl.Int8).cast(pl.String), '<c t="b"><v>', "</v></c>"
    elif kind == "integer":
        inner, start, end = values.cast(pl.String), "<c><v>", "</v></c>"
    elif kind in ("float", "decimal"):
        style = f' s="{DECIMAL}"' if kind == "decimal" else ""
        inner, start, end = number_text(values.cast(pl.Float64)), f"<c{style}><v>", "</v></c>"
    else:
        number = {"date": DATE, "datetime": DATETIME, "time": TIME}[kind]
        inner, start, end = serial_number(values, kind, zone), f'<c s="{number}"><v>', "</v></c>"
    return pl.select(
        pl.when(values.is_null()).then(pl.lit("<c/>")).otherwise(pl.lit(start) + inner + pl.lit(end))
    ).to_series()


class XlsxWriter(Writer):
    extension = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    # data rows per sheet, under the header; tests set a small one
    sheet_rows = EXCEL_MAX_ROWS - 1
    rows_per_second = 300_000

    def open_segment(self) -> None:
        self.zone = zone_name(self.options.time_zone)
        self.deflate = compressor()
        self.crc = self.size = 0
        # deflated in blocks of the same size however the rows came: same bytes
        self.pending = bytearray()

    def write_batch(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        columns = [cells(frame[c.name], c.kind, self.zone) for c in self.columns]
        rows = pl.select(pl.concat_str([pl.lit("<row>"), *columns, pl.lit("</row>")]))
        buffer = io.BytesIO()
        rows.write_csv(buffer, include_header=False, quote_style="never", line_terminator="")
        xml = buffer.getvalue()
        self.crc = crc32(xml, self.crc)
        self.size += len(xml)
        self.pending += xml
        while len(self.pending) >= DEFLATE_BLOCK:
            self.fh.write(self.deflate.compress(self.pending[:DEFLATE_BLOCK]))
            del self.pending[:DEFLATE_BLOCK]

    def close_segment(self) -> dict[str, Any]:
        self.fh.write(self.deflate.compress(self.pending) + self.deflate.flush(SYNC_FLUSH))
        return {"crc32": self.crc, "size": self.size}

    def assemble(self, segments: Sequence[SegmentInfo]) -> list[Piece]:
        sheets = [StreamJoin()]
        rows = 0
        for segment in segments:
            if not segment.rows:
                continue
            # the next sheet starts with this segment
            if rows + segment.rows > self.sheet_rows and rows:
                sheets.append(StreamJoin())
                rows = 0
            if segment.rows > self.sheet_rows:
                raise ValueError(
                    "Rows were added while the report ran, and a sheet would pass Excel's row limit. "
                    "Ask for the report again."
                )
            if len(sheets[-1].pieces) == 0:
                sheets[-1].add_data(self.sheet_head())
            for piece in whole(segment):
                sheets[-1].add(piece, crc=segment.meta["crc32"], size=segment.meta["size"])
            rows += segment.rows
        if not sheets[-1].pieces:
            sheets[-1].add_data(self.sheet_head())
        for sheet in sheets:
            sheet.add_data(b"</sheetData></worksheet>", last=True)
        names = [sheet_title(self.options.title, n) for n in range(1, len(sheets) + 1)]
        entries = [sheet.entry(f"xl/worksheets/sheet{n}.xml") for n, sheet in enumerate(sheets, 1)]
        return zip_pieces([*entries, *(Entry.of(name, data) for name, data in package_parts(names))])

    def sheet_head(self) -> bytes:
        widths = "".join(
            f'<col min="{i}" max="{i}" width="{column_width(c)}" customWidth="1"/>'
            for i, c in enumerate(self.columns, 1)
        )
        header = "".join(text_cell(c.label, HEADER) for c in self.columns)
        return (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet {NS} {NS_R}><sheetViews>'
            '<sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            f'</sheetView></sheetViews><sheetFormatPr defaultRowHeight="15"/><cols>{widths}</cols><sheetData>'
            f'<row r="1">{header}</row>'
        ).encode()


def package_parts(sheet_names: list[str]) -> list[tuple[str, bytes]]:
    """The workbook's other parts: content types, relationships, the workbook (its sheets), styles."""
    count = len(sheet_names)
    xml = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(1, count + 1)
    )
    sheets = "".join(
        f'<sheet name={quoteattr(name)} sheetId="{i}" r:id="rId{i}"/>' for i, name in enumerate(sheet_names, 1)
    )
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
        for i in range(1, count + 1)
    )
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/styles.xml" '
            f'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>{overrides}</Types>'
        ),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
            f'Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": f"<workbook {NS} {NS_R}><sheets>{sheets}</sheets></workbook>",
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}'
            f'<Relationship Id="rId{count + 1}" Type="{REL}/styles" Target="styles.xml"/></Relationships>'
        ),
    }
    return [*((name, (xml + body).encode()) for name, body in parts.items()), ("xl/styles.xml", STYLES.encode())]
