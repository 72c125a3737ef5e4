"""The report page and the admin action in a real browser (Debian's Chromium via Playwright) against
the real stack: daphne, an RQ worker, Redis and PostgreSQL. Screenshots go to test-output/."""

import csv
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from django.db.models import Q
from playwright.sync_api import expect, sync_playwright

from reports.models import ReportJob, Status
from shop import demo
from shop.models import Order
from tests.test_foundation_flow import expected_orders

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-output"
ORDERS = 20_000
PERMS = ("shop.view_order", "shop.view_customer", "reports.view_reportjob")


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop in this thread, and Django then refuses sync ORM
    # calls, including pytest-django's own flush after each test; those calls are sync indeed.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"],
        )  # fmt: skip
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def stack(daphne_server, start_worker):
    """daphne + one RQ worker; small chunks on the Python path so progress is visible."""
    demo.seed(ORDERS)
    start_worker(REPORTS_CHUNK_SIZE=50, REPORTS_PROGRESS_INTERVAL=0,
                 SLOW_REPORT_SECONDS_PER_ROW=0.01)  # fmt: skip
    SHOTS.mkdir(exist_ok=True)
    return daphne_server


def log_in(browser, base, user):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/login/?next=/reports/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", f"pw-{user.username}")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/reports/")
    expect(page.locator("#notifications")).to_have_attribute("data-connected", "true")
    return context, page


def record_progress(page):
    page.evaluate("""() => {
        window.__progress = new Set();
        new MutationObserver(() => document.querySelectorAll('[role=progressbar]').forEach(
            (bar) => window.__progress.add(Number(bar.getAttribute('aria-valuenow'))))
        ).observe(document.querySelector('#jobs tbody'), {subtree: true, childList: true, attributes: true});
    }""")


def download_from(toast, page) -> list[list[str]]:
    with page.expect_download() as download:
        toast.locator("a[data-download]").click()
    data = Path(download.value.path()).read_bytes()
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def form(page, slug):
    return page.locator(f'form[data-report="{slug}"]')


def test_request_watch_progress_toast_and_download(stack, browser, make_user):
    alice = make_user("alice", perms=PERMS)
    context, page = log_in(browser, stack, alice)
    record_progress(page)
    orders = form(page, "orders")
    orders.locator("select[name=status]").select_option("paid")
    orders.locator("select[name=format]").select_option("csv")
    orders.locator("button[type=submit]").click()

    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Ready", timeout=60_000)
    toast = page.locator('.toast[data-type="report.ready"]')
    expect(toast).to_contain_text("Your report is ready")
    page.screenshot(path=SHOTS / "report-page.png", full_page=True)
    toast.screenshot(path=SHOTS / "toast-ready.png")

    seen = page.evaluate("() => [...window.__progress]")
    assert len([p for p in seen if 0 < p < 100]) >= 3, seen  # the bar moved through several values
    paid = Order.objects.filter(status="paid")
    rows = download_from(toast, page)
    assert rows[1:] == expected_orders(paid)
    expect(toast).to_have_count(0)  # downloading dismisses it…
    context.close()
    assert ReportJob.objects.get().owner == alice  # …and exactly one job was made


def test_form_errors_from_the_api_show_next_to_the_fields(stack, browser, make_user, settings):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS))
    orders = form(page, "orders")
    orders.locator("input[name=country]").fill("B")
    orders.locator("input[name=min_amount]").fill("12")
    orders.locator("button[type=submit]").click()
    expect(orders.locator('[data-error-for="country"]')).to_contain_text("at least 2 characters")
    expect(orders.locator("input[name=country]")).to_have_attribute("aria-invalid", "true")
    orders.locator("select[name=format]").select_option("pdf")
    orders.locator("input[name=country]").fill("")
    orders.locator("input[name=min_amount]").fill("")
    orders.locator("button[type=submit]").click()
    expect(orders.locator('[data-error-for="format"]')).to_contain_text("PDF is limited to 5,000 rows")
    assert not ReportJob.objects.exists()
    context.close()


def test_the_toast_reaches_every_tab_of_the_user_and_no_one_else(stack, browser, make_user):
    alice, bob = make_user("alice", perms=PERMS), make_user("bob", perms=PERMS)
    alice_context, first_tab = log_in(browser, stack, alice)
    second_tab = alice_context.new_page()
    second_tab.goto(f"{stack}/reports/")
    expect(second_tab.locator("#notifications")).to_have_attribute("data-connected", "true")
    bob_context, bob_tab = log_in(browser, stack, bob)

    form(first_tab, "customers").locator("button[type=submit]").click()
    expect(second_tab.locator('.toast[data-type="report.ready"]')).to_contain_text("Customers", timeout=60_000)
    expect(first_tab.locator('.toast[data-type="report.ready"]')).to_have_count(1)
    second_tab.screenshot(path=SHOTS / "toast-second-tab.png")
    bob_tab.wait_for_timeout(1500)
    expect(bob_tab.locator(".toast")).to_have_count(0)
    expect(bob_tab.locator("#jobs tbody tr")).to_have_count(0)
    alice_context.close()
    bob_context.close()


def test_cancel_a_running_job_and_retry_a_failed_one(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS))
    form(page, "slow-orders").locator("button[type=submit]").click()
    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Running", timeout=30_000)
    row.locator('[data-action="cancel"]').click()
    expect(row.locator(".status")).to_have_text("Cancelled")
    cancelled = ReportJob.objects.get(report="slow-orders")
    assert cancelled.status == Status.CANCELLED and not cancelled.file

    form(page, "exploding").locator("button[type=submit]").click()
    failed_row = page.locator("#jobs tbody tr").first
    expect(failed_row.locator(".status")).to_have_text("Failed", timeout=60_000)
    expect(failed_row).to_contain_text("Exploded on purpose at order 4321")
    failed_toast = page.locator('.toast[data-type="report.failed"]')
    expect(failed_toast).to_contain_text("Exploded on purpose")
    # Events arrive in order on the one socket: by now a toast for the cancel would be up. One's own
    # cancel needs none (the row says it).
    expect(page.locator('.toast[data-type="report.cancelled"]')).to_have_count(0)
    failed_toast.get_by_role("button", name="Dismiss").click()
    failed_row.locator('[data-action="retry"]').click()
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    retried = ReportJob.objects.filter(report="exploding").order_by("created_at")
    assert retried.count() == 2 and retried[1].params == retried[0].params
    page.screenshot(path=SHOTS / "cancel-and-retry.png", full_page=True)
    context.close()


def admin_export(page, action):
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    expect(page.locator(".messagelist .success")).to_contain_text("in the background")


def test_admin_action_exports_the_selected_rows(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS, is_staff=True))
    page.goto(f"{stack}/admin/shop/order/")
    boxes = page.locator("input.action-select")
    picked = [boxes.nth(i).get_attribute("value") for i in (0, 2, 5)]
    for i in (0, 2, 5):
        boxes.nth(i).check()
    admin_export(page, "export_csv_in_background")
    toast = page.locator('.toast[data-type="report.ready"]')
    expect(toast).to_be_visible(timeout=60_000)
    page.screenshot(path=SHOTS / "admin-action.png", full_page=False)
    rows = download_from(toast, page)
    assert sorted(r[0] for r in rows[1:]) == sorted(picked)
    assert rows[0][:3] == ["Id", "Number", "Customer name"]
    context.close()


def test_admin_select_all_exports_exactly_the_filtered_rows(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS, is_staff=True))
    page.goto(f"{stack}/admin/shop/order/?status__exact=paid&q=Silva")
    expected = list(Order.objects.filter(status="paid").filter(Q(number__icontains="Silva") |
                    Q(customer__name__icontains="Silva")).order_by("pk").values_list("pk", flat=True))  # fmt: skip
    assert len(expected) > 100  # more than one page: only "select all" reaches them all
    page.check("#action-toggle")
    page.click(".actions .question")
    expect(page.locator(".actions .all")).to_be_visible()
    admin_export(page, "export_csv_in_background")
    job = ReportJob.objects.get()
    assert set(job.params) == {"query"} and "status__exact=paid" in job.params["query"]  # filters, not ids
    toast = page.locator('.toast[data-type="report.ready"]')
    expect(toast).to_be_visible(timeout=60_000)
    rows = download_from(toast, page)
    assert [int(r[0]) for r in rows[1:]] == expected
    page.goto(f"{stack}/admin/reports/reportjob/")
    expect(page.locator("#result_list")).to_contain_text(re.compile("admin-shop-order"))
    page.screenshot(path=SHOTS / "job-admin.png", full_page=True)
    context.close()
