"""Long reads on a connection of their own return exactly what the ORM returns."""

import datetime as dt

import pytest
from django.db import connection, connections
from django.db.utils import ConnectionDoesNotExist

from reports.queries import key_cuts, own_connection, row_chunks
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
    chunks = list(row_chunks(Order.objects.all(), FIELDS, None, upper, 100))
    assert [len(rows) for rows in chunks] == [100] * 7
    streamed = [row for rows in chunks for row in rows]
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


@pytest.mark.parametrize("server_side", [True, False])
def test_a_key_range_reads_exactly_its_rows_either_way(settings, server_side):
    demo.seed(500)
    keys = list(Order.objects.filter(status="paid").order_by("pk").values_list("pk", flat=True))
    connections["default"].settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = not server_side
    try:
        chunks = list(row_chunks(Order.objects.filter(status="paid"), ["id"], keys[10], keys[-5], 7))
    finally:
        connections["default"].settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = False
    assert [row[0] for rows in chunks for row in rows] == keys[11:-4]
    assert all(len(rows) <= 7 for rows in chunks)


def test_key_cuts_are_the_keys_at_the_given_row_numbers_of_the_filtered_rows():
    demo.seed(1000)
    Order.objects.filter(pk__in=list(Order.objects.order_by("?").values_list("pk", flat=True)[:137])).delete()
    rows = Order.objects.filter(status="paid")
    keys = list(rows.order_by("pk").values_list("pk", flat=True))
    assert key_cuts(rows, keys[-1], [1, 10, len(keys)]) == [keys[0], keys[9], keys[-1]]
    assert key_cuts(rows, keys[-1], [len(keys) + 5]) == [keys[-1]]  # past the rows (deleted meanwhile): the end
    assert key_cuts(rows, keys[20], [10, 30]) == [keys[9], keys[20]]  # only rows up to the upper key count
    assert key_cuts(rows, keys[-1], []) == []
