"""Deterministic demo data that exercises every awkward case an export meets.

Text with commas, quotes, newlines, emoji and leading =, +, -, @, tab, CR; NULLs; negative and
large decimals; time-zone-aware datetimes (some with microseconds); booleans; choices; a foreign key.
The same N always gives the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal

from django.db import connection, transaction

from .models import Customer, Order

AWKWARD_TEXT = [
    "Comma, Inc.",
    'Quote "the" quote',
    "Line one\nline two",
    "Windows\r\nline",
    "Emoji 🎉🚀 party",
    "=1+1",
    "+SUM(A1:A9)",
    "-2+3",
    "@cmd",
    "\tTab first",
    "\rCR first",
    "Zoë Ångström — ñandú",
    "",
    "  spaced  ",
    "'already quoted",
    '=HYPERLINK("http://example.com","click")',
    "Back\\slash",
    "semi;colon|pipe",
    "日本語のテキスト",
]
FIRST = ["Ana", "Bruno", "Carla", "Diego", "Eva", "Fábio", "Grace", "Hugo", "Iris", "João", "Kim", "Lúcia"]
LAST = ["Silva", "Souza", "O'Brien", "Müller", "Nakamura", "Okafor", "García", "Smith", "Kowalski", "Dubois"]
COUNTRIES = ["BR", "PT", "US", "DE", "JP", "NG", "FR", "PL", "IE", "ES"]
CITIES = ["São Paulo", "Lisboa", "New York", "Köln", "Tōkyō", "Lagos", "Paris", "Kraków", "Dublin", "Sevilla"]
STATUSES = [s.value for s in Order.Status]
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
TWO_YEARS = 2 * 365 * 24 * 3600
BATCH = 10_000

CUSTOMER_FIELDS = ["id", "name", "email", "country", "city", "notes", "is_active", "credit_limit", "created_at"]
ORDER_FIELDS = [
    "id",
    "number",
    "customer_id",
    "status",
    "country",
    "amount",
    "discount",
    "quantity",
    "is_gift",
    "note",
    "created_at",
    "shipped_at",
]


def customer_count(orders: int) -> int:
    return max(50, orders // 20)


def customer_rows(count: int, seed: int = 1) -> Iterator[tuple]:
    rnd = random.Random(seed)
    for pk in range(1, count + 1):
        country = rnd.randrange(len(COUNTRIES))
        if pk % 7 == 0:
            name = AWKWARD_TEXT[pk % len(AWKWARD_TEXT)] or "Nameless"
        else:
            name = f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"
        notes = None if pk % 3 else AWKWARD_TEXT[(pk // 3) % len(AWKWARD_TEXT)]
        credit = None if pk % 5 == 0 else Decimal(rnd.randrange(0, 10**9)) / 100
        created = EPOCH + dt.timedelta(seconds=rnd.randrange(TWO_YEARS))
        yield (
            pk,
            name,
            f"customer{pk}@{['example.com', 'Mail.Example.org', 'exemplo.com.br'][pk % 3]}",
            COUNTRIES[country],
            CITIES[country],
            notes,
            pk % 11 != 0,
            credit,
            created,
        )


def order_rows(count: int, customers: int, seed: int = 2) -> Iterator[tuple]:
    rnd = random.Random(seed)
    for pk in range(1, count + 1):
        status = STATUSES[rnd.randrange(len(STATUSES))]
        cents = rnd.randrange(-50_000, 5_000_000)
        if pk % 997 == 0:
            # the largest numeric(14, 2)
            cents = 99_999_999_999_999 if pk % 2 else -99_999_999_999_999
        created = EPOCH + dt.timedelta(seconds=rnd.randrange(TWO_YEARS))
        if pk % 13 == 0:
            created += dt.timedelta(microseconds=rnd.randrange(1, 1_000_000))
        shipped = created + dt.timedelta(hours=rnd.randrange(1, 240)) if status == "shipped" else None
        roll = rnd.random()
        note = None if roll < 0.4 else AWKWARD_TEXT[pk % len(AWKWARD_TEXT)] if roll < 0.6 else f"Order note {pk}"
        yield (
            pk,
            f"ORD-{pk:08d}",
            rnd.randrange(1, customers + 1),
            status,
            COUNTRIES[rnd.randrange(len(COUNTRIES))],
            Decimal(cents) / 100,
            None if rnd.random() < 0.7 else Decimal(rnd.randrange(0, 10_000)) / 100,
            rnd.randrange(1, 20),
            rnd.random() < 0.1,
            note,
            created,
            shipped,
        )


def seed(orders: int, *, progress=None) -> tuple[int, int]:
    """Replace the shop's data with `orders` deterministic orders. Returns (customers, orders)."""
    customers = customer_count(orders)
    with transaction.atomic():
        _delete_all()
        _insert(Customer, CUSTOMER_FIELDS, customer_rows(customers), progress=None)
        _insert(Order, ORDER_FIELDS, order_rows(orders, customers), progress=progress)
    _reset_sequences()
    if connection.vendor == "postgresql":
        # Fresh statistics, or the planner guesses from an empty table; outside a transaction also the
        # visibility map that autovacuum sets after a bulk load (index-only scans then skip the heap).
        command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
        with connection.cursor() as cursor:
            cursor.execute(f"{command} {Customer._meta.db_table}, {Order._meta.db_table}")
    return customers, orders


def _insert(model, fields: list[str], rows: Iterator[tuple], *, progress) -> None:
    if connection.vendor == "postgresql":
        sql = f"COPY {model._meta.db_table} ({', '.join(fields)}) FROM STDIN"
        with connection.cursor() as cursor, cursor.copy(sql) as copy:
            for done, row in enumerate(rows, 1):
                copy.write_row(row)
                if progress and done % BATCH == 0:
                    progress(done)
        return
    batch = []
    for done, row in enumerate(rows, 1):
        batch.append(model(**dict(zip(fields, row, strict=True))))
        if len(batch) == BATCH:
            model.objects.bulk_create(batch)
            batch.clear()
            if progress:
                progress(done)
    model.objects.bulk_create(batch)


def _delete_all() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {Order._meta.db_table}, {Customer._meta.db_table}")
    else:
        Order.objects.all().delete()
        Customer.objects.all().delete()


def _reset_sequences() -> None:
    from django.core.management.color import no_style

    statements = connection.ops.sequence_reset_sql(no_style(), [Customer, Order])
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
