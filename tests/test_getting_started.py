"""What a new user meets first: `.env.example` copied as it says, the command line, the job admin,
the site's icon."""

import csv
import shutil
import socket
import subprocess
import sys
import urllib.request

import pytest
from django.contrib.staticfiles import finders

from reports.models import ReportJob, Status
from shop import demo
from tests.helpers import ROOT, child_env, free_port, wait_for

EMPTY = "0 rows — nothing matched the filters"


def test_a_copied_env_example_starts_the_app(tmp_path):
    """As `.env.example` says: copy it to `.env` beside manage.py, and nothing else is needed."""
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "manage.py", app)
    for name in ("project", "reports", "notifications", "shop", "templates"):
        shutil.copytree(ROOT / name, app / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".env.example", app / ".env")
    env = {name: value for name, value in child_env().items() if name in ("PATH", "HOME", "LANG")}

    def manage(*args):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=app, env=env, capture_output=True, text=True)

    assert manage("migrate", "-v0").returncode == 0
    check = manage("check")
    assert check.returncode == 0 and "no issues" in check.stdout, check.stderr
    # VAR_DIR= and DATABASE_URL= empty: the defaults
    assert (app / "var" / "db.sqlite3").exists()
    port = free_port()
    command = [sys.executable, "-m", "project.web", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=30, message="the web server")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/") as page:
            assert page.status == 200 and b"Log in" in page.read()
    finally:
        server.terminate()
        server.wait(timeout=15)


# -- The command line ------------------------------------------------------------------------------


@pytest.fixture
def carol(transactional_db, make_user):
    # committed: the command is another process
    demo.seed(3000)
    return make_user("carol")


def export(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "export_report", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_the_command_lists_the_reports_a_user_may_run(carol, make_user):
    listing = export("--list", "--user", "carol")
    assert listing.returncode == 0, listing.stderr
    lines = {line.split("\t")[0]: line for line in listing.stdout.splitlines()}
    assert {"orders", "customers"} <= set(lines)
    assert "\tOrders\t" in lines["orders"] and "filters: status, country, created_from" in lines["orders"]
    assert "\tcolumns: id, number, customer__name, country," in lines["orders"]
    make_user("erin", perms=("shop.view_customer",))
    assert [line.split("\t")[0] for line in export("--list", "--user", "erin").stdout.splitlines()] == ["customers"]
    make_user("dave", perms=())
    assert export("--list", "--user", "dave").stdout == ""
    missing = export("--user", "carol")
    assert missing.returncode == 1 and "Name a report and a user" in missing.stderr


def test_the_summary_is_plain_says_where_the_file_is_and_when_nothing_matched(carol):
    done = export("orders", "--user", "carol", "--force-color")
    assert done.returncode == 0, done.stderr
    # green, not Django's error red
    assert "\x1b[31" not in done.stderr and "\x1b[32" in done.stderr
    path = done.stderr.rsplit("file ", 1)[1].strip().removesuffix("\x1b[0m").strip()
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert "3,000 rows" in done.stderr and len(rows) == 3001 and ReportJob.objects.get().rows_done == 3000
    empty = export("orders", "--user", "carol", "--param", "country=ZZ")
    assert empty.returncode == 0 and EMPTY in empty.stderr
    chosen = export("orders", "--user", "carol", "--columns", "amount,number", "--output", "-")
    assert chosen.returncode == 0 and chosen.stdout.splitlines()[0] == "Amount,Number"
    wrong = export("orders", "--user", "carol", "--columns", "amount,secret")
    assert wrong.returncode == 1 and "columns: Unknown column 'secret'." in wrong.stderr


def test_output_to_a_pipe_closed_early_ends_quietly(carol):
    command = [sys.executable, "manage.py", "export_report", "orders", "--user", "carol", "--output", "-"]
    process = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # what `| head -c 100` reads, and then it goes away
    head = process.stdout.read(100)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and head.startswith(b"Id,Number,")
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


# -- The job admin -----------------------------------------------------------------------------------


@pytest.fixture
def manager(client, make_user):
    user = make_user("manager", perms=("reports.view_reportjob", "reports.change_reportjob"), is_staff=True)
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_the_job_admin_speaks_of_titles_and_says_why_nothing_was_cancelled(client, manager, alice):
    ended = ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.SUCCEEDED)
    listing = client.get("/admin/reports/reportjob/").content.decode()
    # the filters by title and label
    assert ">Orders</a>" in listing and "?report=orders" in listing
    assert ">CSV</a>" in listing and "?format=csv" in listing
    response = client.post(
        "/admin/reports/reportjob/", {"action": "cancel_jobs", "_selected_action": [ended.pk]}, follow=True
    )
    said = [str(m) for m in response.context["messages"]]
    assert said == ["1 job(s) not cancelled: they had already ended (only queued or running jobs can be cancelled)."]


@pytest.mark.django_db
def test_a_running_job_is_cancelled_from_its_own_page(client, manager, alice):
    job = ReportJob.objects.create(owner=alice, report="orders", format="xlsx", status=Status.RUNNING)
    page = client.get(f"/admin/reports/reportjob/{job.pk}/change/").content.decode()
    # not a slug and a UUID
    assert "<title>Orders · xlsx · Running · " in page
    assert 'value="cancel_jobs"' in page and 'value="retry_jobs"' not in page
    client.post("/admin/reports/reportjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert 'value="retry_jobs"' in client.get(f"/admin/reports/reportjob/{job.pk}/change/").content.decode()


def test_every_page_has_the_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("reports/favicon.svg")
    assert finders.find("reports/favicon.svg")
