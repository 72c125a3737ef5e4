"""The findings of the security audit, each tried again: input that once made a 5xx, the queue
dashboard, abuse, and the defaults a production start gets."""

import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, override_settings

from notifications.models import Notification
from reports.models import ReportJob, Status
from tests.helpers import JOBS_URL, ROOT, post_json

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value", [5, 0, True, False, 1.5, -1, 1e300, "5"])
def test_a_date_filter_given_a_number_or_a_boolean_is_400(alice_client, value):
    response = post_json(
        alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": {"created_from": value}}
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"created_from": ["Enter a valid date."]}
    assert not ReportJob.objects.exists()


def test_json_numbers_and_booleans_are_read_as_the_text_they_stand_for(alice_client, make_user, client):
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": {"min_amount": 10}})
    assert response.status_code == 202 and response.json()["params"] == {"min_amount": "10"}
    client.force_login(make_user("cus", perms=["shop.view_customer"]))
    response = post_json(client, JOBS_URL, {"report": "customers", "format": "csv", "params": {"is_active": False}})
    assert response.status_code == 202 and response.json()["params"] == {"is_active": False}


@pytest.mark.parametrize("path", [JOBS_URL, "/api/notifications/seen/"])
@pytest.mark.parametrize("depth", [50_000, 1_000_000])
def test_a_deeply_nested_body_is_400(alice_client, path, depth):
    response = post_json(alice_client, path, "[" * depth + "]" * depth)
    assert response.status_code in (400, 413)
    assert "error" in response.json()
    assert not ReportJob.objects.exists()


def test_error_bodies_stay_small_whatever_was_sent(alice_client):
    params = {f"k{i}": "v" for i in range(50_000)}
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": params})
    assert response.status_code == 400
    assert len(response.content) < 4_000
    assert "49,980 more" in response.content.decode()
    extra = {f"x{i}": 1 for i in range(10_000)}
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", **extra})
    assert response.status_code == 400 and len(response.content) < 4_000


def test_a_range_given_the_wrong_way_round_is_400(alice_client):
    params = {"created_from": "2025-03-01", "created_to": "2025-02-01"}
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": params})
    assert response.status_code == 400
    assert response.json()["fields"] == {"created_to": ["Must not be before Created from (2025-03-01)."]}
    params = {"created_from": "2025-02-01", "created_to": "2025-02-01"}
    assert post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": params}).status_code == 202


@override_settings(REPORTS_MAX_JOBS_PER_MINUTE=5)
def test_creating_jobs_is_rate_limited_counting_cancelled_ones(alice_client):
    for _ in range(5):
        job = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()
        assert alice_client.post(f"{JOBS_URL}{job['id']}/cancel/").status_code == 200
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"})
    assert response.status_code == 429 and "5 reports in the last minute" in response.json()["error"]
    assert ReportJob.objects.count() == 5
    # one's own cancels are not stored as notifications
    assert not Notification.objects.exists()


def test_a_cancel_by_someone_else_is_stored_for_the_owner(client, alice, make_user, django_capture_on_commit_callbacks):
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv")
    manager = make_user("manager", perms=["reports.view_reportjob", "reports.change_reportjob"], is_staff=True)
    client.force_login(manager)
    # (The owner is told once the cancel is committed.)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/reports/reportjob/", {"action": "cancel_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert list(Notification.objects.values_list("user", "type")) == [(alice.pk, "report.cancelled")]


@pytest.mark.parametrize(
    "body",
    [
        "[1]",
        '"x"',
        "",
        "{}",
        '{"ids": []}',
        '{"ids": [true]}',
        '{"all": 1}',
        '{"ids": [1], "all": true}',
        '{"ids": [1.5]}',
        "null",
    ],
)
def test_a_malformed_seen_body_is_400_and_marks_nothing(alice_client, alice, body):
    Notification.objects.create(user=alice, type="report.ready", title="Unseen")
    response = post_json(alice_client, "/api/notifications/seen/", body)
    assert response.status_code == 400
    assert Notification.objects.unseen().count() == 1


def test_seen_all_is_said_explicitly(alice_client, alice):
    Notification.objects.create(user=alice, type="report.ready", title="One")
    Notification.objects.create(user=alice, type="report.ready", title="Two")
    assert post_json(alice_client, "/api/notifications/seen/", {"all": True}).json() == {"seen": 2}


# The RQ dashboard.

DASHBOARD_VIEWS = [
    "/admin/django_rq/dashboard/",
    "/admin/django_rq/dashboard/queues/0/",
    "/admin/django_rq/dashboard/workers/0/",
    "/admin/django_rq/dashboard/stats.json",
]


@pytest.mark.parametrize("path", DASHBOARD_VIEWS)
def test_staff_without_the_queue_permission_may_not_open_the_dashboard(client, make_user, path):
    client.force_login(make_user("staff", perms=["reports.view_reportjob"], is_staff=True))
    assert client.get(path).status_code == 403


# enqueued at once, not at a commit that never comes
@pytest.mark.django_db(transaction=True)
def test_staff_without_the_queue_permission_may_not_empty_a_queue(client, make_user, redis_queue):
    redis_queue.enqueue("reports.tasks.plan_report", "x", job_id="report-keep-me")
    client.force_login(make_user("staff", perms=["reports.view_reportjob"], is_staff=True))
    assert client.post("/admin/django_rq/dashboard/queues/0/empty/").status_code == 403
    assert redis_queue.count == 1


def test_the_queue_permission_opens_the_dashboard_and_the_job_admins_link(client, make_user):
    user = make_user("ops", perms=["reports.view_reportjob"], is_staff=True)
    client.force_login(user)
    assert "Queue dashboard" not in client.get("/admin/reports/reportjob/").content.decode()
    user.user_permissions.add(Permission.objects.get(content_type__app_label="django_rq", codename="admin"))
    client.force_login(type(user).objects.get(pk=user.pk))
    dashboard = client.get("/admin/django_rq/dashboard/")
    assert dashboard.status_code == 200
    assert 'class="breadcrumbs"' in dashboard.content.decode() and "reports/admin.css" in dashboard.content.decode()
    assert "Queue dashboard" in client.get("/admin/reports/reportjob/").content.decode()


def test_the_api_token_still_opens_the_stats(client, settings):
    settings.RQ_API_TOKEN = "s3cret-token"
    response = client.get("/admin/django_rq/dashboard/stats.json", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and "queues" in response.json()
    assert Client().get("/admin/django_rq/dashboard/stats.json").status_code != 200
    # Never in the path, where access logs keep it.
    settings.RQ_API_TOKEN = "s3cretToken"
    in_path = client.get("/admin/django_rq/dashboard/stats.json/s3cretToken/")
    assert in_path.status_code == 400 and b"queues" not in in_path.content


# Defaults a production start gets.


def settings_in_a_fresh_interpreter(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; django.setup(); "
            "print(settings.DEBUG, len(settings.AUTH_PASSWORD_VALIDATORS))",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
    )


def test_without_environment_debug_is_off_and_a_secret_key_is_required():
    refused = settings_in_a_fresh_interpreter()
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY must be set" in refused.stderr
    started = settings_in_a_fresh_interpreter(DJANGO_SECRET_KEY="x" * 50)
    assert started.stdout.split() == ["False", "4"], started.stderr
    assert settings_in_a_fresh_interpreter(DJANGO_DEBUG="true").stdout.split() == ["True", "4"]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_the_web_server_refuses_to_listen_beyond_this_machine_in_debug_mode(host):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env = {**clean, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_DEBUG": "true"}
    command = [sys.executable, "-m", "project.web", "--host", host, "--port", "1"]
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert f"Refusing to listen on {host} with DJANGO_DEBUG on" in refused.stderr


def test_the_local_run_listens_on_this_machine_only():
    from scripts import run

    assert run.HOST == "127.0.0.1" and run.PROCESSES["web"][run.PROCESSES["web"].index("--host") + 1] == "127.0.0.1"
