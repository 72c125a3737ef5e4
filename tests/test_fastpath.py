"""The COPY fast path writes exactly the bytes of the Python path."""

import datetime as dt
from decimal import Decimal

import pytest

from reports import fastpath
from reports.files import reports_storage
from reports.models import ReportJob, Status
from reports.registry import get_report
from reports.tasks import run_in_foreground
from shop import demo
from shop.models import Customer, Order

pytestmark = pytest.mark.django_db(transaction=True)

EDGE_TEXT = ['"', "\n", "a\r", '"quoted"', ",", "\\.", "trailing\n", "=", "-", " ", "x\ny\nz", '""', "ä,ö\r\nü"]


def export(user, report, fmt, params=None, *, copy: bool, settings) -> bytes:
    settings.REPORTS_CSV_COPY = copy
    job = ReportJob.objects.create(owner=user, report=report, format=fmt, params=params or {})
    run_in_foreground(job, chunk_size=97)  # many chunks, none aligned with anything
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    with reports_storage().open(job.file.name, "rb") as fh:
        return fh.read()


@pytest.fixture
def awkward_orders():
    demo.seed(3000)
    customer = Customer.objects.first()
    stamp = dt.datetime(2025, 6, 1, 12, 0, 0, 120, tzinfo=dt.UTC)
    Order.objects.bulk_create(
        Order(number=f"EDGE-{i}", customer=customer, status="paid", country="BR", amount=Decimal("-0.01"),
              discount=Decimal("0.00"), quantity=-5, is_gift=True, note=text, created_at=stamp + dt.timedelta(days=i),
              shipped_at=stamp)
        for i, text in enumerate(EDGE_TEXT)
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "csv_excel"])
def test_copy_output_is_byte_identical_to_the_python_path(awkward_orders, alice, settings, fmt):
    assert fastpath.eligible(get_report("orders"), fmt)
    fast = export(alice, "orders", fmt, copy=True, settings=settings)
    slow = export(alice, "orders", fmt, copy=False, settings=settings)
    assert fast.count(b"\r\n") >= Order.objects.count()
    assert fast == slow


def test_identical_with_filters_and_in_another_time_zone(awkward_orders, alice, settings):
    settings.TIME_ZONE = "America/Sao_Paulo"
    params = {"status": "paid", "min_amount": "-1"}
    fast = export(alice, "orders", "csv", params, copy=True, settings=settings)
    slow = export(alice, "orders", "csv", params, copy=False, settings=settings)
    assert b"-03:00" in fast
    assert fast == slow


def test_reports_with_computed_columns_take_the_python_path():
    assert not fastpath.eligible(get_report("customers"), "csv")
    assert not fastpath.eligible(get_report("orders"), "xlsx")


def test_crlf_conversion_leaves_newlines_inside_quotes_across_blocks():
    convert = fastpath.CrlfConverter()
    data = b'1,"a\nb",c\n2,"x""\ny",z\n3,plain\n'
    converted = b"".join(convert(data[i : i + 3]) for i in range(0, len(data), 3))
    assert converted == b'1,"a\nb",c\r\n2,"x""\ny",z\r\n3,plain\r\n'


def test_closing_the_copy_early_cancels_the_query_and_frees_its_connection(alice):
    """A cancel arrives between batches: closing the generator must stop PostgreSQL, not drain it."""
    import csv
    import io

    from django.db import connection

    demo.seed(3000)
    report = get_report("orders")
    queryset = report.get_report_queryset({}, alice)
    upper = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    fh = io.BytesIO()
    chunks = fastpath.copy_chunks(fh, report, queryset, None, upper, 100)
    assert next(chunks) == 100
    assert next(chunks) == 100
    chunks.close()
    rows = list(csv.reader(io.StringIO(fh.getvalue().decode(), newline="")))
    assert [int(r[0]) for r in rows] == list(Order.objects.order_by("pk").values_list("pk", flat=True)[:200])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (%%' AND pid <> pg_backend_pid()")
        assert cursor.fetchone()[0] == 0
