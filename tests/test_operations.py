"""Ready for production: a clean deploy check, security headers, one job per request, the download
audit, and the metrics endpoint."""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import threading

import pytest
from django.contrib import admin
from django.test import Client
from django.utils import timezone

from reports.models import ReportDownload, ReportJob, Status
from reports.sweeper import prune_audit
from shop import demo
from shop.models import Order
from tests.helpers import JOBS_URL, ROOT, LiveSession

pytestmark = pytest.mark.django_db

# The production settings the README documents (docs/operations.md, "Production").
PRODUCTION = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "reports.example.com",
    "DATABASE_URL": "postgres://reports@db.example.com:5432/reports",
    "REDIS_URL": "redis://redis.example.com:6379/0",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "REPORTS_EMAIL_AFTER_SECONDS": "600",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "smtp.example.com",
}


def deploy_check(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REPORTS_", "EMAIL_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
    )


def test_the_deploy_check_is_clean_with_the_documented_production_settings():
    result = deploy_check(**PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_deploy_check_is_clean_with_no_more_than_a_secret_and_a_host():
    result = deploy_check(DJANGO_SECRET_KEY=PRODUCTION["DJANGO_SECRET_KEY"], DJANGO_ALLOWED_HOSTS="reports.example.com")
    assert result.returncode == 0, result.stdout + result.stderr


def test_pages_carry_the_security_headers(alice_client):
    response = alice_client.get("/reports/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response["Referrer-Policy"] == "same-origin" and response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    # nothing inline
    assert b"<script>" not in response.content and b"style=" not in response.content


# One job per request.


@pytest.mark.django_db(transaction=True)
def test_an_identical_request_while_the_first_is_queued_gets_the_first(alice_client):
    body = {"report": "orders", "format": "csv", "params": {"status": "paid"}}
    first = alice_client.post(JOBS_URL, data=json.dumps(body), content_type="application/json")
    again = alice_client.post(JOBS_URL, data=json.dumps(body), content_type="application/json")
    assert (first.status_code, again.status_code) == (202, 200) and first.json()["id"] == again.json()["id"]
    other = alice_client.post(JOBS_URL, data=json.dumps({**body, "format": "xlsx"}), content_type="application/json")
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    ReportJob.objects.filter(pk=first.json()["id"]).update(status=Status.SUCCEEDED)
    after = alice_client.post(JOBS_URL, data=json.dumps(body), content_type="application/json")
    # the first one ended: a new run
    assert after.status_code == 202 and after.json()["id"] != first.json()["id"]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_twenty_identical_posts_at_once_make_one_job(alice, web_server):
    session = LiveSession(web_server, alice)
    body = {"report": "orders", "format": "json", "params": {"country": "PT"}}
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(session.request("POST", JOBS_URL, body))) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _, _ in answers)
    ids = {json.loads(data)["id"] for _, data, _ in answers}
    assert statuses == [200] * 19 + [202] and len(ids) == 1
    assert ReportJob.objects.count() == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_more_requests_at_once_than_postgresql_takes_connections_are_all_answered(make_user, web_server):
    """Under ASGI every request in flight has a thread; without the web process's pool of connections
    each would open one, and those past PostgreSQL's max_connections answered 500."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        burst = 2 * int(cursor.fetchone()[0])
    demo.seed(200)
    sessions = [LiveSession(web_server, make_user(f"user{n}")) for n in range(burst)]
    body = json.dumps({"report": "orders", "format": "csv", "delivery": "background"}).encode()

    async def ask(session: LiveSession) -> int:
        """One request on a connection of its own, sent with all the others at once."""
        reader, writer = await asyncio.open_connection(*web_server.removeprefix("http://").split(":"))
        writer.write(
            f"POST /api/reports/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {session.cookie}\r\n"
            f"X-CSRFToken: {session.csrf}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        response = await reader.read()
        writer.close()
        return int(response.split(b" ", 2)[1])

    async def ask_all() -> list[int]:
        return await asyncio.gather(*(ask(session) for session in sessions))

    assert sorted(asyncio.run(ask_all())) == [202] * burst
    assert ReportJob.objects.filter(status=Status.QUEUED).count() == burst


def test_the_admin_action_clicked_twice_makes_one_job(client, make_user):
    demo.seed(20)
    staff = make_user("staff", perms=["shop.view_order"], is_staff=True)
    client.force_login(staff)
    selected = list(Order.objects.values_list("pk", flat=True)[:5])
    chosen = {
        "action": "export_csv_in_background",
        "_selected_action": selected,
        "export_columns": "yes",
        "columns": ["id", "number"],
        # (the action's page, which asks for them, is tested in test_admin_export)
    }
    for _ in range(2):
        page = client.post("/admin/shop/order/", chosen, follow=True)
    assert ReportJob.objects.count() == 1
    assert "Already exporting 5 selected rows" in page.content.decode()
    # (the changelist above is the admin's own)
    assert admin.site._registry[Order]


# The download audit.


def stored_job(owner, **fields) -> ReportJob:
    from django.core.files.base import ContentFile

    from reports.files import reports_storage

    job = ReportJob.objects.create(
        owner=owner, report="orders", format="csv", status=Status.SUCCEEDED, finished_at=timezone.now(), **fields
    )
    job.file.name = reports_storage().save(f"test/{job.pk}.csv", ContentFile(b"id\r\n1\r\n"))
    job.file_size = 7
    job.save()
    return job


def test_every_download_is_recorded_and_listed_in_the_job_admin(alice, alice_client, make_user, client):
    job = stored_job(alice)
    for _ in range(2):
        assert alice_client.get(f"/reports/jobs/{job.pk}/download/", REMOTE_ADDR="203.0.113.7").status_code == 200
    records = list(ReportDownload.objects.values_list("username", "job_ref", "client_address", "file_size", "report"))
    assert records == [("alice", job.pk, "203.0.113.7", 7, "orders")] * 2
    other = Client()
    other.force_login(make_user("mallory"))
    assert other.get(f"/reports/jobs/{job.pk}/download/").status_code == 404
    # a refused download is no download
    assert ReportDownload.objects.count() == 2
    staff = make_user("auditor", perms=["reports.view_reportjob", "reports.view_reportdownload"], is_staff=True)
    client.force_login(staff)
    listing = client.get("/admin/reports/reportjob/").content.decode()
    # the file's downloads, counted
    assert 'class="field-download">owner only (2)<' in listing
    detail = client.get(f"/admin/reports/reportjob/{job.pk}/change/").content.decode()
    assert "Report downloads" in detail and "203.0.113.7" in detail
    job_id = job.pk
    # the job and its file go; the record of who downloaded it stays
    job.delete()
    assert ReportDownload.objects.filter(job_ref=job_id, job=None).count() == 2
    assert "alice" in client.get("/admin/reports/reportdownload/").content.decode()


def test_old_download_records_are_pruned_by_the_sweeper(alice, settings):
    job = stored_job(alice)
    ReportDownload.objects.create(
        job=job,
        job_ref=job.pk,
        report="orders",
        format="csv",
        username="alice",
        at=timezone.now() - timezone.timedelta(days=400),
    )
    ReportDownload.objects.create(job=job, job_ref=job.pk, report="orders", format="csv", username="alice")
    assert prune_audit(timezone.now()) == 1
    assert ReportDownload.objects.count() == 1


# Metrics.


def test_the_metrics_need_the_token(client, settings):
    settings.RQ_API_TOKEN = ""
    # no token set: no metrics at all
    assert client.get("/metrics/").status_code == 401
    settings.RQ_API_TOKEN = "metrics-token"
    assert client.get("/metrics/", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics/").status_code == 401


def test_the_metrics_show_the_series(client, settings, alice):
    settings.RQ_API_TOKEN = "metrics-token"
    now = timezone.now()
    ReportJob.objects.create(
        owner=alice,
        report="orders",
        format="csv",
        status=Status.QUEUED,
        created_at=now - timezone.timedelta(seconds=90),
    )
    ReportJob.objects.create(
        owner=alice,
        report="orders",
        format="xlsx",
        status=Status.SUCCEEDED,
        rows_done=10_000,
        started_at=now - timezone.timedelta(seconds=4),
        finished_at=now,
    )
    response = client.get("/metrics/", HTTP_AUTHORIZATION="Bearer metrics-token")
    text = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    assert 'reports_jobs{format="csv",status="queued"} 1.0' in text
    assert 'reports_jobs{format="xlsx",status="succeeded"} 1.0' in text
    assert 'reports_job_duration_seconds_bucket{le="1"} 0.0' in text
    assert 'reports_job_duration_seconds_bucket{le="5"} 1.0' in text
    assert 'reports_job_rows_per_second_bucket{le="1000"} 0.0' in text
    assert 'reports_job_rows_per_second_bucket{le="10000"} 1.0' in text
    # 90-odd seconds
    assert "reports_oldest_queued_job_age_seconds 9" in text
    for series in (
        "reports_segment_retries_total",
        "reports_downloads_total",
        "reports_queue_depth",
        "reports_websocket_connections",
    ):
        assert series in text
