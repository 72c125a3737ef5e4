"""Reading a report's rows: where its segments are cut, and a key range of its queryset as batches
of columns. A batch is the rows read and formatted at a time: at most REPORTS_CHUNK_SIZE rows, held
as one Polars frame (on PostgreSQL cut from ADBC's Arrow record batches, elsewhere read by keyset
queries); a worker holds the one it formats and the few read ahead of it (read_ahead)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from queue import Full, Queue
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import adbc_driver_postgresql.dbapi as adbc_postgresql
import polars as pl
from django.db import connections
from django.db.models import F, QuerySet, TextField
from django.db.models.functions import Cast

from .writers import ColumnSpec
from .writers.base import DTYPES, changed_where, frame_from_rows

if TYPE_CHECKING:
    from .definitions import Layout

# Read from PostgreSQL about this much at a time (8,400 orders of 12 columns). Larger batches were a
# few percent faster in the benchmark and held ~50 MB more in a worker (XLSX, 4 MB).
ADBC_BATCH_BYTES = 1 << 20


def key_range(queryset: QuerySet, after, upper_key) -> QuerySet:
    """The rows `after < pk <= upper_key` (from the start when `after` is None), in key order."""
    rows = queryset.filter(pk__lte=upper_key) if after is None else queryset.filter(pk__gt=after, pk__lte=upper_key)
    return rows.order_by("pk")


def last_key(queryset: QuerySet):
    """The greatest key among the rows (None: there are none). By ORDER BY, not MAX(): every key has
    an order, not every key a max() (PostgreSQL has none for uuid); either is read off the primary
    key's index backwards."""
    return queryset.order_by("-pk").values_list("pk", flat=True).first()


def key_cuts(queryset: QuerySet, upper_key, positions: list[int]) -> list:
    """The key of the row at each of `positions` (1-based, in key order) among the rows `pk <= upper_key`:
    where segments end. A query per cut, each walking the key index from the cut before it (OFFSET),
    so all of them read the rows once; a position past the rows (deleted meanwhile) gets `upper_key`,
    which leaves the segments after it empty."""
    keys, after, at = [], None, 0
    for position in positions:
        skip = position - at - 1
        key = next(iter(key_range(queryset, after, upper_key).values_list("pk", flat=True)[skip : skip + 1]), None)
        # fewer rows than planned
        if key is None:
            return keys + [upper_key] * (len(positions) - len(keys))
        keys.append(key)
        after, at = key, position
    return keys


def report_batches(layout: Layout, queryset: QuerySet, after, upper_key, batch_rows: int) -> Iterator[pl.DataFrame]:
    """The report's rows `after < pk <= upper_key`, in key order, as batches of its columns (Polars frames,
    typed as the writers take them: reports.writers.base.frame_from_rows).

    On PostgreSQL, one query read as Arrow batches of about ADBC_BATCH_BYTES through the ADBC driver
    (binary COPY on a connection of its own: one plan, one snapshot, no Python object per value),
    cut to at most `batch_rows` rows. Elsewhere, `batch_rows` rows at a time by keyset queries, made
    batches in Python.
    """
    if upper_key is None:
        return
    rows = key_range(layout.annotate(queryset), after, upper_key)
    fetch = layout.fetch_specs()
    batches = (
        adbc_batches(rows, fetch, batch_rows)
        if connections[queryset.db].vendor == "postgresql"
        else (frame_from_rows(fetch, values) for values in row_batches(rows, [s.name for s in fetch], batch_rows))
    )
    make_frame = layout.frame_maker()
    for frame in batches:
        yield make_frame(frame)


def adbc_batches(rows: QuerySet, fetch: list[ColumnSpec], batch_rows: int) -> Iterator[pl.DataFrame]:
    """The rows' fields as frames, through ADBC. Text is cast to text in SQL, so that any text-like
    type (varchar, uuid, json...) arrives as a string. Decimals arrive in PostgreSQL's binary form,
    made into the text numeric_out writes by the driver (numeric_digits): that is work PostgreSQL,
    which every worker shares, no longer does (a ::text cast cost it 0.14 s a million rows of the
    orders report's two decimal columns)."""
    columns = {f"_c{i}": Cast(F(s.name), TextField()) if s.kind == "text" else F(s.name) for i, s in enumerate(fetch)}
    sql, params = rows.annotate(**columns).values_list(*columns).query.sql_with_params()
    connection = connections[rows.db]
    connection.ensure_connection()
    query = connection.ops.compose_sql(sql, params)
    names = {alias: spec.name for alias, spec in zip(columns, fetch, strict=True)}
    types = {spec.name: DTYPES[spec.kind] for spec in fetch}
    decimals = [spec.name for spec in fetch if spec.kind == "decimal"]
    with adbc_postgresql.connect(adbc_uri(connection.settings_dict)) as reader, reader.cursor() as cursor:
        cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(ADBC_BATCH_BYTES)})
        cursor.execute(query)
        batches = (
            numeric_digits(pl.from_arrow(batch).rename(names), decimals).cast(types)
            for batch in cursor.fetch_record_batch()
        )
        for batch in read_ahead(batches):
            yield from batch.iter_slices(batch_rows)


# How ADBC's PostgreSQL driver writes numeric's special values, and how PostgreSQL itself does.
NUMERIC_SPECIALS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def numeric_digits(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """The columns `names` that hold numeric values as ADBC hands them over (an opaque extension type
    whose storage is the text numeric_out writes, digit for digit, but NaN and ±Infinity in lower
    case) as that text, as PostgreSQL writes it."""
    opaque = [name for name in names if isinstance(frame.schema[name], pl.Extension)]
    if not opaque:
        return frame
    frame = frame.with_columns(frame[name].ext.storage() for name in opaque)
    return changed_where(
        frame,
        opaque,
        lambda text: text.is_in(list(NUMERIC_SPECIALS)),
        lambda text: text.replace_strict(NUMERIC_SPECIALS),
    )


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """The items, read `depth` ahead by a thread: the next batch arrives from the database while the
    writer formats this one (both release the GIL). Closing the iterator stops the reading."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    with contextlib.suppress(Full):
                        queue.put(item, timeout=0.1)
                        break
                if stop.is_set():
                    return
            queue.put(done)
        # handed to the consumer, raised there
        except BaseException as exc:
            queue.put(exc)

    thread = threading.Thread(target=read, name="reports-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def adbc_uri(settings_dict: dict) -> str:
    """A libpq URI for the database Django connects to (its host, port, name, user, password, options)."""
    user = quote(settings_dict["USER"] or "", safe="")
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict.get("PASSWORD") else ""
    host = quote(settings_dict.get("HOST") or "", safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    options = {k: v for k, v in (settings_dict.get("OPTIONS") or {}).items() if isinstance(v, str | int)}
    query = f"?{urlencode(options)}" if options else ""
    return (
        f"postgresql://{user}{password}{'@' if user else ''}{host}{port}/{quote(settings_dict['NAME'], safe='')}{query}"
    )


def row_batches(rows: QuerySet, fields: list[str], batch_rows: int) -> Iterator[list[tuple]]:
    """The rows' fields, `batch_rows` rows at a time, by keyset queries `pk > last`: no read holds a
    lock or a transaction between batches."""
    keyed = rows.values_list("pk", *fields)
    last = None
    while True:
        batch = list((keyed if last is None else keyed.filter(pk__gt=last))[:batch_rows])
        if not batch:
            return
        last = batch[-1][0]
        yield [row[1:] for row in batch]
        if len(batch) < batch_rows:
            return
