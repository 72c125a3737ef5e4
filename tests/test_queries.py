"""Long reads on a connection of their own return exactly what the ORM returns."""

import datetime as dt

import pytest
from django.db import connection, connections
from django.db.utils import ConnectionDoesNotExist

from reports.pipeline import iter_chunks
from reports.queries import own_connection
from shop import demo
from shop.models import Order
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
FIELDS = ["id", "number", "customer__name", "amount", "discount", "is_gift", "note", "created_at", "shipped_at"]


def test_streamed_chunks_equal_the_orm_rows_datetimes_included():
    demo.seed(700)
    Order.objects.filter(pk=Order.objects.order_by("pk").first().pk).update(
        created_at=dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    )
    upper = Order.objects.order_by("-pk").values_list("pk", flat=True).first()
    chunks = list(iter_chunks(Order.objects.all(), FIELDS, None, upper, 100))
    assert [len(rows) for _, rows in chunks] == [100] * 7 + [0]
    assert [last for last, _ in chunks] == [None] * 7 + [upper]
    streamed = [row for _, rows in chunks for row in rows]
    expected = list(Order.objects.order_by("pk").values_list(*FIELDS))
    assert streamed == expected
    first = streamed[0][FIELDS.index("created_at")]
    assert first == dt.datetime(2024, 3, 1, 2, 59, 59, 999999, tzinfo=dt.UTC) and first.tzinfo is dt.UTC
    assert all(r[FIELDS.index("created_at")].tzinfo is dt.UTC for r in streamed)


def test_the_reader_is_a_connection_of_its_own_and_goes_away():
    with own_connection("default") as reader:
        with reader.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            reader_pid = cursor.fetchone()[0]
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != reader_pid
            alias = reader.alias
    with pytest.raises(ConnectionDoesNotExist):
        connections[alias]

    def gone():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [reader_pid])
            return cursor.fetchone()[0] == 0

    wait_for(gone, timeout=5, message="the reader's backend to exit")


def test_a_reader_is_a_plain_connection_even_where_the_database_uses_a_pool(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {**connection.settings_dict["OPTIONS"], "pool": True})
    with own_connection("default") as reader:
        assert "pool" not in reader.settings_dict["OPTIONS"] and reader.pool is None
        with reader.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
