import csv
import datetime as dt
import io
import zoneinfo
from decimal import Decimal

from reports.writers import FORMATS, ColumnSpec, WriterOptions, write_file
from reports.writers.csv import CsvWriter, ExcelCsvWriter
from shop.demo import AWKWARD_TEXT
from tests.helpers import escaped

COLUMNS = [
    ColumnSpec("id", "Id", "integer"),
    ColumnSpec("name", "Name, full", "text"),
    ColumnSpec("amount", "Amount", "decimal"),
    ColumnSpec("paid", "Paid", "boolean"),
    ColumnSpec("at", "At", "datetime"),
    ColumnSpec("day", "Day", "date"),
]
AT = dt.datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)


def write(rows, writer_class=CsvWriter, **options) -> bytes:
    fh = io.BytesIO()
    write_file(writer_class, fh, COLUMNS, rows, WriterOptions(**options), segment_rows=2)
    return fh.getvalue()


def read(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_header_and_rows_use_crlf_and_rfc4180_quoting():
    data = write([(1, 'He said "hi",\nthen left', Decimal("12.50"), True, AT, dt.date(2025, 1, 2))])
    assert data == (
        b'Id,"Name, full",Amount,Paid,At,Day\r\n'
        b'1,"He said ""hi"",\nthen left",12.50,true,2025-03-04T05:06:07.123456+00:00,2025-01-02\r\n'
    )


def test_nulls_are_empty_and_booleans_are_lowercase():
    assert read(write([(2, None, None, None, None, None), (3, "", Decimal("0.00"), False, None, None)]))[1:] == [
        ["2", "", "", "", "", ""],
        ["3", "", "0.00", "false", "", ""],
    ]


def test_formula_prefixes_are_escaped_in_text_but_numbers_stay_numbers():
    # and signs that only the rule's later parts catch: after whitespace or a format character, look-alikes
    hidden = [" =1+1", "\u200b=cmd", "\ufeff@x", "\uff1d1+1", "\u22122", " \t-"]
    rows = [(i, text, Decimal("-12.50"), None, None, None) for i, text in enumerate(AWKWARD_TEXT + hidden)]
    parsed = read(write(rows))[1:]
    for (_, original, *_), (_, written, amount, *_) in zip(rows, parsed, strict=True):
        assert written == escaped(original)
        assert amount == "-12.50"


def test_escaping_can_be_switched_off_by_the_report_author():
    assert read(write([(1, "=1+1", None, None, None, None)], escape_formulas=False))[1][1] == "=1+1"


def test_datetimes_are_written_in_the_given_time_zone_with_offset():
    options = {"time_zone": zoneinfo.ZoneInfo("America/Sao_Paulo")}
    assert read(write([(1, "x", None, None, AT, None)], **options))[1][4] == "2025-03-04T02:06:07.123456-03:00"


def test_excel_variant_starts_with_a_bom_and_keeps_emoji():
    data = write([(1, "Emoji 🎉 Zoë", None, None, None, None)], writer_class=ExcelCsvWriter)
    assert data.startswith(b"\xef\xbb\xbfId,")
    assert read(data)[1][1] == "Emoji 🎉 Zoë"


def test_plain_csv_has_no_bom():
    assert write([]).startswith(b"Id,")


def test_custom_delimiter():
    data = write([(1, "a;b", None, None, None, None)], extra={"delimiter": ";"})
    assert data.splitlines()[1] == b'1;"a;b";;;;'


def test_formats_know_their_extension_and_type():
    assert FORMATS["csv"].extension == "csv"
    assert FORMATS["csv_excel"].content_type.startswith("text/csv")


def test_a_row_of_one_empty_cell_is_kept_as_csv_keeps_it():
    """Python's csv writes a lone empty field as "" (an empty line would be no row at all)."""
    for kind, values in [("text", ["", None, "a", "x,y"]), ("integer", [None, 1]), ("time", [None, dt.time(1, 2)])]:
        fh = io.BytesIO()
        write_file(CsvWriter, fh, [ColumnSpec("c", "C", kind)], [(v,) for v in values], WriterOptions(), segment_rows=3)
        expected = io.StringIO(newline="")
        writer = csv.writer(expected, lineterminator="\r\n")
        writer.writerow(["C"])
        writer.writerows([[v.isoformat() if isinstance(v, dt.time) else v] for v in values])
        assert fh.getvalue().decode() == expected.getvalue()
        assert read(fh.getvalue())[1:] == [
            ["" if v is None else str(v) if not isinstance(v, dt.time) else v.isoformat()] for v in values
        ]


def test_a_delimiter_polars_cannot_write_is_refused():
    import pytest

    with pytest.raises(ValueError, match="one ASCII character"):
        write([(1, "a", None, None, None, None)], extra={"delimiter": "§"})
