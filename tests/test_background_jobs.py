"""Request through the API -> a real RQ worker process -> the file in storage -> download.

Runs on PostgreSQL and Redis; the worker is a separate `manage.py rqworker` process.
"""

import csv
import io
import re
import time

import pytest
from django.test import Client

from reports.files import reports_storage
from reports.models import ReportJob, Status
from shop import demo
from shop.models import Order
from tests.helpers import (
    JOBS_URL,
    PLAIN_ERROR,
    csrf_client,
    expected_orders,
    list_stored_files,
    post_job,
    reports_spool,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ORDERS = 20_000


@pytest.fixture
def orders():
    demo.seed(ORDERS)
    return ORDERS


def download_rows(client, job_id) -> list[list[str]]:
    response = client.get(f"/reports/jobs/{job_id}/download/")
    assert response.status_code == 200, response.content[:500]
    data = b"".join(response.streaming_content)
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_request_answers_202_and_a_worker_writes_every_row(orders, alice, run_worker):
    client = csrf_client(alice)
    started = time.monotonic()
    status, job = post_job(client, {"report": "orders", "format": "csv"})
    assert status == 202
    # the request only records the job
    assert time.monotonic() - started < 2
    assert job["status"] == "queued" and job["download_url"] is None and job["report"] == "orders"

    run_worker(REPORTS_CHUNK_SIZE=1000)

    job = client.get(f"{JOBS_URL}{job['id']}/").json()
    assert job["status"] == "succeeded", job
    assert job["rows_done"] == job["rows_total"] == ORDERS
    assert job["progress"] == 1.0
    row = ReportJob.objects.get(pk=job["id"])
    assert row.upper_key == Order.objects.order_by("-pk").first().pk
    # a small report: one segment
    assert row.segments.count() == 1 and row.segments.get().rows_done == ORDERS
    rows = download_rows(client, job["id"])
    assert rows[0] == [
        "Id",
        "Number",
        "Customer",
        "Country",
        "Status",
        "Amount",
        "Discount",
        "Quantity",
        "Is gift",
        "Note",
        "Created at",
        "Shipped at",
    ]
    assert rows[1:] == expected_orders(Order.objects.all())
    assert job["file_size"] == reports_storage().size(row.file.name)
    # the awkward values really were in there
    flat = {cell for r in rows for cell in r}
    assert {"'=1+1", "'@cmd", "Line one\nline two", "Emoji 🎉🚀 party", "-999999999999.99"} <= flat


def test_filters_are_applied(orders, alice, run_worker):
    client = csrf_client(alice)
    params = {"status": "paid", "country": "BR", "min_amount": "1000", "created_from": "2024-06-01"}
    status, job = post_job(client, {"report": "orders", "format": "csv", "params": params})
    assert status == 202, job
    assert job["params"] == params
    run_worker()
    expected = Order.objects.filter(status="paid", country="BR", amount__gte=1000, created_at__date__gte="2024-06-01")
    assert 0 < expected.count() < ORDERS
    assert download_rows(client, job["id"])[1:] == expected_orders(expected)


def test_a_report_with_computed_columns_runs_on_the_general_path(orders, alice, run_worker):
    client = csrf_client(alice)
    status, job = post_job(client, {"report": "customers", "format": "csv_excel", "params": {"country": "PT"}})
    assert status == 202, job
    run_worker()
    response = client.get(f"/reports/jobs/{job['id']}/download/")
    data = b"".join(response.streaming_content)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    from shop.models import Customer

    customers = Customer.objects.filter(country="PT").order_by("pk")
    assert [r[0] for r in rows[1:]] == [str(c.pk) for c in customers]
    assert [r[3] for r in rows[1:]] == [c.email.rpartition("@")[2].lower() for c in customers]


def test_cancel_while_running_stops_at_a_batch_boundary_and_leaves_no_file(orders, alice, start_worker):
    client = csrf_client(alice)
    status, job = post_job(client, {"report": "slow-orders", "format": "csv"})
    assert status == 202
    start_worker(REPORTS_CHUNK_SIZE=100, SLOW_REPORT_SECONDS_PER_ROW=0.002)
    wait_for(lambda: ReportJob.objects.get(pk=job["id"]).rows_done >= 100, message="the first batches")

    response = client.post(f"{JOBS_URL}{job['id']}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    wait_for(lambda: not list(reports_spool().glob(f"{job['id']}-*")), timeout=30, message="the run to stop")
    row = ReportJob.objects.get(pk=job["id"])
    stopped_at = (row.rows_done, list(row.segments.values_list("rows_done", flat=True)))
    # a batch written after the cancel would move these on
    time.sleep(1)
    row.refresh_from_db()
    assert (row.rows_done, list(row.segments.values_list("rows_done", flat=True))) == stopped_at
    assert row.status == Status.CANCELLED
    assert 100 <= row.rows_done < ORDERS
    assert not row.file
    assert not list_stored_files(job["id"])
    assert client.get(f"/reports/jobs/{job['id']}/download/").status_code == 409
    again = client.post(f"{JOBS_URL}{job['id']}/cancel/")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]


def test_cancel_while_queued_means_it_never_starts(orders, alice, run_worker):
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "orders", "format": "csv"})
    assert client.post(f"{JOBS_URL}{job['id']}/cancel/").status_code == 200
    run_worker()
    row = ReportJob.objects.get(pk=job["id"])
    assert row.status == Status.CANCELLED and row.started_at is None and row.rows_done == 0


def test_a_job_that_raises_ends_failed_with_a_plain_message_and_a_reference(orders, alice, run_worker):
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "exploding", "format": "csv"})
    run_worker(REPORTS_CHUNK_SIZE=1000)
    job = client.get(f"{JOBS_URL}{job['id']}/").json()
    assert job["status"] == "failed"
    reference = re.fullmatch(PLAIN_ERROR, job["error"])[1]
    detail = ReportJob.objects.get(pk=job["id"]).error_detail
    assert detail == f"[{reference}] ValueError: Exploded on purpose at order 4321"
    assert job["download_url"] is None
    assert not list(reports_spool().glob(f"{job['id']}-*"))
    assert not list_stored_files(job["id"])


def test_other_users_get_404_for_the_job_and_the_file(orders, alice, make_user, run_worker):
    _, job = post_job(csrf_client(alice), {"report": "orders", "format": "csv"})
    run_worker()
    mallory = Client()
    mallory.force_login(make_user("mallory"))
    assert mallory.get(f"{JOBS_URL}{job['id']}/").status_code == 404
    assert mallory.get(f"/reports/jobs/{job['id']}/download/").status_code == 404
    assert mallory.post(f"{JOBS_URL}{job['id']}/cancel/").status_code == 404
    assert mallory.get(JOBS_URL).json() == {"jobs": []}
    anonymous = Client()
    assert anonymous.get(f"{JOBS_URL}{job['id']}/").status_code == 401
    response = anonymous.get(f"/reports/jobs/{job['id']}/download/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
