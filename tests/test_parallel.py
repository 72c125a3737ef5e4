"""Parallel batches: a big report split into parts that several real RQ workers write at once, then joined.

The joined file must be byte for byte the file one job writes; progress sums over the parts; a cancel
stops every part; a part that fails is retried alone, and one that keeps failing fails the job.
"""

import io
import random

import pytest

from notifications.models import Notification
from reports.models import ReportJob, ReportPart, Status
from reports.parallel import key_ranges, part_count
from reports.pipeline import Source, run_job
from reports.writers import FORMATS, ColumnSpec, WriterOptions
from shop import demo
from shop.models import Order
from tests.conftest import wait_for
from tests.test_foundation_flow import csrf_client, list_stored_files, post_job, reports_spool

pytestmark = [pytest.mark.integration]
ORDERS = 20_000
SPLIT = {
    "REPORTS_PARALLEL_MIN_ROWS": 1000,
    "REPORTS_PARALLEL_PARTS": 3,
    "REPORTS_CHUNK_SIZE": 500,
    "REPORTS_PARALLEL_COPY": "true",
}


@pytest.fixture
def orders():
    demo.seed(ORDERS)


# The writers' part interface, alone: parts joined == one writer, for every splittable format.


@pytest.mark.parametrize("fmt", [name for name, f in FORMATS.items() if f.writer_class.splittable])
@pytest.mark.parametrize("sizes", [[3, 4, 5], [0, 5, 0, 2, 0], [0, 0], [7]])
def test_parts_joined_are_byte_identical_to_one_writer(fmt, sizes):
    columns = [ColumnSpec("id", "Id", "integer"), ColumnSpec("note", "Note", "text")]
    options = WriterOptions(extra={"delimiter": ";"})
    notes = ["plain", "=1+1", 'quote "me"', "line\nbreak", "", None, "ünï 🎉"]
    rows = [(i, random.Random(i).choice(notes)) for i in range(sum(sizes))]
    writer_class = FORMATS[fmt].writer_class

    whole = io.BytesIO()
    writer = writer_class(whole, columns, options)
    writer.open()
    writer.write_rows(rows[:2])
    writer.write_rows(rows[2:])
    writer.close()

    parts, start = [], 0
    for size in sizes:
        part = io.BytesIO()
        writer = writer_class(part, columns, options)
        writer.open_part()
        writer.write_rows(rows[start : start + size])
        writer.close_part()
        parts.append(part.getvalue())
        start += size
    joined = io.BytesIO()
    writer = writer_class(joined, columns, options)
    writer.open()
    for part in parts:
        writer.append_part(io.BytesIO(part))
    writer.close()
    assert joined.getvalue() == whole.getvalue()


def test_formats_laid_out_as_a_whole_are_not_splittable():
    assert {name for name, f in FORMATS.items() if f.writer_class.splittable} == {"csv", "csv_excel", "json", "ndjson"}


# Splitting decisions and ranges, in process.


@pytest.mark.django_db
def test_only_big_reports_in_splittable_formats_are_split(alice, settings):
    settings.REPORTS_PARALLEL_MIN_ROWS = 100
    settings.REPORTS_PARALLEL_PARTS = 4

    def parts(fmt, total):
        job = ReportJob(owner=alice, report="orders", format=fmt, params={})
        return part_count(Source.of(job), total)

    assert parts("json", 100) == parts("ndjson", 5000) == 4
    assert parts("json", 99) == 1
    assert parts("xlsx", 5000) == parts("pdf", 5000) == 1
    assert parts("csv", 5000) == parts("csv_excel", 5000) == 1  # the COPY path, bound by PostgreSQL
    settings.REPORTS_CSV_COPY = False
    assert parts("csv", 5000) == parts("csv_excel", 5000) == 4
    settings.REPORTS_CSV_COPY = True
    settings.REPORTS_PARALLEL_COPY = True
    assert parts("csv", 5000) == 4
    settings.REPORTS_PARALLEL_PARTS = 1
    assert parts("csv", 5000) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("parts", [2, 3, 7])
def test_key_ranges_cover_every_row_once_in_order(alice, parts):
    demo.seed(1000)
    Order.objects.filter(pk__in=list(Order.objects.order_by("?").values_list("pk", flat=True)[:137])).delete()
    job = ReportJob(owner=alice, report="orders", format="csv", params={"status": "paid"})
    source = Source.of(job)
    keys = list(source.queryset.order_by("pk").values_list("pk", flat=True))
    ranges = key_ranges(source, len(keys), keys[-1], parts)
    assert len(ranges) == parts and ranges[0][0] is None and ranges[-1][1] == keys[-1]
    covered = [[k for k in keys if (after is None or k > after) and k <= last] for after, last, _ in ranges]
    assert sum(covered, []) == keys
    assert [len(c) for c in covered] == [count for _, _, count in ranges]
    assert max(map(len, covered)) - min(map(len, covered)) <= 1


# Through real workers.


def single_job_bytes(alice, report: str, fmt: str, params=None) -> bytes:
    """The same report written by one job in this process: the reference for the joined file."""
    job = ReportJob.objects.create(owner=alice, report=report, format=fmt, params=params or {})
    assert run_job(job) and job.status == Status.SUCCEEDED
    with job.file.open("rb") as fh:
        return fh.read()


def downloaded(client, job_id) -> bytes:
    response = client.get(f"/reports/jobs/{job_id}/download/")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("fmt", "copy"), [("csv", "true"), ("csv", "false"), ("csv_excel", "true"), ("json", "true"), ("ndjson", "true")]
)
def test_a_split_report_joins_into_the_single_jobs_exact_bytes(orders, alice, start_worker, fmt, copy):
    client = csrf_client(alice)
    params = {"created_from": "2024-02-01"}  # the ranges follow the filtered rows, not the table
    status, job = post_job(client, {"report": "orders", "format": fmt, "params": params})
    assert status == 202
    for _ in range(2):
        start_worker(**SPLIT, REPORTS_CSV_COPY=copy)
    wait_for(lambda: ReportJob.objects.get(pk=job["id"]).status == Status.SUCCEEDED, timeout=90, message="the join")

    row = ReportJob.objects.get(pk=job["id"])
    expected_rows = Order.objects.filter(created_at__date__gte="2024-02-01").count()
    assert 1000 < expected_rows < ORDERS
    assert row.rows_done == row.rows_total == expected_rows
    parts = list(row.parts.all())
    assert [p.index for p in parts] == [0, 1, 2]
    assert all(p.status == "succeeded" and p.attempts == 1 and not p.file for p in parts)
    assert sum(p.rows_done for p in parts) == expected_rows
    assert max(p.rows_done for p in parts) - min(p.rows_done for p in parts) <= 1

    # the row moves first, the owner is told right after
    wait_for(lambda: Notification.objects.filter(user=alice, type="report.ready").exists(), message="the toast")
    ready = Notification.objects.get(user=alice, type="report.ready")
    assert ready.payload["job"]["id"] == job["id"] and ready.payload["job"]["rows_done"] == expected_rows
    data = downloaded(client, job["id"])
    assert data == single_job_bytes(alice, "orders", fmt, params)
    assert row.file_size == len(data)
    stored = list_stored_files(job["id"])
    assert stored == [row.file.path]  # the part files are gone


@pytest.mark.django_db(transaction=True)
def test_parts_run_at_the_same_time_and_progress_sums_over_them(orders, alice, redis_queue, start_worker):
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "slow-orders", "format": "csv"})
    for _ in range(2):
        start_worker(**{**SPLIT, "REPORTS_PARALLEL_PARTS": 2}, SLOW_REPORT_SECONDS_PER_ROW=0.0002,
                     REPORTS_PROGRESS_INTERVAL=0)  # fmt: skip
    seen = []

    def finished():
        row = ReportJob.objects.get(pk=job["id"])
        seen.append(row.rows_done)
        return row.status == Status.SUCCEEDED

    wait_for(finished, timeout=90, interval=0.1, message="the join")
    assert len({n for n in seen if 0 < n < ORDERS}) >= 3  # moved through intermediate sums
    row = ReportJob.objects.get(pk=job["id"])
    assert row.rows_done == ORDERS
    runs = [redis_queue.fetch_job(p.rq_job_id) for p in row.parts.all()]
    assert len(runs) == 2 and len({r.worker_name for r in runs}) == 2
    (first, second) = sorted(runs, key=lambda r: r.started_at)
    assert second.started_at < first.ended_at  # they overlapped
    join = redis_queue.fetch_job(row.rq_join_id)
    wait_for(lambda: join.get_status(refresh=True) == "finished", message="RQ to record the join")  # after the row
    assert join.started_at >= max(r.ended_at for r in runs)
    ids = [int(line.split(b",")[0]) for line in downloaded(client, job["id"]).splitlines()[1:]]
    assert ids == list(Order.objects.order_by("pk").values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_every_part_and_leaves_no_file(orders, alice, start_worker):
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "slow-orders", "format": "json"})
    for _ in range(2):
        start_worker(**{**SPLIT, "REPORTS_PARALLEL_PARTS": 2, "REPORTS_CHUNK_SIZE": 100},
                     SLOW_REPORT_SECONDS_PER_ROW=0.002)  # fmt: skip
    wait_for(lambda: ReportPart.objects.filter(job_id=job["id"], rows_done__gt=0).count() == 2,
             message="both parts to be writing")  # fmt: skip

    response = client.post(f"/api/reports/jobs/{job['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_for(lambda: set(ReportPart.objects.filter(job_id=job["id"]).values_list("status", flat=True)) == {"cancelled"},
             timeout=30, message="both parts to stop")  # fmt: skip
    row = ReportJob.objects.get(pk=job["id"])
    wait_for(lambda: not list(reports_spool().glob(f"{job['id']}-*")), message="the spool files to go")
    assert row.status == Status.CANCELLED and not row.file
    assert 200 <= row.rows_done < ORDERS
    assert not list_stored_files(job["id"])
    assert not Notification.objects.filter(user=alice).exists()  # her own cancel: nothing to keep


@pytest.mark.django_db(transaction=True)
def test_a_failed_part_is_retried_alone(orders, alice, start_worker, tmp_path):
    target = Order.objects.order_by("pk").values_list("pk", flat=True)[ORDERS * 2 // 3 + 50]  # in the third part
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "flaky-orders", "format": "csv"})
    for _ in range(2):
        start_worker(**SPLIT, FLAKY_ORDER_ID=target)
    wait_for(lambda: ReportJob.objects.get(pk=job["id"]).status == Status.SUCCEEDED, timeout=90, message="the join")

    parts = list(ReportPart.objects.filter(job_id=job["id"]))
    assert [p.attempts for p in parts] == [1, 1, 2]
    assert all(p.status == "succeeded" for p in parts)
    data = downloaded(client, job["id"])
    assert data == single_job_bytes(alice, "flaky-orders", "csv")  # no FLAKY_ORDER_ID in this process
    assert data.count(b"\r\n") == ORDERS + 1


@pytest.mark.django_db(transaction=True)
def test_a_part_that_keeps_failing_fails_the_job_and_leaves_no_file(orders, alice, start_worker):
    target = Order.objects.order_by("pk").values_list("pk", flat=True)[ORDERS // 2]  # in the second part
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "flaky-orders", "format": "json"})
    for _ in range(2):
        start_worker(**SPLIT, REPORTS_PART_RETRIES=1, FLAKY_ORDER_ID=target, FLAKY_MODE="always")
    wait_for(lambda: ReportJob.objects.get(pk=job["id"]).status == Status.FAILED, timeout=90, message="the failure")

    job = client.get(f"/api/reports/jobs/{job['id']}/").json()
    assert job["error"] == f"Part 2 of 3 failed: RuntimeError: Flaky on purpose at order {target}"
    assert job["download_url"] is None
    parts = {p.index: p for p in ReportPart.objects.filter(job_id=job["id"])}
    assert parts[1].status == "failed" and parts[1].attempts == 2  # the first try and one retry
    assert parts[0].attempts == parts[2].attempts == 1
    wait_for(lambda: not list_stored_files(job["id"]), timeout=10, message="the part files to go")
    assert not list(reports_spool().glob(f"{job['id']}-*"))
    wait_for(lambda: Notification.objects.filter(user=alice, type="report.failed").exists(), message="the toast")
    failed = Notification.objects.get(user=alice, type="report.failed")
    assert "Part 2 of 3 failed" in failed.body


@pytest.mark.django_db
def test_a_later_attempt_leaves_the_earlier_ones_parts_and_join_nothing_to_do(alice):
    from django.core.files.base import ContentFile

    from reports import jobs
    from reports.files import reports_storage

    job = ReportJob.objects.create(owner=alice, report="orders", format="json", status=Status.RUNNING, attempts=2)
    name = reports_storage().save(f"parts/{job.pk}/1-0-1.part", ContentFile(b'\n{"id":1}'))
    part = ReportPart.objects.create(job=job, index=0, upper=1, rows_total=1, rows_done=1, status="succeeded",
                                     file=name)  # fmt: skip
    jobs.join_parts(str(job.pk), 1)  # the join of attempt 1
    jobs.generate_part(part.pk + 1000)  # a part row replaced meanwhile
    job.refresh_from_db()
    assert job.status == Status.RUNNING and not job.file
    assert reports_storage().exists(name)
    job.delete()  # or a new attempt replacing the parts: their files go with the rows
    assert not reports_storage().exists(name)
