"""Every format through the API and a real worker, compared value by value with the database."""

import datetime as dt
import io
import json
import subprocess

import openpyxl
import pytest
from pypdf import PdfReader

from reports.models import ReportJob, Status
from reports.tasks import run_in_foreground
from shop import demo
from shop.models import Order
from tests.helpers import JOBS_URL, ROOT, ooxml_text, record

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ORDERS = 3000
SHOTS = ROOT / "test-output"


def request(client, fmt, params=None):
    body = {"report": "orders", "format": fmt, "params": params or {}}
    response = client.post(JOBS_URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def download(client, job_id) -> bytes:
    job = client.get(f"{JOBS_URL}{job_id}/").json()
    assert job["status"] == "succeeded", job
    return b"".join(client.get(job["download_url"]).streaming_content)


def orders():
    return list(Order.objects.select_related("customer").order_by("pk"))


def test_json_ndjson_and_xlsx_hold_every_value(alice_client, run_worker):
    demo.seed(ORDERS)
    jobs = {fmt: request(alice_client, fmt) for fmt in ("json", "ndjson", "xlsx")}
    run_worker(REPORTS_CHUNK_SIZE=700)

    expected = [
        {
            "id": o.id,
            "number": o.number,
            "customer__name": o.customer.name,
            "country": o.country,
            "status": o.status,
            "amount": str(o.amount),
            "discount": None if o.discount is None else str(o.discount),
            "quantity": o.quantity,
            "is_gift": o.is_gift,
            "note": o.note,
            "created_at": o.created_at.isoformat(),
            "shipped_at": o.shipped_at.isoformat() if o.shipped_at else None,
        }
        for o in orders()
    ]
    assert json.loads(download(alice_client, jobs["json"])) == expected
    lines = download(alice_client, jobs["ndjson"]).decode().splitlines()
    assert [json.loads(line) for line in lines] == expected

    sheet = openpyxl.load_workbook(io.BytesIO(download(alice_client, jobs["xlsx"])), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Id", "Number", "Customer")
    for want, got in zip(orders(), rows[1:], strict=True):
        assert got[0] == want.id and got[5] == float(want.amount) and got[8] is want.is_gift
        assert (ooxml_text(got[2]) or None) == (want.customer.name or None) and (ooxml_text(got[9]) or None) == (
            want.note or None
        )
        # Excel keeps a datetime as a fraction of days: exact to the millisecond.
        assert abs(got[10] - want.created_at.replace(tzinfo=None)) < dt.timedelta(milliseconds=1)


def test_pdf_over_its_cap_when_it_starts_fails_with_the_same_message(alice, settings):
    settings.REPORTS_PDF_MAX_ROWS = 50
    # asked for when there were none
    job = ReportJob.objects.create(owner=alice, report="orders", format="pdf")
    demo.seed(60)
    run_in_foreground(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED and not job.file
    assert job.error == (
        "PDF is limited to 50 rows and this report has 60. Narrow the filters, or choose CSV or "
        "XLSX, which have no limit."
    )


def test_a_format_the_report_no_longer_offers_fails_the_queued_job_plainly(alice, monkeypatch):
    from shop.reports import OrdersReport

    # asked for while it was offered
    job = ReportJob.objects.create(owner=alice, report="orders", format="pdf")
    monkeypatch.setattr(OrdersReport, "formats", ["csv", "xlsx"])
    demo.seed(10)
    run_in_foreground(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED and not job.file
    assert job.error == "The report is no longer offered as pdf."


def test_pdf_is_refused_above_its_cap_at_request_time_and_made_below_it(alice_client, run_worker, settings):
    demo.seed(200)
    settings.REPORTS_PDF_MAX_ROWS = 50
    response = alice_client.post(
        JOBS_URL, data=json.dumps({"report": "orders", "format": "pdf"}), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["fields"]["format"] == [
        "PDF is limited to 50 rows and this report has 200. Narrow the filters, or choose CSV or XLSX, "
        "which have no limit."
    ]
    few = Order.objects.filter(status="paid", country="BR")
    assert 0 < few.count() <= 50
    job_id = request(alice_client, "pdf", {"status": "paid", "country": "BR"})
    run_worker()
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(download(alice_client, job_id))).pages)
    assert "Filters: Status: paid, Country: BR" in text
    for order in few:
        assert order.number in text


def test_a_pdf_of_two_thousand_orders_is_dense_and_readable(alice):
    """The demo's awkward orders as a PDF near its usual size: pages counted, the first one rendered to
    PNG (poppler's pdftoppm) into test-output/ to be looked at."""
    demo.seed(20_000)
    params = {"created_from": "2024-01-01", "created_to": "2024-03-14"}
    job = ReportJob.objects.create(owner=alice, report="orders", format="pdf", params=params)
    assert run_in_foreground(job) and job.status == Status.SUCCEEDED, job.error
    with job.file.open("rb") as fh:
        data = fh.read()
    pages = PdfReader(io.BytesIO(data)).pages
    # 96 pages for 1,996 before
    assert 1500 <= job.rows_done <= 2500 and len(pages) <= job.rows_done / 38
    first = pages[0]
    # twelve columns: landscape
    assert first.mediabox.width > first.mediabox.height
    words = " ".join(p.extract_text() for p in pages[:3]).split()
    # headers whole; booleans short
    assert "Discount" in words and "false" not in words and "no" in words
    SHOTS.mkdir(exist_ok=True)
    out = SHOTS / "pdf-first-page.pdf"
    out.write_bytes(data)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", str(out), str(SHOTS / "pdf-first-page")],
        check=True,
    )
    out.unlink()
    record(case="pdf", rows=job.rows_done, pages=len(pages))
