"""Reading a report's rows: ADBC batches (PostgreSQL) and keyset batches (elsewhere) hold exactly what
the ORM returns, typed as the writers take them; segment cuts are the keys at the given row numbers."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import DecimalField, F, Max, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Concat, Upper

from reports import Column, Report
from reports.queries import adbc_batches, adbc_uri, key_cuts, key_range, report_batches, row_batches
from reports.registry import get_report
from reports.writers import ColumnSpec
from shop import demo
from shop.models import Order
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class ExpressionOrders(Report):
    slug = "expression-orders"
    model = Order
    columns = [
        "id",
        "amount",
        Column("net", "Net", expression=F("amount") - F("quantity")),
        Column("shout", "Shout", expression=Upper(Concat(F("country"), Value("!")))),
        Column("checked", fields=["note"]),
    ]

    def value_checked(self, row):
        return (row["note"] or "")[:3]


def python_values(frame, specs):
    """The frame's values as the ORM gives them (decimals as Decimal, datetimes aware)."""
    rows = []
    for row in frame.iter_rows():
        rows.append(
            tuple(Decimal(v) if s.kind == "decimal" and v is not None else v for v, s in zip(row, specs, strict=True))
        )
    return rows


def test_batches_hold_what_the_orm_returns_datetimes_and_decimals_included():
    demo.seed(700)
    first = Order.objects.order_by("pk").first()
    moment = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    Order.objects.filter(pk=first.pk).update(created_at=moment)
    report = get_report("orders")
    queryset = report.get_report_queryset({}, None)
    upper = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    frames = list(report_batches(report.layout(), queryset, None, upper, 100))
    specs = report.layout().column_specs()
    assert all(list(f.columns) == [s.name for s in specs] for f in frames)
    streamed = [row for frame in frames for row in python_values(frame, specs)]
    assert streamed == list(Order.objects.order_by("pk").values_list(*report.layout().fetch_fields()))
    assert streamed[0][specs.index(next(s for s in specs if s.name == "created_at"))] == moment


def test_expression_columns_are_computed_by_the_database_and_python_ones_per_batch():
    demo.seed(300)
    report = ExpressionOrders()
    assert [s.kind for s in report.layout().column_specs()] == ["integer", "decimal", "decimal", "text", "text"]
    upper = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    frames = list(report_batches(report.layout(), report.get_report_queryset({}, None), None, upper, 100))
    got = [row for frame in frames for row in frame.iter_rows()]
    expected = [
        (o.id, f"{o.amount:.2f}", f"{o.amount - o.quantity:.2f}", f"{o.country.upper()}!", (o.note or "")[:3])
        for o in Order.objects.order_by("pk")
    ]
    assert got == expected


def test_decimals_are_the_text_postgresql_writes_special_values_included():
    """Decimals arrive in PostgreSQL's binary form, made into text by the driver: the text numeric_out
    writes, whatever the scale, NaN and ±Infinity included."""
    demo.seed(300)
    value = RawSQL(
        """(CASE mod("shop_order"."id", 7) WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity'
                      ELSE (("shop_order"."amount" - 500) * power(10::numeric, mod("shop_order"."id", 29) - 14))::text
                      END)::numeric""",
        [],
        output_field=DecimalField(),
    )
    rows = key_range(Order.objects.annotate(value=value), None, Order.objects.aggregate(Max("pk"))["pk__max"])
    frames = list(adbc_batches(rows, [ColumnSpec("value", "Value", "decimal")], 100))
    expected = list(rows.annotate(text=Cast("value", TextField())).values_list("text", flat=True))
    assert {"NaN", "Infinity", "-Infinity"} <= set(expected) and any(t.startswith("-0.0000") for t in expected)
    assert [text for frame in frames for text in frame["value"].to_list()] == expected


def test_a_key_range_reads_exactly_its_rows_either_way():
    demo.seed(500)
    report = get_report("orders")
    keys = list(Order.objects.filter(status="paid").order_by("pk").values_list("pk", flat=True))
    queryset = report.get_report_queryset({"status": "paid"}, None)
    by_adbc = [
        row[0]
        for frame in report_batches(report.layout(), queryset, keys[10], keys[-5], 7)
        for row in frame.iter_rows()
    ]
    batches = list(row_batches(key_range(queryset, keys[10], keys[-5]), ["id"], 7))
    assert by_adbc == [row[0] for batch in batches for row in batch] == keys[11:-4]
    assert all(len(batch) <= 7 for batch in batches)


def test_closing_the_batches_early_ends_the_query():
    demo.seed(3000)
    report = get_report("orders")
    upper = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    frames = report_batches(report.layout(), report.get_report_queryset({}, None), None, upper, 100)
    next(frames)
    frames.close()

    def gone():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%shop_order%%' AND "
                "pid <> pg_backend_pid() AND state = 'active'"
            )
            return cursor.fetchone()[0] == 0

    wait_for(gone, timeout=10, message="the read to end")


def test_the_adbc_uri_is_the_databases_own():
    settings_dict = {
        "USER": "me@x",
        "PASSWORD": "p@ss:w/rd",
        "HOST": "db.example",
        "PORT": 5433,
        "NAME": "reports",
        "OPTIONS": {"sslmode": "require", "pool": {"min_size": 1}},
    }
    assert adbc_uri(settings_dict) == "postgresql://me%40x:p%40ss%3Aw%2Frd@db.example:5433/reports?sslmode=require"


def test_key_cuts_are_the_keys_at_the_given_row_numbers_of_the_filtered_rows():
    demo.seed(1000)
    Order.objects.filter(pk__in=list(Order.objects.order_by("?").values_list("pk", flat=True)[:137])).delete()
    rows = Order.objects.filter(status="paid")
    keys = list(rows.order_by("pk").values_list("pk", flat=True))
    assert key_cuts(rows, keys[-1], [1, 10, len(keys)]) == [keys[0], keys[9], keys[-1]]
    # past the rows (deleted meanwhile): the end
    assert key_cuts(rows, keys[-1], [len(keys) + 5]) == [keys[-1]]
    # only rows up to the upper key count
    assert key_cuts(rows, keys[20], [10, 30]) == [keys[9], keys[20]]
    assert key_cuts(rows, keys[-1], []) == []


def test_the_adbc_driver_is_an_optimized_build():
    """The pinned driver must be an optimized build (docs/engine.md): PyPI's wheels from
    1.9.0 on are compiled without optimization and read PostgreSQL's rows with twice the CPU. An
    unoptimized build keeps tiny inline helpers such as adbcpq::ReadUnsafe<T> as functions of their own."""
    import re
    from pathlib import Path

    import adbc_driver_postgresql

    library = Path(adbc_driver_postgresql.__file__).with_name("libadbc_driver_postgresql.so").read_bytes()
    assert len(library) > 1_000_000
    # its symbol table is there to be read
    assert b"AdbcDatabaseNew" in library
    assert re.findall(rb"_ZN6adbcpq10ReadUnsafeI\w+", library) == []
