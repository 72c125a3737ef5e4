"""Formula injection: a corpus of hostile and harmless text through both CSV paths and XLSX.

Both ways the file's values are made (Polars' expressions, and Python's rule they must agree with).
The rule (docs/security.md): text that starts with TAB or CR, or whose first character after any
whitespace and invisible format characters is = + - @, a full-width or small-form look-alike of them or
the minus sign, gets a leading apostrophe in CSV; XLSX writes every text as a text cell, never a formula.
"""

import csv
import datetime as dt
import io
import itertools
import sys
import unicodedata
from decimal import Decimal

import openpyxl
import polars as pl
import pytest

from reports.files import reports_storage
from reports.models import ReportJob, Status
from reports.tasks import run_in_foreground
from reports.writers.base import escape_formulas, formula_risk
from shop import demo
from shop.models import Customer, Order
from tests.helpers import ooxml_text

TRIGGERS = ["=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠", "﹦", "﹢", "﹣", "﹫", "−"]
BEFORE = ["", " ", "  ", "\xa0", "\u200b", "\u200e", "\n", "\ufeff", "\u3000", "\t ", " \u2060", "\r\n", "\x1f"]
PAYLOADS = ["1+1", 'HYPERLINK("http://evil.example","x")', "cmd|' /C calc'!A0", "SUM(A1:A9)"]
HARMLESS = [
    "a=b",
    "x-1",
    "mail@example.org",
    "100%",
    "'quoted",
    "é=1",
    "plain",
    " spaced out",
    "\u200bword",
    "1+1",
    "(=1)",
    "_=1",
    "#=1",
    "",
    "  ",
    "\n\n",
    "—dash",
    "–en dash",
    "~=1",
    "!=1",
]
# 800 strings
CORPUS = [b + t + p for b, t, p in itertools.product(BEFORE, TRIGGERS, PAYLOADS)] + HARMLESS


def skipped(char: str) -> bool:
    """What the rule skips before a sign, written out independently of the writers: whitespace (as
    Python's str.isspace has it) and every invisible format character (Unicode's category Cf)."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def risky(text: str) -> bool:
    """The rule, written out independently of the writers."""
    stripped = text
    while stripped and skipped(stripped[0]):
        stripped = stripped[1:]
    return text[:1] in ("\t", "\r") or (stripped[:1] in TRIGGERS and stripped[:1] not in ("\t", "\r"))


EVERY_CF = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
EVERY_SPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


def test_every_format_character_and_space_is_skipped_before_a_sign_in_both_ways():
    texts = [f"{before}{sign}1+1" for before in EVERY_CF + EVERY_SPACE for sign in ("=", "@", "－")]
    texts += [f"{before}plain" for before in EVERY_CF + EVERY_SPACE]
    frame = pl.DataFrame({"text": texts})
    escaped = escape_formulas(frame, ["text"])["text"].to_list()
    assert len(EVERY_CF) >= 170
    for text, written in zip(texts, escaped, strict=True):
        assert formula_risk(text) == risky(text) == (written == "'" + text), repr(text)


@pytest.fixture
def corpus_orders(db):
    demo.seed(1)
    customer = Customer.objects.first()
    when = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    Order.objects.all().delete()
    Order.objects.bulk_create(
        Order(
            number=f"C-{i}",
            customer=customer,
            status="paid",
            country="PT",
            amount=Decimal(1),
            quantity=1,
            note=text,
            created_at=when,
        )
        for i, text in enumerate(CORPUS)
    )


def export(user, fmt: str) -> bytes:
    job = ReportJob.objects.create(owner=user, report="orders", format=fmt)
    run_in_foreground(job)
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    with reports_storage().open(job.file.name, "rb") as fh:
        return fh.read()


def test_the_row_way_and_the_columnar_way_escape_alike():
    """The Python rule (reports.writers.base.formula_risk) and Polars' regular expression."""
    from reports.writers import ColumnSpec, write_file
    from reports.writers.csv import CsvWriter

    out = io.BytesIO()
    write_file(
        CsvWriter,
        out,
        [ColumnSpec("id", "Id", "integer"), ColumnSpec("note", "Note")],
        [(i, text) for i, text in enumerate(CORPUS)],
    )
    written = [row[1] for row in csv.reader(io.StringIO(out.getvalue().decode(), newline=""))][1:]
    assert written == ["'" + t if formula_risk(t) else t for t in CORPUS]


def test_the_corpus_is_what_it_says():
    # 80: TAB or CR after whitespace
    assert len(CORPUS) == 800 and sum(map(risky, CORPUS)) == 700


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_csv_escapes_exactly_the_risky_text(corpus_orders, alice):
    notes = [row[9] for row in csv.reader(io.StringIO(export(alice, "csv").decode(), newline=""))][1:]
    assert notes == ["'" + text if risky(text) else text for text in CORPUS]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_xlsx_keeps_the_corpus_as_text_cells(corpus_orders, alice):
    sheet = openpyxl.load_workbook(io.BytesIO(export(alice, "xlsx"))).active
    cells = [row[9] for row in sheet.iter_rows(min_row=2)]
    # text, or empty: never a formula ("f")
    assert all(cell.data_type in ("s", "n") for cell in cells)

    assert [ooxml_text(cell.value) or "" for cell in cells] == CORPUS
