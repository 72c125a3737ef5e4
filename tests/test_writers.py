"""Each format read back with a real reader and compared value by value with the input."""

import datetime as dt
import io
import json
import zoneinfo
from decimal import Decimal

import openpyxl
import pytest
from pypdf import PdfReader

from reports.writers import FORMATS, ColumnSpec, SegmentInfo, WriterOptions, join_in_memory, write_file
from reports.writers.base import frame_from_rows
from reports.writers.xlsx import CELL_LIMIT, TRUNCATED, XlsxWriter
from shop.demo import AWKWARD_TEXT
from tests.helpers import ooxml_text
from tests.xlsx_oracle import OracleXlsxWriter

COLUMNS = [
    ColumnSpec("id", "Id", "integer"),
    ColumnSpec("note", "Note", "text"),
    ColumnSpec("amount", "Amount", "decimal"),
    ColumnSpec("paid", "Paid", "boolean"),
    ColumnSpec("at", "At", "datetime"),
    ColumnSpec("day", "Day", "date"),
    ColumnSpec("ratio", "Ratio", "float"),
]
SAO_PAULO = zoneinfo.ZoneInfo("America/Sao_Paulo")
AT = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def awkward_rows():
    rows = [
        (
            i,
            text,
            Decimal("-12.50") if i % 2 else Decimal("999999999999.99"),
            bool(i % 3),
            AT + dt.timedelta(days=i),
            dt.date(2025, 1, 1 + i),
            i / 8,
        )
        for i, text in enumerate(AWKWARD_TEXT)
    ]
    rows.append((len(rows), None, None, None, None, None, None))
    return rows


def write(fmt, rows, columns=COLUMNS, writer_class=None, **options):
    """The file of `rows`, written in two segments (or, for the xlsxwriter oracle, in one go)."""
    writer_class = writer_class or FORMATS[fmt].writer_class
    fh = io.BytesIO()
    if issubclass(writer_class, OracleXlsxWriter):
        writer = writer_class(fh, columns, WriterOptions(**options))
        writer.open()
        writer.write_rows(rows)
        writer.close()
    else:
        write_file(writer_class, fh, columns, rows, WriterOptions(**options), segment_rows=max(1, (len(rows) + 1) // 2))
    return fh.getvalue()


@pytest.fixture(params=[XlsxWriter, OracleXlsxWriter], ids=["segments", "xlsxwriter"])
def xlsx_writer(request):
    return request.param


class TestXlsx:
    def read(self, data):
        return openpyxl.load_workbook(io.BytesIO(data))

    def test_cells_are_typed_and_equal_to_the_input(self, xlsx_writer):
        rows = awkward_rows()
        book = self.read(write("xlsx", rows, writer_class=xlsx_writer, time_zone=SAO_PAULO, title="Orders"))
        sheet = book.worksheets[0]
        assert sheet.title == "Orders"
        assert [c.value for c in sheet[1]] == [c.label for c in COLUMNS]
        assert all(c.font.bold for c in sheet[1])
        assert sheet.freeze_panes == "A2"
        for expected, cells in zip(rows, sheet.iter_rows(min_row=2), strict=True):
            got = [c.value for c in cells]
            if expected[1] is None:
                assert got == [expected[0], None, None, None, None, None, None]
                continue
            assert got[0] == expected[0] and isinstance(got[0], int)
            assert (ooxml_text(got[1]) or None) == (
                expected[1] or None
                # exactly as given: no formula, no quote prefix
            )
            assert got[2] == float(expected[2])
            assert got[3] is expected[3]
            assert got[4] == expected[4].astimezone(SAO_PAULO).replace(tzinfo=None)
            assert got[5] == dt.datetime.combine(expected[5], dt.time())
            assert got[6] == expected[6]
        assert sheet["E2"].number_format == "yyyy-mm-dd hh:mm:ss" and sheet["F2"].number_format == "yyyy-mm-dd"

    def test_injection_strings_stay_text(self, xlsx_writer):
        rows = [(i, t, None, None, None, None, None) for i, t in enumerate(["=1+1", "@SUM(A1)", "+1", "-1"])]
        sheet = self.read(write("xlsx", rows, writer_class=xlsx_writer)).worksheets[0]
        cells = [row[1] for row in sheet.iter_rows(min_row=2)]
        assert [c.value for c in cells] == ["=1+1", "@SUM(A1)", "+1", "-1"]
        assert all(c.data_type == "s" for c in cells)

    def test_rows_past_the_sheet_limit_continue_on_a_new_sheet_with_the_header(self, xlsx_writer):
        class SmallSheets(xlsx_writer):
            sheet_rows = 3

        rows = [(i, f"row {i}", None, None, None, None, None) for i in range(8)]
        book = self.read(write("xlsx", rows, writer_class=SmallSheets, title="Orders"))
        assert book.sheetnames == ["Orders", "Orders 2", "Orders 3"]
        ids = []
        for sheet in book.worksheets:
            values = list(sheet.iter_rows(values_only=True))
            assert values[0][0] == "Id"
            ids += [row[0] for row in values[1:]]
        assert ids == list(range(8))

    def test_text_longer_than_a_cell_is_cut_with_a_marker(self, xlsx_writer):
        long = "x" * (CELL_LIMIT + 100)
        data = write("xlsx", [(1, long, None, None, None, None, None)], writer_class=xlsx_writer)
        cell = self.read(data).worksheets[0]["B2"].value
        assert len(cell) == CELL_LIMIT and cell.endswith(TRUNCATED)

    @pytest.mark.slow
    def test_the_real_excel_row_limit_rolls_over(self):
        columns = [ColumnSpec("id", "Id", "integer")]
        total = 1_048_575 + 10
        fh = io.BytesIO()
        write_file(
            XlsxWriter, fh, columns, ((i,) for i in range(total)), WriterOptions(title="Big"), segment_rows=100_000
        )
        book = openpyxl.load_workbook(io.BytesIO(fh.getvalue()), read_only=True)
        assert book.sheetnames == ["Big", "Big 2"]
        second = list(book["Big 2"].iter_rows(values_only=True))
        assert second == [("Id",), *[(i,) for i in range(1_048_575, total)]]
        last_two = list(book["Big"].iter_rows(min_row=1_048_575, values_only=True))
        # the first sheet is full to Excel's last row
        assert last_two == [(1_048_573,), (1_048_574,)]


class TestJson:
    def expected(self, row, tz=dt.UTC):
        id_, note, amount, paid, at, day, ratio = row
        return {
            "id": id_,
            "note": note,
            "amount": None if amount is None else str(amount),
            "paid": paid,
            "at": None if at is None else at.astimezone(tz).isoformat(),
            "day": None if day is None else day.isoformat(),
            "ratio": ratio,
        }

    def test_json_is_one_array_of_objects(self):
        rows = awkward_rows()
        assert json.loads(write("json", rows)) == [self.expected(r) for r in rows]

    def test_ndjson_is_one_object_a_line_in_the_given_zone(self):
        rows = awkward_rows()
        lines = write("ndjson", rows, time_zone=SAO_PAULO).decode().splitlines()
        assert [json.loads(line) for line in lines] == [self.expected(r, SAO_PAULO) for r in rows]
        assert json.loads(lines[0])["at"].endswith("-03:00")

    @pytest.mark.parametrize("columns", [COLUMNS, COLUMNS[:-1]], ids=["a float column", "no float column"])
    @pytest.mark.parametrize("fmt", ["json", "ndjson"])
    def test_the_bytes_are_what_json_writes(self, fmt, columns):
        """Without float columns Polars' JSON encoder writes the objects; with one, they are put together
        from each member's text: either way, json.dumps' bytes (ensure_ascii=False, compact)."""
        rows = [row[: len(columns)] for row in awkward_rows()]
        names = [c.name for c in columns]
        texts = [
            json.dumps(
                {name: self.expected(row + (None,) * (7 - len(row)), SAO_PAULO)[name] for name in names},
                ensure_ascii=False,
                separators=(",", ":"),
            )
            for row in rows
        ]
        expected = "".join(f"{t}\n" for t in texts) if fmt == "ndjson" else f"[\n{',\n'.join(texts)}\n]\n"
        assert write(fmt, rows, columns, time_zone=SAO_PAULO).decode() == expected

    def test_decimals_keep_every_digit(self):
        row = (1, None, Decimal("12345678901234.10"), None, None, None, None)
        assert json.loads(write("json", [row]))[0]["amount"] == "12345678901234.10"

    def test_no_rows_is_an_empty_array(self):
        assert json.loads(write("json", [])) == []
        assert write("ndjson", []) == b""


class TestPdf:
    def test_title_filters_rows_page_numbers_and_repeated_header(self):
        rows = [(i, f"Note {i} Zoë", Decimal("1.50"), True, AT, dt.date(2025, 1, 2), 0.5) for i in range(120)]
        data = write("pdf", rows, title="Orders", extra={"filters": "Status: paid"})
        pages = [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]
        assert len(pages) >= 2
        assert "Orders" in pages[0] and "Filters: Status: paid" in pages[0] and "120 rows" in pages[0]
        # header row on every page
        assert all("Amount" in page for page in pages)
        assert "Orders · page 2" in pages[1]
        text = "\n".join(pages)
        for i in range(120):
            assert f"Note {i} Zoë" in text
        # to the minute, the zone said once
        assert "2025-03-04 05:06" in text and "times in UTC" in pages[0]
        assert "yes" in text and "1.50" in text

    def test_the_layout_follows_the_content(self):
        narrow = [ColumnSpec("id", "Id", "integer"), ColumnSpec("amount", "Amount", "decimal")]
        wide = [*COLUMNS, *[ColumnSpec(f"extra{i}", f"Extra column {i}", "text") for i in range(6)]]
        rows = [(i, Decimal("35325.68")) for i in range(50)]
        page = PdfReader(io.BytesIO(write("pdf", rows, columns=narrow))).pages[0]
        # two columns: portrait
        assert page.mediabox.width < page.mediabox.height
        # never broken over two lines
        assert "35325.68" in page.extract_text()
        wide_rows = [(1, "word " * 40, Decimal("1"), False, AT, dt.date(2025, 1, 2), 0.5, *["text"] * 6)]
        page = PdfReader(io.BytesIO(write("pdf", wide_rows, columns=wide))).pages[0]
        # thirteen columns: landscape
        assert page.mediabox.width > page.mediabox.height
        words = page.extract_text().split()
        # none broken
        assert all(word in words for word in ("Extra", "column", "Amount", "2025-03-04", "05:06"))

    def test_accents_chinese_japanese_korean_and_emoji_have_a_font(self):
        rows = [(1, "Zoë Ærøskøbing · 中文 日本語 한국어 · 🙂🎉", Decimal("1"), True, AT, dt.date(2025, 1, 2), 0.5)]
        page = PdfReader(io.BytesIO(write("pdf", rows))).pages[0]
        fonts = {str(f["/BaseFont"]).split("+")[-1] for f in page["/Resources"]["/Font"].values()}
        assert {"DejaVuSans", "DroidSansFallback", "NanumGothic", "Symbola"} <= fonts, fonts
        # (pypdf does not read back characters past U+FFFF: the emoji are seen on the PNG)
        text = page.extract_text()
        assert "Zoë Ærøskøbing · 中文 日本語 한국어 ·" in " ".join(text.split()) and "\x00" not in text

    @pytest.mark.parametrize("tall", ["line\n" * 250, "x" * 500, "wide " * 100, "\n".join(["🎉"] * 400)])
    def test_a_cell_taller_than_a_page_is_clipped_with_a_marker_not_a_failure(self, tall):
        rows = [(1, tall, Decimal("1"), True, AT, dt.date(2025, 1, 2), 0.5), (2, "after", None, None, None, None, None)]
        pages = [page.extract_text() for page in PdfReader(io.BytesIO(write("pdf", rows))).pages]
        text = "\n".join(pages)
        assert "after" in text and len(pages) <= 2
        if tall.count("\n") > 30:
            assert "[clipped]" in text


@pytest.mark.parametrize(
    ("title", "first", "second"),
    [
        ("Orders", "Orders", "Orders 2"),
        ("'quoted'", "quoted", "quoted 2"),
        ("History", "History sheet", "History sheet 2"),
        ("a[b]:c*d?e/f\\g", "a b c d e f g", "a b c d e f g 2"),
        ("", "Report", "Report 2"),
        ("x" * 40, "x" * 25, "x" * 25 + " 2"),
        ("y" * 24 + "'z", "y" * 24, "y" * 24 + " 2"),
        ("tab\there", "tab here", "tab here 2"),
    ],
)
def test_sheet_titles_are_always_valid_for_excel(title, first, second):
    from reports.writers.xlsx import sheet_title

    assert (sheet_title(title, 1), sheet_title(title, 2)) == (first, second)
    assert all(len(sheet_title(title, n)) <= 31 for n in (1, 99, 9999))


SEGMENTABLE = [name for name, f in FORMATS.items() if not f.writer_class.laid_out_whole]


def segmented(fmt, rows, sizes, **options) -> bytes:
    """The file of `rows` cut into segments of `sizes` rows (zero included), joined as the pipeline joins."""
    writer_class = FORMATS[fmt].writer_class
    written, segments, start = {}, [], 0
    for size in sizes:
        fh = io.BytesIO()
        writer = writer_class(fh, COLUMNS, WriterOptions(**options))
        writer.open_segment()
        writer.write_rows(rows[start : start + size])
        meta = writer.close_segment()
        written[f"s{len(segments)}"] = fh.getvalue()
        segments.append(SegmentInfo(f"s{len(segments)}", len(fh.getvalue()), size, meta))
        start += size
    out = io.BytesIO()
    join_in_memory(writer_class(out, COLUMNS, WriterOptions(**options)), segments, written)
    return out.getvalue()


@pytest.mark.parametrize("fmt", SEGMENTABLE)
@pytest.mark.parametrize("sizes", [[3, 4, 5], [0, 5, 0, 2, 0], [0, 0], [7], [1] * 7, []])
def test_any_cut_into_segments_makes_the_same_file(fmt, sizes):
    rows = awkward_rows()[: sum(sizes)]
    options = {"title": "Orders", "extra": {"delimiter": ";"}}
    one = segmented(fmt, rows, [len(rows)], **options)
    # each segment is deflated alone, so the zip differs; what it holds does not
    if fmt == "xlsx":
        assert unzipped(segmented(fmt, rows, sizes, **options)) == unzipped(one)
        sheet = openpyxl.load_workbook(io.BytesIO(one)).worksheets[0]
        assert [r[0] for r in sheet.iter_rows(min_row=2, values_only=True)] == [r[0] for r in rows]
    # each segment is a row group of its own; the rows and types are the same
    elif fmt == "parquet":
        assert read_parquet(segmented(fmt, rows, sizes, **options)) == read_parquet(one)
    else:
        assert segmented(fmt, rows, sizes, **options) == one


def read_parquet(data: bytes):
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    return table.schema, table.to_pylist()


def unzipped(data: bytes) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_same_rows_make_the_same_bytes_every_time():
    rows = awkward_rows()
    assert all(segmented(f, rows, [5, 9]) == segmented(f, rows, [5, 9]) for f in SEGMENTABLE)


def test_a_zip64_workbook_opens():
    from reports.writers import zipjoin

    original = zipjoin.ZIP32_LIMIT
    # every entry and offset past the limit: the ZIP64 records are written
    zipjoin.ZIP32_LIMIT = 100
    try:
        data = segmented("xlsx", awkward_rows(), [4, 4, 4])
    finally:
        zipjoin.ZIP32_LIMIT = original
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert any(info.extra for info in archive.infolist())
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    assert sheet.max_row == 13


def test_every_format_has_a_type_and_extension():
    assert {name: (f.extension, f.content_type.split(";")[0]) for name, f in FORMATS.items()} == {
        "csv": ("csv", "text/csv"),
        "csv_excel": ("csv", "text/csv"),
        "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        "json": ("json", "application/json"),
        "ndjson": ("ndjson", "application/x-ndjson"),
        "parquet": ("parquet", "application/vnd.apache.parquet"),
        "pdf": ("pdf", "application/pdf"),
    }


def test_parquet_segments_join_by_their_bytes_into_one_file_any_reader_reads():
    """Segments of several row groups each (and an empty one), joined without decoding them: pyarrow and
    Polars (two Parquet readers of their own) read every row, in order, every row group on its own too,
    with the statistics of each row group kept."""
    import polars as pl
    import pyarrow.parquet as pq

    from reports.writers.parquet import ROW_GROUP_ROWS

    sizes = [ROW_GROUP_ROWS * 2 + 5, 0, ROW_GROUP_ROWS + 1, 3]
    base = awkward_rows()
    rows = [(i, *base[i % len(base)][1:]) for i in range(sum(sizes))]
    data = segmented("parquet", rows, sizes)
    source = pq.ParquetFile(io.BytesIO(data))
    assert source.metadata.num_rows == len(rows)
    assert [source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)] == [
        ROW_GROUP_ROWS,
        ROW_GROUP_ROWS,
        5,
        ROW_GROUP_ROWS,
        1,
        3,
    ]
    ids = [source.read_row_group(g).column("id").to_pylist() for g in range(source.num_row_groups)]
    assert [i for group in ids for i in group] == list(range(len(rows)))
    statistics = [source.metadata.row_group(g).column(0).statistics for g in range(source.num_row_groups)]
    assert [(s.min, s.max) for s in statistics] == [(group[0], group[-1]) for group in ids]
    assert read_parquet(data) == read_parquet(segmented("parquet", rows, [len(rows)]))
    frame = pl.read_parquet(io.BytesIO(data))
    assert frame["id"].to_list() == list(range(len(rows))) and frame["note"].to_list() == [r[1] for r in rows]


def test_a_parquet_footer_is_read_and_written_back_byte_for_byte():
    import struct

    from reports.writers import thrift

    data = segmented("parquet", awkward_rows(), [len(awkward_rows())])
    length = struct.unpack("<I", data[-8:-4])[0]
    footer = data[-8 - length : -8]
    assert thrift.encode(thrift.decode(footer)) == footer
    # FileMetaData.num_rows
    assert thrift.field(thrift.decode(footer), 3)[2] == len(awkward_rows())


def test_rows_fetched_in_python_give_decimals_to_their_declared_places_whatever_their_size():
    spec = ColumnSpec("net", "Net", "decimal", precision=45, scale=2)
    values = [Decimal("7182.68000000000"), Decimal("1" * 40 + ".5"), Decimal("-0.1"), None]
    assert frame_from_rows([spec], [(v,) for v in values])["net"].to_list() == [
        "7182.68",
        "1" * 40 + ".50",
        "-0.10",
        None,
    ]
    undeclared = ColumnSpec("net", "Net", "decimal")
    assert frame_from_rows([undeclared], [(Decimal("1.500"),)])["net"].to_list() == ["1.500"]


@pytest.mark.parametrize("sizes", [(0, 0), (0, 5), (5, 0), (1, 1), (3, 70_000), (100_000, 17)])
def test_joined_crcs_are_the_crc_of_the_joined_bytes(sizes):
    import zlib

    from reports.writers.zipjoin import crc32, crc32_combine

    first, second = (bytes((n * 31 + k) % 251 for n in range(size)) for k, size in enumerate(sizes))
    assert crc32_combine(crc32(first), crc32(second), len(second)) == zlib.crc32(first + second)
