"""One export approach per process, so each one's peak memory is its own. Run by bench/run.py:

    python bench/approaches.py NAME OUTPUT_FILE      -> prints {"rows": n, "seconds": s, "cpu": s}

The pipeline itself is measured through a real RQ worker by run.py, not here.
"""

import csv
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.http import StreamingHttpResponse  # noqa: E402

from reports.registry import get_report  # noqa: E402
from shop.models import Order  # noqa: E402

REPORT = get_report("orders")
FIELDS = REPORT.layout().fetch_fields()
HEADER = [spec.label for spec in REPORT.layout().column_specs()]


def copy(path, report=REPORT):
    """(a) The limit: PostgreSQL COPY of the report's query, straight into a file."""
    rows = report.layout().annotate(report.get_queryset()).order_by("pk").values_list(*report.layout().fetch_fields())
    sql, params = rows.query.sql_with_params()
    copy_sql = f"COPY ({connection.ops.compose_sql(sql, params)}) TO STDOUT WITH (FORMAT csv)"
    with open(path, "wb") as fh, connection.cursor() as cursor, cursor.copy(copy_sql) as cp:
        for block in cp:
            fh.write(block)
    return Order.objects.count()


def copy_totals(path):
    """(a) The same for the order-totals report, whose net amount and shipped PostgreSQL computes."""
    return copy(path, get_report("order-totals"))


def naive(path):
    """(b) What started it all: every object in memory, then csv.writer."""
    orders = list(Order.objects.select_related("customer").order_by("pk"))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for o in orders:
            writer.writerow(
                [
                    o.id,
                    o.number,
                    o.customer.name,
                    o.country,
                    o.status,
                    o.amount,
                    o.discount,
                    o.quantity,
                    o.is_gift,
                    o.note,
                    o.created_at,
                    o.shipped_at,
                ]
            )
    return len(orders)


class Echo:
    def write(self, value):
        return value


def streaming(path):
    """(c) The seed thread's answer: a streaming response over an iterator (consumed as a client would)."""
    writer = csv.writer(Echo())
    rows = Order.objects.order_by("pk").values_list(*FIELDS).iterator(batch_rows=2000)
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv")
    with open(path, "wb") as fh:
        for part in response.streaming_content:
            fh.write(part)
    return Order.objects.count()


def loop(path):
    """(d) The best hand-written ORM loop: values_list().iterator() in a transaction + csv.writer."""
    n = 0
    with transaction.atomic(), open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for row in Order.objects.order_by("pk").values_list(*FIELDS).iterator(batch_rows=2000):
            writer.writerow(row)
            n += 1
    return n


def xlsxwriter_loop(path):
    """xlsxwriter constant_memory fed by the same loop: the XLSX baseline."""
    import xlsxwriter

    book = xlsxwriter.Workbook(path, {"constant_memory": True, "remove_timezone": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, HEADER)
    n = 0
    with transaction.atomic():
        for n, row in enumerate(Order.objects.order_by("pk").values_list(*FIELDS).iterator(batch_rows=2000), 1):
            sheet.write_row(n, 0, row)
    book.close()
    return n


def json_loop(path):
    """json.dumps of each row of values_list().iterator(): the JSON baseline (decimals as strings,
    datetimes as ISO text, as the pipeline writes them)."""
    names = [spec.name for spec in REPORT.layout().column_specs()]
    n = 0
    with open(path, "w", encoding="utf-8") as fh, transaction.atomic():
        fh.write("[")
        for n, row in enumerate(Order.objects.order_by("pk").values_list(*FIELDS).iterator(batch_rows=2000), 1):
            fh.write(
                ("\n" if n == 1 else ",\n")
                + json.dumps(dict(zip(names, row, strict=True)), default=str, ensure_ascii=False, separators=(",", ":"))
            )
        fh.write("\n]\n")
    return n


APPROACHES = {f.__name__: f for f in (copy, copy_totals, naive, streaming, loop, xlsxwriter_loop, json_loop)}


def enqueue(format, params="{}", slug="orders", username="bench"):
    """Ask for a report as the bench user, the way the API does; prints the job id."""
    from django.contrib.auth import get_user_model

    from reports.services import request_report

    user = get_user_model().objects.get(username=username)
    print(request_report(user=user, slug=slug, format=format, params=json.loads(params)).pk)


def show(job_id):
    from reports.models import ReportJob

    job = ReportJob.objects.get(pk=job_id)
    seconds = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
    print(
        json.dumps(
            {
                "status": job.status,
                "rows": job.rows_done,
                "seconds": seconds,
                "error": job.error,
                "bytes": job.file_size,
            }
        )
    )


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    if name in ("enqueue", "show"):
        globals()[name](*args)
    else:
        started, cpu = time.perf_counter(), time.process_time()
        rows = APPROACHES[name](args[0])
        print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}))
