"""Small reports downloaded at once: the decision at request time, the download that writes the file
(the same bytes as a background run's), the job recorded without a stored file or a notification,
and what happens to a download never fetched, fetched twice, or refused meanwhile."""

import datetime as dt
import io
import json
import re
import time

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from notifications.models import Notification
from reports.definitions import instant_max_rows
from reports.models import Delivery, ReportDownload, ReportJob, Status
from reports.sweeper import end_unfetched
from reports.writers import FORMATS
from shop import demo
from tests.helpers import JOBS_URL, LiveSession, post_json, serve, wait_for

# The download reads the rows on a connection of its own (ADBC): the tests' data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)
ALL_FORMATS = ["csv", "csv_excel", "json", "ndjson", "xlsx", "parquet", "pdf"]


def download(client, url) -> tuple[int, bytes, dict]:
    response = client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, body, response


def test_the_limit_is_a_second_of_each_formats_measured_speed_unless_set(settings):
    settings.REPORTS_INSTANT_MAX_ROWS = None
    assert {fmt: instant_max_rows(fmt) for fmt in ("csv", "xlsx", "pdf")} == {
        "csv": FORMATS["csv"].writer_class.rows_per_second,
        "xlsx": FORMATS["xlsx"].writer_class.rows_per_second,
        "pdf": min(FORMATS["pdf"].writer_class.rows_per_second, settings.REPORTS_PDF_MAX_ROWS),
    }
    settings.REPORTS_INSTANT_MAX_ROWS = 100
    assert instant_max_rows("csv") == instant_max_rows("pdf") == 100
    settings.REPORTS_INSTANT_MAX_ROWS = 0
    assert instant_max_rows("csv") == 0


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_a_small_report_downloads_at_once_with_the_background_runs_bytes(alice_client, alice, run_worker, fmt):
    demo.seed(400)
    columns = ["number", "amount", "created_at", "note"]
    request = {"report": "orders", "format": fmt, "params": {"min_amount": "1"}, "columns": columns}
    response = post_json(alice_client, JOBS_URL, request)
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["delivery"] == "instant" and job["status"] == "queued"
    assert job["download_url"] == f"/reports/jobs/{job['id']}/download/"
    status, instant, headers = download(alice_client, job["download_url"])
    assert status == 200 and headers["Content-Type"] == FORMATS[fmt].content_type
    assert (
        int(headers["Content-Length"]) == len(instant)
        and 'attachment; filename="Orders ' in headers["Content-Disposition"]
    )

    background = post_json(alice_client, JOBS_URL, {**request, "delivery": "background"})
    assert background.status_code == 202 and background.json()["delivery"] == "background"
    run_worker()
    stored = ReportJob.objects.get(pk=background.json()["id"])
    assert stored.status == Status.SUCCEEDED
    # a PDF says when it was made (heading, metadata): the same pages, text and layout
    if fmt == "pdf":
        pages = [pdf_pages(b) for b in (instant, stored.file.open("rb").read())]
        assert pages[0] == pages[1] and len(pages[0]) >= 1 and "generated <when>" in pages[0][0][1]
    else:
        assert instant == stored.file.open("rb").read()

    recorded = ReportJob.objects.get(pk=job["id"])
    rows = stored.rows_done
    assert rows > 0
    assert (
        recorded.status,
        recorded.delivery,
        recorded.rows_done,
        recorded.rows_total,
        recorded.file_size,
        recorded.file.name,
    ) == (Status.SUCCEEDED, Delivery.INSTANT, rows, rows, len(instant), "")
    assert recorded.started_at and recorded.finished_at
    assert ReportDownload.objects.filter(job=recorded, user=alice, file_size=len(instant)).count() == 1
    # Nothing to notify of (the download was the answer); the background one notified as ever.
    assert list(Notification.objects.values_list("payload__job__id", flat=True)) == [str(stored.pk)]


def pdf_pages(pdf: bytes) -> list[tuple]:
    """Each page's size and text, the moment it was made left out."""
    pages = PdfReader(io.BytesIO(pdf)).pages
    return [
        (tuple(page.mediabox), re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "<when>", page.extract_text())) for page in pages
    ]


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_it_is_written_once_and_not_kept(alice_client):
    demo.seed(50)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    assert download(alice_client, job["download_url"])[0] == 200
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 410 and body.decode() == (
        "This report was written straight into its download and not kept. Ask for it again."
    )
    listed = alice_client.get(f"{JOBS_URL}{job['id']}/").json()
    assert listed["status"] == "succeeded" and listed["download_url"] is None and listed["rows_done"] == 50


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_big_reports_and_clients_that_insist_go_to_the_queue(alice_client, redis_queue):
    demo.seed(501)
    big = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"})
    assert big.status_code == 202 and big.json()["delivery"] == "background"
    insisting = {"report": "orders", "format": "csv", "params": {"status": "paid"}, "delivery": "background"}
    small = post_json(alice_client, JOBS_URL, insisting)
    assert small.status_code == 202 and small.json()["delivery"] == "background"
    assert sorted(redis_queue.job_ids) == sorted(f"report-{r.json()['id']}-a1" for r in (big, small))


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
@pytest.mark.parametrize("delivery", ["instant", "", None, 1, ["auto"], "AUTO"])
def test_a_wrong_delivery_is_400(alice_client, delivery):
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "delivery": delivery})
    assert response.status_code == 400
    assert response.json()["fields"]["delivery"] == [
        'Must be "auto" (small reports download at once) or "background" (always queued).'
    ]
    assert not ReportJob.objects.exists()


@override_settings(REPORTS_INSTANT_MAX_ROWS=500, REPORTS_MAX_ACTIVE_JOBS_PER_USER=1)
def test_instant_jobs_do_not_count_against_the_active_limit_or_get_reused(alice_client):
    demo.seed(10)
    first = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    second = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    assert first["id"] != second["id"] and {first["delivery"], second["delivery"]} == {"instant"}


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_a_permission_lost_before_the_download_refuses_it_and_fails_the_job(alice_client, alice):
    demo.seed(10)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    alice.user_permissions.remove(Permission.objects.get(codename="view_order"))
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 403 and body.decode().startswith("You may no longer run the 'Orders' report")
    assert ReportJob.objects.get(pk=job["id"]).status == Status.FAILED


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_a_download_never_fetched_ends_failed(alice_client):
    demo.seed(10)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    assert end_unfetched(dt.datetime.now(dt.UTC)) == 0
    assert end_unfetched(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)) == 1
    ended = ReportJob.objects.get(pk=job["id"])
    assert ended.status == Status.FAILED and ended.error == "Not downloaded within 15 minutes. Ask for it again."
    assert download(alice_client, job["download_url"])[0] == 409


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_a_download_whose_web_process_died_while_writing_ends_failed_after_the_stale_window(alice_client):
    from django.conf import settings

    demo.seed(10)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    # its writer is gone from here on
    assert ReportJob.objects.get(pk=job["id"]).transition(Status.RUNNING)
    now = dt.datetime.now(dt.UTC)
    assert end_unfetched(now) == 0
    assert end_unfetched(now + dt.timedelta(seconds=settings.REPORTS_STALE_AFTER_SECONDS + 1)) == 1
    ended = ReportJob.objects.get(pk=job["id"])
    assert ended.status == Status.FAILED
    assert ended.error == "The download stopped while the report was being written. Ask for it again."


@pytest.mark.integration
def test_over_http_the_download_streams_and_the_page_hears_of_it(alice, redis_queue):
    """Over real HTTP (the web server): 201, then the download; the owner's open pages get the job's update
    over the websocket, and no notification to keep (no toast)."""
    demo.seed(1000)
    with serve(REPORTS_INSTANT_MAX_ROWS=2000) as base_url:
        session = LiveSession(base_url, alice)
        with session.websocket() as ws:
            status, body, _ = session.request("POST", JOBS_URL, {"report": "orders", "format": "xlsx"})
            assert status == 201
            job = json.loads(body)
            started = time.perf_counter()
            status, data, headers = session.request("GET", job["download_url"])
            took = time.perf_counter() - started
            assert status == 200 and data[:2] == b"PK" and int(headers["Content-Length"]) == len(data)
            messages = []
            wait_for(
                lambda: (
                    messages.append(json.loads(ws.recv(timeout=10))) or messages[-1]["job"]["status"] == "succeeded"
                ),
                timeout=20,
                message="the job's update",
            )
            assert all("notification" not in m for m in messages)
    assert ReportJob.objects.get(pk=job["id"]).rows_done == 1000 and took < 30


@override_settings(REPORTS_INSTANT_MAX_ROWS=500, REPORTS_EMPTY_CHECK_MS=200)
def test_the_count_that_decides_says_at_once_when_nothing_matches(alice_client):
    """The count of the rows, made to decide the way, also answers "nothing matches" (no EXISTS besides)."""
    demo.seed(10)
    with CaptureQueriesContext(connection) as queries:
        response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": {"country": "ZZ"}})
    assert not [q for q in queries if 'SELECT 1 AS "a"' in q["sql"] and "shop_order" in q["sql"]]
    assert response.status_code == 400 and "Nothing matches these filters" in response.json()["fields"]["__all__"][0]
    assert not ReportJob.objects.exists()
    assert post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).status_code == 201


# -- Bounded at the write, not only at the request -------------------------------------------------


def paid_every_other(count: int) -> None:
    """Only every other order of the first 2 * `count` is paid: the others lie below the last paid key."""
    from shop.models import Order

    Order.objects.update(status="pending")
    pks = list(Order.objects.order_by("pk").values_list("pk", flat=True)[: 2 * count : 2])
    Order.objects.filter(pk__in=pks).update(status="paid")


def paid_now(count: int) -> None:
    """`count` more orders become paid, the first that are not (below the job's last key)."""
    from shop.models import Order

    pks = list(Order.objects.exclude(status="paid").order_by("pk").values_list("pk", flat=True)[:count])
    Order.objects.filter(pk__in=pks).update(status="paid")


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_rows_that_came_to_match_before_the_download_send_it_to_the_queue(alice_client, redis_queue, run_worker):
    from shop.models import Order

    demo.seed(1000)
    paid_every_other(400)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": {"status": "paid"}}).json()
    assert job["delivery"] == "instant" and Order.objects.filter(status="paid").count() == 400
    paid_now(200)
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 409 and "queued instead" in body.decode() and "more than 500 rows" in body.decode()
    queued = ReportJob.objects.get(pk=job["id"])
    assert (queued.status, queued.delivery, queued.file_size) == (Status.QUEUED, Delivery.BACKGROUND, None)
    assert redis_queue.job_ids == [f"report-{job['id']}-a1"]
    assert not ReportDownload.objects.exists()
    run_worker()
    queued.refresh_from_db()
    assert queued.status == Status.SUCCEEDED and queued.rows_done == 600


@override_settings(REPORTS_INSTANT_MAX_ROWS=1000, REPORTS_PDF_MAX_ROWS=100)
def test_the_pdf_cap_is_checked_again_at_the_write(alice_client, run_worker):

    demo.seed(300)
    paid_every_other(80)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "pdf", "params": {"status": "paid"}}).json()
    assert job["delivery"] == "instant"
    paid_now(50)
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 409 and "more than 100 rows" in body.decode()
    run_worker(REPORTS_PDF_MAX_ROWS=100)
    ended = ReportJob.objects.get(pk=job["id"])
    assert ended.status == Status.FAILED and "limited to 100 rows" in ended.error and not ended.file


@override_settings(REPORTS_INSTANT_MAX_ROWS=500, REPORTS_INSTANT_MAX_BYTES=2000)
def test_a_file_past_the_byte_limit_goes_to_the_queue(alice_client):
    demo.seed(100)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 409 and "more than 2,000 bytes" in body.decode()
    assert ReportJob.objects.get(pk=job["id"]).delivery == Delivery.BACKGROUND


@override_settings(REPORTS_INSTANT_MAX_ROWS=500, REPORTS_INSTANT_PER_USER=2)
def test_a_user_has_few_instant_links_waiting_the_rest_are_queued(alice_client):
    demo.seed(10)
    answers = [
        post_json(alice_client, JOBS_URL, {"report": "orders", "format": fmt}) for fmt in ("csv", "json", "xlsx")
    ]
    assert [a.status_code for a in answers] == [201, 201, 202]
    assert [a.json()["delivery"] for a in answers] == ["instant", "instant", "background"]
    assert download(alice_client, answers[0].json()["download_url"])[0] == 200
    assert post_json(alice_client, JOBS_URL, {"report": "orders", "format": "ndjson"}).status_code == 201


def test_a_process_writing_its_most_queues_the_request_and_the_download(alice_client, settings):
    # (The settings fixture alone: mixed with override_settings, its undo would bring the override back.)
    settings.REPORTS_INSTANT_MAX_ROWS = 500
    demo.seed(10)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    assert job["delivery"] == "instant"
    # as if it were writing its most already
    settings.REPORTS_INSTANT_WRITES_PER_PROCESS = 0
    assert post_json(alice_client, JOBS_URL, {"report": "orders", "format": "json"}).json()["delivery"] == "background"
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 409 and "writing 0 small reports already" in body.decode()
    assert ReportJob.objects.get(pk=job["id"]).status == Status.QUEUED


@override_settings(REPORTS_INSTANT_MAX_ROWS=500)
def test_a_head_request_does_not_use_up_the_link(alice_client):
    demo.seed(10)
    job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
    assert alice_client.head(job["download_url"]).status_code == 200
    status, body, _ = download(alice_client, job["download_url"])
    assert status == 200 and body.startswith(b"Id,Number,") and b"ORD-00000010" in body
    assert ReportJob.objects.get(pk=job["id"]).rows_done == 10
