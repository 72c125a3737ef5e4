"""The report page and the admin action in a real browser (Debian's Chromium via Playwright) against
the real stack: the web server (uvicorn), an RQ worker, Redis and PostgreSQL. Screenshots go to test-output/."""

import csv
import io
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from django.db.models import Q
from playwright.sync_api import expect, sync_playwright

from notifications.models import Notification
from notifications.services import notify
from reports.models import ReportJob, Status
from shop import demo
from shop.models import Customer, Order
from tests.helpers import expected_orders, serve, wait_for

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
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-sync",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def stack(web_server, start_worker):
    """The web server + one RQ worker; small batches on the Python path so progress is visible."""
    demo.seed(ORDERS)
    start_worker(REPORTS_CHUNK_SIZE=50, REPORTS_PROGRESS_INTERVAL=0, SLOW_REPORT_SECONDS_PER_ROW=0.01)
    SHOTS.mkdir(exist_ok=True)
    return web_server


def log_in(browser, base, user, **options):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}, **options)
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


def download(link, page, timeout: float = 30_000) -> bytes:
    with page.expect_download(timeout=timeout) as started:
        link.click(timeout=timeout)
    return Path(started.value.path()).read_bytes()


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def download_from(toast, page) -> list[list[str]]:
    return rows_of(download(toast.locator("a[data-download]"), page))


def form(page, slug):
    return page.locator(f'form[data-report="{slug}"]')


def test_request_watch_progress_and_download_from_the_row(stack, browser, make_user):
    """The job's row in view says "Ready" and flashes: no toast over the page for what it shows."""
    alice = make_user("alice", perms=PERMS)
    context, page = log_in(browser, stack, alice)
    record_progress(page)
    orders = form(page, "orders")
    orders.locator("select[name=status]").select_option("paid")
    orders.locator("select[name=format]").select_option("csv")
    orders.locator("button[type=submit]").click()
    # watching the table
    page.locator("#my-reports").scroll_into_view_if_needed()

    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Ready", timeout=60_000)
    expect(row).to_have_class(re.compile("just-ended"))
    # the bell has it
    expect(page.locator("[data-list]")).to_contain_text("Your report is ready")
    expect(page.locator(".toast")).to_have_count(0)
    page.screenshot(path=SHOTS / "report-page.png", full_page=True)

    seen = page.evaluate("() => [...window.__progress]")
    # the bar moved through several values
    assert len([p for p in seen if 0 < p < 100]) >= 3, seen
    paid = Order.objects.filter(status="paid")
    assert rows_of(download(row.locator('[data-action="download"]'), page))[1:] == expected_orders(paid)
    wait_for(
        lambda: Notification.objects.filter(user=alice, type="report.ready", seen_at__isnull=False).exists(),
        message="the ready notification counted as seen: the row showed it",
    )
    context.close()
    # exactly one job was made
    assert ReportJob.objects.get().owner == alice


def test_an_empty_result_is_said_plainly_in_the_toast_and_the_row(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS))
    orders = form(page, "orders")
    # a valid code no order has
    orders.locator("input[name=country]").fill("ZZ")
    orders.locator("button[type=submit]").click()
    page.locator("#my-reports").scroll_into_view_if_needed()
    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Ready", timeout=60_000)
    expect(row.locator(".empty-result")).to_have_text("0 — nothing matched the filters")
    expect(page.locator("[data-list]")).to_contain_text("0 rows — nothing matched the filters")
    assert ReportJob.objects.get().rows_done == 0 and not Order.objects.filter(country="ZZ").exists()
    context.close()


def test_a_half_typed_date_is_refused_before_anything_is_sent(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS))
    orders = form(page, "orders")
    orders.locator("input[name=created_from]").click()
    # month and day, no year
    page.keyboard.type("0215")
    orders.locator("button[type=submit]").click()
    expect(orders.locator('[data-error-for="created_from"]')).to_have_text("Enter a complete date, or clear the field.")
    expect(orders.locator("input[name=created_from]")).to_have_attribute("aria-invalid", "true")
    page.wait_for_timeout(500)
    # no unfiltered export started
    assert not ReportJob.objects.exists()
    context.close()


def test_a_toast_never_hides_the_rows_download(stack, browser, make_user):
    """A toast comes up over the very corner where a finished row's Download is: the page keeps room
    below its content, so the button is reached (and the download made) at once."""
    alice = make_user("alice", perms=PERMS)
    context, page = log_in(browser, stack, alice)
    form(page, "customers").locator("button[type=submit]").click()
    page.locator("#my-reports").scroll_into_view_if_needed()
    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Ready", timeout=60_000)
    expect(page.locator(".toast")).to_have_count(0)
    link = row.locator('[data-action="download"]')
    box = link.bounding_box()
    # the link at the bottom
    page.set_viewport_size({"width": 1280, "height": int(box["y"] + box["height"]) + 4})
    # (from a thread of its own: Playwright keeps an event loop in this one, where async_to_sync may not run)
    pusher = threading.Thread(
        target=notify,
        args=(alice,),
        kwargs={"type": "report.ready", "title": "Another report is ready", "body": "Elsewhere."},
    )
    pusher.start()
    pusher.join()
    toast = page.locator(".toast")
    expect(toast).to_contain_text("Another report is ready")
    toast_box, link_box = toast.bounding_box(), link.bounding_box()
    assert toast_box["y"] < link_box["y"] + link_box["height"] and toast_box["x"] < link_box["x"] + link_box["width"]
    # not intercepted by the toast
    data = download(link, page, timeout=5_000)
    assert rows_of(data)[0][0] == "Id" and len(rows_of(data)) == Customer.objects.count() + 1
    # it was up all along
    expect(toast).to_be_visible()
    context.close()


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
    # the jobs table out of view: a toast says it
    second_tab.set_viewport_size({"width": 1280, "height": 320})
    second_tab.goto(f"{stack}/reports/")
    expect(second_tab.locator("#notifications")).to_have_attribute("data-connected", "true")
    bob_context, bob_tab = log_in(browser, stack, bob)

    form(first_tab, "customers").locator("button[type=submit]").click()
    first_tab.locator("#my-reports").scroll_into_view_if_needed()
    toast = second_tab.locator('.toast[data-type="report.ready"]')
    expect(toast).to_contain_text("Customers", timeout=60_000)
    second_tab.screenshot(path=SHOTS / "toast-second-tab.png")
    toast.screenshot(path=SHOTS / "toast-ready.png")
    expect(first_tab.locator("#jobs tbody tr .status")).to_have_text("Ready")
    # there the row is in view
    expect(first_tab.locator(".toast")).to_have_count(0)
    bob_tab.wait_for_timeout(1500)
    expect(bob_tab.locator(".toast")).to_have_count(0)
    expect(bob_tab.locator("#jobs tbody tr")).to_have_count(0)
    alice_context.close()
    bob_context.close()


def test_cancel_a_running_job_and_retry_a_failed_one(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS))
    form(page, "slow-orders").locator("button[type=submit]").click()
    page.locator("#my-reports").scroll_into_view_if_needed()
    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Running", timeout=30_000)
    row.locator('[data-action="cancel"]').click()
    expect(row.locator(".status")).to_have_text("Cancelled")
    cancelled = ReportJob.objects.get(report="slow-orders")
    assert cancelled.status == Status.CANCELLED and not cancelled.file

    form(page, "exploding").locator("button[type=submit]").click()
    page.locator("#my-reports").scroll_into_view_if_needed()
    failed_row = page.locator("#jobs tbody tr").first
    expect(failed_row.locator(".status")).to_have_text("Failed", timeout=60_000)
    # The owner reads a plain message with a reference, never the exception's own text.
    expect(failed_row).to_contain_text("an error on our side (reference ")
    expect(page.locator("[data-list]")).to_contain_text("an error on our side")
    expect(failed_row).not_to_contain_text("Exploded on purpose")
    assert "Exploded on purpose at order 4321" in ReportJob.objects.get(report="exploding").error_detail
    # Events arrive in order on the one socket: by now the failure is in the bell, and a toast or an
    # entry for the cancel would be too. One's own cancel needs neither (the row says it).
    expect(page.locator("[data-list]")).not_to_contain_text("cancelled")
    expect(page.locator(".toast")).to_have_count(0)
    failed_row.locator('[data-action="retry"]').click()
    expect(page.locator("#jobs tbody tr")).to_have_count(3)
    retried = ReportJob.objects.filter(report="exploding").order_by("created_at")
    assert retried.count() == 2 and retried[1].params == retried[0].params
    page.screenshot(path=SHOTS / "cancel-and-retry.png", full_page=True)
    context.close()


def admin_export(page, action, choose=None):
    """Run the export action; on its page, `choose(page)` may tick and order the columns first."""
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    expect(page.locator("ol[data-columns]")).to_be_visible()
    if choose:
        choose(page)
    page.locator(".export-columns-form input[type=submit]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("in the background")


def test_admin_action_exports_the_selected_rows(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS, is_staff=True))
    page.goto(f"{stack}/admin/shop/order/")
    boxes = page.locator("input.action-select")
    picked = [boxes.nth(i).get_attribute("value") for i in (0, 2, 5)]
    for i in (0, 2, 5):
        boxes.nth(i).check()

    # A few rows are ready before the page that asked for them has gone: the export's answer is held
    # until the page being left has had the notification for longer than a toast takes to count as
    # seen (it must not count there: nobody reads it), then the list replays it.
    seen_while_leaving = []

    def answer_once_notified(route):
        answer = route.fetch(max_redirects=0)
        wait_for(lambda: Notification.objects.filter(type="report.ready").exists(), message="the ready notification")
        time.sleep(2)
        seen_while_leaving.append(Notification.objects.filter(seen_at__isnull=False).exists())
        route.fulfill(response=answer)

    # Number first (it is second: one click), no Customer name
    def choose(page):
        page.locator('li[data-column="number"] button[data-move="-1"]').click()
        page.locator('li[data-column="customer__name"] input[type=checkbox]').uncheck()
        page.screenshot(path=SHOTS / "admin-export-columns.png", full_page=True)
        page.route(f"{stack}/admin/shop/order/", answer_once_notified, times=1)

    admin_export(page, "export_csv_in_background", choose)
    toast = page.locator('.toast[data-type="report.ready"]')
    expect(toast).to_be_visible(timeout=60_000)
    page.screenshot(path=SHOTS / "admin-action.png", full_page=False)
    assert seen_while_leaving == [False]
    wait_for(
        lambda: Notification.objects.filter(type="report.ready", seen_at__isnull=False).exists(),
        message="the toast in view counted as seen",
    )
    rows = download_from(toast, page)
    assert sorted(r[1] for r in rows[1:]) == sorted(picked)
    assert rows[0][:3] == ["Number", "Id", "Status"]
    assert ReportJob.objects.get().columns[:3] == ["number", "id", "status"]
    context.close()


def test_admin_select_all_exports_exactly_the_filtered_rows(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS, is_staff=True))
    page.goto(f"{stack}/admin/shop/order/?status__exact=paid&q=Silva")
    expected = list(
        Order.objects.filter(status="paid")
        .filter(Q(number__icontains="Silva") | Q(customer__name__icontains="Silva"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    # more than one page: only "select all" reaches them all
    assert len(expected) > 100
    page.check("#action-toggle")
    page.click(".actions .question")
    expect(page.locator(".actions .all")).to_be_visible()
    admin_export(page, "export_csv_in_background")
    job = ReportJob.objects.get()
    # filters, not ids
    assert set(job.params) == {"query"} and "status__exact=paid" in job.params["query"]
    toast = page.locator('.toast[data-type="report.ready"]')
    expect(toast).to_be_visible(timeout=60_000)
    rows = download_from(toast, page)
    assert [int(r[0]) for r in rows[1:]] == expected
    page.goto(f"{stack}/admin/reports/reportjob/")
    # the export's title, not its slug
    expect(page.locator("#result_list")).to_contain_text("Orders")
    assert "admin-shop-order" not in page.locator("#result_list").inner_text()
    page.screenshot(path=SHOTS / "job-admin.png", full_page=True)
    page.goto(f"{stack}/admin/reports/reportjob/{job.pk}/change/")
    expect(page.locator("h2", has_text="Segments")).to_be_visible()
    expect(page).to_have_title(re.compile("^Orders · csv · Ready · "))
    page.screenshot(path=SHOTS / "job-admin-detail.png", full_page=True)
    context.close()


def test_choose_and_order_columns_on_the_page_and_find_them_again(stack, browser, make_user):
    context, page = log_in(browser, stack, make_user("alice", perms=PERMS))
    orders = form(page, "orders")
    orders.locator("details.columns summary").click()
    picker = orders.locator("ol[data-columns]")
    expect(orders.locator("[data-columns-summary]")).to_have_text("all 12")
    for name in ("id", "customer__name", "country", "discount", "quantity", "is_gift", "note", "shipped_at"):
        picker.locator(f'li[data-column="{name}"] input[type=checkbox]').uncheck()
    amount = picker.locator('li[data-column="amount"] input[type=checkbox]')
    amount.focus()
    # Amount from 6th to 3rd place with the keyboard: (id), number, amount, ...
    for _ in range(3):
        page.keyboard.press("Alt+ArrowUp")
    expect(amount).to_be_focused()
    up = picker.locator('li[data-column="created_at"] button[data-move="-1"]')
    # Created at from 11th to 6th with its button: ahead of status
    for _ in range(5):
        up.click()
    expect(up).to_be_focused()
    expect(orders.locator("[data-columns-summary]")).to_have_text("4 of 12")
    page.screenshot(path=SHOTS / "columns.png", full_page=True)
    orders.locator("select[name=status]").select_option("paid")
    orders.locator("button[type=submit]").click()
    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Ready", timeout=60_000)
    rows = rows_of(download(row.locator('[data-action="download"]'), page))
    paid = Order.objects.filter(status="paid").order_by("pk")
    assert rows[0] == ["Number", "Amount", "Created at", "Status"]
    assert [r[:2] for r in rows[1:]] == [[o.number, str(o.amount)] for o in paid]
    assert ReportJob.objects.get().columns == ["number", "amount", "created_at", "status"]

    # the browser remembers the choice for this report
    page.reload()
    picker = form(page, "orders").locator("ol[data-columns]")
    order = picker.locator("li").evaluate_all("items => items.map((li) => li.dataset.column)")
    assert order[:7] == ["id", "number", "amount", "customer__name", "country", "created_at", "status"]
    ticked = picker.locator("input:checked").evaluate_all("boxes => boxes.map((box) => box.value)")
    assert ticked == ["number", "amount", "created_at", "status"]
    picker.locator("input:checked").evaluate_all("boxes => boxes.forEach((box) => box.click())")
    # nothing ticked: refused before sending
    form(page, "orders").locator("button[type=submit]").click()
    expect(form(page, "orders").locator('[data-error-for="columns"]')).to_have_text("Choose at least one column.")
    assert ReportJob.objects.count() == 1
    context.close()


@pytest.fixture
def instant_stack(transactional_db, redis_queue, start_worker):
    """The web server with small reports written at once (up to 1,000 rows) + one RQ worker."""

    demo.seed(3000)
    start_worker()
    SHOTS.mkdir(exist_ok=True)
    with serve(REPORTS_INSTANT_MAX_ROWS=1000) as base_url:
        yield base_url


def test_a_small_report_downloads_at_once_without_a_toast(instant_stack, browser, make_user):
    from django.db.models import Count

    from reports.services import request_report

    alice = make_user("alice", perms=PERMS)
    pick = (
        Order.objects.values("status", "country")
        .annotate(n=Count("id"))
        .filter(n__gte=50, n__lte=1000)
        .order_by("-n")
        .first()
    )
    context, page = log_in(browser, instant_stack, alice)
    orders = form(page, "orders")
    orders.locator("select[name=status]").select_option(pick["status"])
    orders.locator("input[name=country]").fill(pick["country"])
    orders.locator("select[name=format]").select_option("xlsx")
    with page.expect_download(timeout=30_000) as started:
        orders.locator("button[type=submit]").click()
    instant = Path(started.value.path()).read_bytes()
    row = page.locator("#jobs tbody tr").first
    expect(row.locator(".status")).to_have_text("Ready")
    expect(row).to_contain_text("Downloaded at once")
    # a toast would have come by now
    page.wait_for_timeout(1000)
    expect(page.locator(".toast")).to_have_count(0)
    # nothing for the bell either
    expect(page.locator("[data-badge]")).to_be_hidden()
    assert not Notification.objects.filter(user=alice).exists()
    page.screenshot(path=SHOTS / "instant-download.png", full_page=True)
    job = ReportJob.objects.get()
    assert job.delivery == "instant" and job.rows_done == pick["n"] and job.file.name == ""

    params = {"status": pick["status"], "country": pick["country"]}
    background = request_report(user=alice, slug="orders", format="xlsx", params=params, delivery="background")
    stored = wait_for(
        lambda: ReportJob.objects.filter(pk=background.pk, status=Status.SUCCEEDED).first(),
        message="the background run",
    )
    # the same bytes, whichever way
    assert instant == stored.file.open("rb").read()
    context.close()


def test_schedule_a_report_from_the_page_in_the_browsers_time_zone(stack, browser, make_user):
    from reports import schedules
    from reports.models import ReportSchedule

    alice = make_user("alice", perms=PERMS)
    context, page = log_in(browser, stack, alice, timezone_id="Europe/Berlin")
    orders = form(page, "orders")
    orders.locator("select[name=status]").select_option("paid")
    orders.locator('select[data-relative-for="created_from"]').select_option("last month")
    expect(orders.locator("input[name=created_from]")).to_be_disabled()
    orders.locator('[data-action="schedule"]').click()
    schedule = orders.locator("fieldset.schedule")
    expect(schedule).to_contain_text("Europe/Berlin")
    # Monday is ticked already: and Wednesday
    schedule.locator('input[name=weekdays][value="2"]').check()
    schedule.locator("input[name=time]").fill("07:30")
    page.screenshot(path=SHOTS / "schedule-form.png", full_page=True)
    schedule.locator('[data-action="save-schedule"]').click()
    row = page.locator("#schedules tbody tr").first
    expect(row).to_contain_text("Mondays and Wednesdays at 07:30 (Europe/Berlin)")
    expect(orders.locator('[data-error-for="__all__"]')).to_contain_text("Scheduled: Mondays and Wednesdays")
    saved = ReportSchedule.objects.get()
    assert (saved.owner, saved.time_zone, saved.weekdays, saved.params) == (
        alice,
        "Europe/Berlin",
        [0, 2],
        {"status": "paid", "created_from": "last month"},
    )

    row.locator('[data-action="pause"]').click()
    expect(row.locator("td").nth(2)).to_have_text("Paused")
    row.locator('[data-action="resume"]').click()
    expect(row.locator("td").nth(2)).not_to_have_text("Paused")

    ReportSchedule.objects.filter(pk=saved.pk).update(next_run_at=saved.next_run_at.replace(year=2020))
    # the minute's tick (RQ's cron scheduler runs it in the stack)
    assert schedules.run_due() == 1
    # The run appears in the jobs table as it goes, and ends as any report does: told in the bell
    # (and as a toast where its row is not in view), its row in the schedules saying how it went.
    expect(page.locator("#jobs tbody tr").first.locator(".status")).to_have_text("Ready", timeout=60_000)
    expect(page.locator("[data-list]")).to_contain_text("Your report is ready")
    expect(row.locator(".status")).to_have_text("Ready")
    run = ReportJob.objects.get()
    # last month's first day
    assert run.schedule_id == saved.pk and run.params["created_from"].endswith("-01")
    page.screenshot(path=SHOTS / "schedules.png", full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator('[data-action="delete"]').click()
    expect(page.locator("#schedules tbody tr")).to_have_count(0)
    assert not ReportSchedule.objects.exists() and ReportJob.objects.filter(pk=run.pk).exists()
    context.close()
