"""Every key Django allows: a UUID key (PostgreSQL has no max() of one) and a text key through the
plan, segments on a worker, the instant download and the admin's ticked rows, each file checked
against the database; a composite key is a check error (test_definitions)."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from reports.models import ReportJob, Status
from shop.demo import AWKWARD_TEXT
from tests.helpers import csrf_client, ended, post_job, text
from tests.testapp.models import Account, Invoice, Tag

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def invoices():
    """1,500 invoices with random UUID keys, so that key order is nothing like insertion order."""
    account = Account.objects.create(name="Zoë, Inc.")
    Invoice.objects.bulk_create(
        Invoice(
            number=f"INV-{n:05d}",
            account=account,
            amount=Decimal(n) / 4,
            created_at=START + dt.timedelta(minutes=n),
        )
        for n in range(1500)
    )
    return Invoice.objects.order_by("pk")


@pytest.fixture
def bookkeeper(make_user):
    return make_user("bookkeeper", perms=["testapp.view_invoice", "testapp.view_tag"], is_staff=True)


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))[1:]


def invoice_rows(queryset) -> list[list[str]]:
    """The CSV's rows worked out from the ORM."""
    return [
        [str(i.pk), i.number, text(i.account.name), f"{i.amount:.2f}", str(i.reference), i.created_at.isoformat()]
        for i in queryset.select_related("account")
    ]


def download(client, job_id) -> bytes:
    response = client.get(f"/reports/jobs/{job_id}/download/")
    assert response.status_code == 200, response.content[:300]
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_a_uuid_keyed_report_is_cut_into_segments_and_written_by_a_worker(invoices, bookkeeper, run_worker):
    client = csrf_client(bookkeeper)
    status, job = post_job(client, {"report": "invoices", "format": "csv", "delivery": "background"})
    assert status == 202, job
    run_worker(REPORTS_SEGMENT_ROWS=400)
    done = ended(job["id"])
    assert done.status == Status.SUCCEEDED, done.error
    assert done.segments.count() == 4 and done.rows_done == 1500
    assert done.upper_key == str(invoices.last().pk)
    assert rows_of(download(client, job["id"])) == invoice_rows(invoices)


def test_a_small_uuid_keyed_report_downloads_at_once(invoices, bookkeeper, settings):
    settings.REPORTS_INSTANT_MAX_ROWS = 2000
    client = csrf_client(bookkeeper)
    status, job = post_job(client, {"report": "invoices", "format": "csv", "params": {"min_amount": "300"}})
    assert status == 201 and job["delivery"] == "instant", job
    assert rows_of(download(client, job["id"])) == invoice_rows(invoices.filter(amount__gte=300))


def test_the_admin_exports_ticked_uuid_rows(invoices, bookkeeper, client, run_worker):
    client.force_login(bookkeeper)
    ticked = [str(pk) for pk in invoices.values_list("pk", flat=True)[100:105]]
    # (the action's page, which asks for the columns, is tested in test_admin_export)
    action = {
        "action": "export_csv_in_background",
        "_selected_action": ticked,
        "export_columns": "yes",
        "columns": ["number", "amount"],
    }
    page = client.post("/admin/testapp/invoice/", action, follow=True)
    assert page.status_code == 200
    job = ReportJob.objects.get()
    assert sorted(job.params["ids"]) == sorted(ticked), job.params
    run_worker()
    job = ended(job.pk)
    assert job.status == Status.SUCCEEDED, job.error
    numbers = list(Invoice.objects.filter(pk__in=ticked).order_by("pk").values_list("number", flat=True))
    with job.file.open("rb") as fh:
        assert [row[0] for row in rows_of(fh.read())] == numbers


def test_a_text_keyed_report_keeps_the_databases_order_across_segments(bookkeeper, run_worker):
    codes = {f"{word[:20]}-{n}" for n, word in enumerate(AWKWARD_TEXT * 30)} | {"Z", "a", "é", "a/b", "a b", "10", "9"}
    Tag.objects.bulk_create(Tag(code=code, label=code[::-1]) for code in codes)
    client = csrf_client(bookkeeper)
    status, job = post_job(client, {"report": "tags", "format": "csv", "delivery": "background"})
    assert status == 202, job
    run_worker(REPORTS_SEGMENT_ROWS=100)
    done = ended(job["id"])
    assert done.status == Status.SUCCEEDED and done.segments.count() > 3, done.error
    expected = [[text(code), text(label)] for code, label in Tag.objects.order_by("pk").values_list("code", "label")]
    assert rows_of(download(client, job["id"])) == expected
