"""Columns chosen at request time: validation, storage with the job (retry keeps them), and every
format written with exactly the chosen columns in the chosen order, read back with real readers."""

import csv
import io
import json

import openpyxl
import pyarrow.parquet as pq
import pytest
from pypdf import PdfReader

from reports.models import ReportJob, Status
from reports.registry import get_report
from reports.tasks import run_in_foreground
from reports.writers.base import formula_risk
from shop import demo
from shop.models import Customer, Order
from tests.helpers import JOBS_URL, post_json

pytestmark = pytest.mark.django_db
CHOSEN = ["amount", "customer__name", "created_at", "id"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["amount", "secret"], "Unknown column 'secret'. This report's columns: id, number, customer__name,"),
        (["x" * 5000], "Unknown column 'xxxxxxxxxxxx"),
        ([f"c{n}" for n in range(7)], "and 2 more."),
        ([f"c{n}" for n in range(100_000)], "At most"),
        (["id"] * 400_000, "At most"),
        (["amount", "amount"], "Each column at most once: amount given more than once."),
        ([], "Must be a non-empty list of column names."),
        ("amount", "Must be a non-empty list of column names."),
        ([1, 2], "Must be a non-empty list of column names."),
        ({"amount": True}, "Must be a non-empty list of column names."),
        (["customer__password"], "Unknown column 'customer__password'."),
    ],
)
def test_wrong_columns_are_refused_naming_them(alice_client, columns, message):
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "columns": columns})
    assert response.status_code == 400
    (text,) = response.json()["fields"]["columns"]
    assert message in text and len(text) < 1000
    assert not ReportJob.objects.exists()


def test_the_choice_is_stored_listed_and_kept_by_a_retry(alice_client, alice):
    reports = alice_client.get("/api/reports/").json()["reports"]
    orders = next(r for r in reports if r["slug"] == "orders")
    assert orders["columns"][:3] == [
        {"name": "id", "label": "Id"},
        {"name": "number", "label": "Number"},
        {"name": "customer__name", "label": "Customer"},
    ]
    body = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "columns": CHOSEN}).json()
    assert body["columns"] == CHOSEN
    # All of them in the declared order is the default, stored as such.
    every = [c["name"] for c in orders["columns"]]
    assert (
        post_json(alice_client, JOBS_URL, {"report": "orders", "format": "json", "columns": every}).json()["columns"]
        is None
    )
    job = ReportJob.objects.get(pk=body["id"])
    ReportJob.objects.filter(pk=job.pk).update(status=Status.FAILED, error="boom")
    retried = alice_client.post(f"{JOBS_URL}{job.pk}/retry/").json()
    assert retried["columns"] == CHOSEN
    # Another choice of columns is another request, not the same job again.
    other = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "columns": ["id"]})
    assert other.status_code == 202 and other.json()["id"] != retried["id"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "xlsx", "parquet", "pdf"])
def test_every_format_writes_the_chosen_columns_in_order(alice, fmt):
    demo.seed(120)
    job = ReportJob.objects.create(owner=alice, report="orders", format=fmt, columns=CHOSEN)
    assert run_in_foreground(job, batch_rows=50)
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED and job.rows_done == 120, job.error
    data = job.file.open("rb").read()
    orders = list(Order.objects.select_related("customer").order_by("pk"))
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
        assert rows[0] == ["Amount", "Customer", "Created at", "Id"]
        assert [(r[0], r[3]) for r in rows[1:]] == [(str(o.amount), str(o.id)) for o in orders]
    elif fmt == "json":
        records = json.loads(data)
        assert [list(r) for r in records] == [CHOSEN] * 120
        assert [r["amount"] for r in records] == [str(o.amount) for o in orders]
    elif fmt == "ndjson":
        records = [json.loads(line) for line in data.decode().splitlines()]
        assert [list(r) for r in records] == [CHOSEN] * 120
        assert [r["customer__name"] for r in records] == [o.customer.name for o in orders]
    elif fmt == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0] == ("Amount", "Customer", "Created at", "Id")
        # typed cells
        assert [(r[0], r[3]) for r in rows[1:]] == [(float(o.amount), o.id) for o in orders]
        assert sheet.cell(2, 3).is_date and sheet.cell(2, 1).number_format != "General"
        # Widths follow the columns: a decimal's, a text's, a datetime's, an integer's.
        assert [sheet.column_dimensions[c].width for c in "ABCD"] == [14, 24, 20, 12]
    elif fmt == "parquet":
        table = pq.read_table(io.BytesIO(data))
        assert table.column_names == CHOSEN
        assert str(table.schema.field("amount").type).startswith("decimal128")
        assert table.column("id").to_pylist() == [o.id for o in orders]
    else:
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
        assert "Amount" in text and "Customer" in text and "Number" not in text and "Status" not in text


@pytest.mark.django_db(transaction=True)
def test_a_computed_column_chosen_without_its_source_field(alice):
    demo.seed(30)
    job = ReportJob.objects.create(owner=alice, report="customers", format="csv", columns=["email_domain", "name"])
    assert run_in_foreground(job)
    job.refresh_from_db()
    rows = list(csv.reader(io.StringIO(job.file.open("rb").read().decode("utf-8-sig"))))
    customers = Customer.objects.order_by("pk")
    # the demo has formula-like names
    shown = [("'" if formula_risk(c.name) else "") + c.name for c in customers]
    assert rows == [["E-mail domain", "Name"]] + [
        [c.email.rpartition("@")[2].lower(), name] for c, name in zip(customers, shown, strict=True)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_chosen_column_is_gone_fails_saying_so(alice, monkeypatch):
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv", columns=["amount", "number"])
    report_class = type(get_report("orders"))
    monkeypatch.setattr(report_class, "columns", [c for c in report_class.columns if c != "number"])
    run_in_foreground(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error.startswith("Unknown column 'number'. This report's columns: id, customer__name,")


@pytest.mark.django_db(transaction=True)
def test_the_demos_database_computed_columns_arrive_in_the_file(alice):
    """The order-totals demo report: `net` and `shipped` are SQL expressions, read like plain columns."""
    demo.seed(200)
    job = ReportJob.objects.create(owner=alice, report="order-totals", format="csv", columns=["id", "net", "shipped"])
    assert run_in_foreground(job, batch_rows=30)
    job.refresh_from_db()
    rows = list(csv.reader(io.StringIO(job.file.open("rb").read().decode())))
    orders = Order.objects.order_by("pk")
    assert rows[0] == ["Id", "Net amount", "Shipped"]
    assert rows[1:] == [
        [str(o.id), str(o.amount - (o.discount or 0)), str(o.shipped_at is not None).lower()] for o in orders
    ]
    assert {r[2] for r in rows[1:]} == {"true", "false"} and any(o.discount for o in orders)
