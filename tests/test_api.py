"""The JSON API's answers to right, wrong, missing, hostile and huge input."""

import json
import time

import pytest
from django.test import Client, override_settings

from reports.models import ReportJob, Status
from reports.sweeper import sweep
from shop import demo
from shop.models import Order
from tests.helpers import JOBS_URL, post_json

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)
def test_202_records_the_job_and_enqueues_it_after_commit(alice_client, redis_queue):
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv", "params": {"status": "paid"}})
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= {
        "id",
        "report",
        "format",
        "params",
        "status",
        "rows_done",
        "rows_total",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
        "file_size",
        "download_url",
        "error",
    }
    assert body["status"] == "queued" and body["params"] == {"status": "paid"}
    assert redis_queue.job_ids == [f"report-{body['id']}-a1"]
    rq_job = redis_queue.fetch_job(f"report-{body['id']}-a1")
    assert rq_job.func_name == "reports.tasks.run_report" and rq_job.args == [body["id"]]


def test_post_without_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = post_json(client, JOBS_URL, {"report": "orders", "format": "csv"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert not ReportJob.objects.exists()


def test_anonymous_gets_401(client):
    assert post_json(client, JOBS_URL, {"report": "orders", "format": "csv"}).status_code == 401
    assert client.get("/api/reports/").status_code == 401
    assert client.get(JOBS_URL).status_code == 401


def test_unknown_report_is_404(alice_client):
    response = post_json(alice_client, JOBS_URL, {"report": "../../etc/passwd", "format": "csv"})
    assert response.status_code == 404
    assert "No report called" in response.json()["error"]


def test_no_permission_is_403(make_user, client):
    client.force_login(make_user("bob", perms=["shop.view_customer"]))
    response = post_json(client, JOBS_URL, {"report": "orders", "format": "csv"})
    assert response.status_code == 403
    assert not ReportJob.objects.exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"report": "orders", "format": "exe"}, ["format"]),
        ({"report": "orders"}, ["format"]),
        ({"format": "csv"}, ["report"]),
        ({"report": 7, "format": "csv"}, ["report"]),
        ({"report": "orders", "format": "csv", "owner": 2}, ["owner"]),
        (
            {"report": "orders", "format": "csv", "params": {"customer__password__startswith": "a"}},
            ["customer__password__startswith"],
        ),
        ({"report": "orders", "format": "csv", "params": {"min_amount": "lots"}}, ["min_amount"]),
        ({"report": "orders", "format": "csv", "params": {"created_from": "2025-13-45"}}, ["created_from"]),
        ({"report": "orders", "format": "csv", "params": "status=paid"}, ["params"]),
    ],
)
def test_invalid_input_is_400_with_field_errors(alice_client, body, fields):
    response = post_json(alice_client, JOBS_URL, body)
    assert response.status_code == 400
    assert sorted(response.json()["fields"]) == sorted(fields)
    assert not ReportJob.objects.exists()


@pytest.mark.parametrize("body", ["not json", "[1, 2]", "null", b"\xff\xfe", '"orders"'])
def test_a_body_that_is_not_a_json_object_is_400(alice_client, body):
    response = post_json(alice_client, JOBS_URL, body)
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_a_huge_body_is_413(alice_client):
    body = {"report": "orders", "format": "csv", "params": {"note": "x" * 3_000_000}}
    response = post_json(alice_client, JOBS_URL, body)
    assert response.status_code == 413
    assert not ReportJob.objects.exists()


@override_settings(REPORTS_MAX_ACTIVE_JOBS_PER_USER=2)
def test_over_the_active_job_limit_is_429(alice_client, alice):
    ReportJob.objects.create(owner=alice, report="orders", format="csv")
    ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.RUNNING)
    ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.SUCCEEDED)
    # (the same csv again is the same job)
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "xlsx"})
    assert response.status_code == 429
    assert "2 reports" in response.json()["error"]
    assert ReportJob.objects.count() == 3


def test_wrong_methods_are_405(alice_client, alice):
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv")
    assert alice_client.delete(JOBS_URL).status_code == 405
    assert alice_client.post(f"{JOBS_URL}{job.pk}/").status_code == 405
    assert alice_client.get(f"{JOBS_URL}{job.pk}/cancel/").status_code == 405


def test_malformed_job_ids_are_404(alice_client):
    assert alice_client.get("/api/reports/jobs/not-a-uuid/").status_code == 404
    assert alice_client.get("/api/reports/jobs/00000000-0000-0000-0000-000000000000/").status_code == 404


def test_report_list_shows_only_permitted_reports_with_their_filters(make_user, client):
    client.force_login(make_user("carol", perms=["shop.view_order"]))
    reports = {r["slug"]: r for r in client.get("/api/reports/").json()["reports"]}
    assert "orders" in reports and "customers" not in reports
    filters = {f["name"]: f for f in reports["orders"]["filters"]}
    assert set(filters) == {"status", "country", "created_from", "created_to", "min_amount"}
    assert ["paid", "Paid"] in filters["status"]["choices"]
    assert filters["created_from"]["input"] == "date"
    assert {"name": "csv", "label": "CSV"} in reports["orders"]["formats"]


def test_job_list_is_own_jobs_newest_first(alice_client, alice, make_user):
    older = ReportJob.objects.create(owner=alice, report="orders", format="csv")
    newer = ReportJob.objects.create(owner=alice, report="customers", format="csv")
    ReportJob.objects.create(owner=make_user("dave"), report="orders", format="csv")
    ids = [j["id"] for j in alice_client.get(JOBS_URL).json()["jobs"]]
    assert ids == [str(newer.pk), str(older.pk)]


def test_illegal_transitions_are_refused(alice):
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.SUCCEEDED)
    assert not job.transition(Status.RUNNING)
    assert not job.transition(Status.CANCELLED)
    assert ReportJob.objects.get(pk=job.pk).status == Status.SUCCEEDED
    assert job.transition(Status.EXPIRED)


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_queue_entry_was_lost_is_enqueued_again_by_the_sweeper(alice_client, redis_queue, settings):
    settings.REPORTS_STALE_AFTER_SECONDS = 0
    job_id = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"}).json()["id"]
    # Redis restarted and forgot the queue
    redis_queue.connection.flushdb()
    assert redis_queue.job_ids == []
    assert sweep()["requeued"] == 1
    assert redis_queue.job_ids == [f"report-{job_id}-a1"]
    # already on the queue: left alone
    assert sweep()["requeued"] == 0


@pytest.mark.django_db(transaction=True)
def test_redis_down_at_commit_still_answers_202_and_keeps_the_row(alice_client, settings):
    settings.RQ_QUEUES = {"reports": {"URL": "redis://127.0.0.1:1/0", "SERIALIZER": "rq.serializers.JSONSerializer"}}
    response = post_json(alice_client, JOBS_URL, {"report": "orders", "format": "csv"})
    assert response.status_code == 202
    job = ReportJob.objects.get(pk=response.json()["id"])
    assert job.status == Status.QUEUED and job.waiting_for_queue
    assert alice_client.get(f"{JOBS_URL}{job.pk}/").json()["waiting_for_queue"] is True


@pytest.mark.django_db(transaction=True)
def test_retry_makes_a_new_job_with_the_same_parameters(alice_client, alice, make_user, redis_queue):
    failed = ReportJob.objects.create(
        owner=alice, report="orders", format="csv", params={"status": "paid"}, status=Status.FAILED, error="boom"
    )
    response = alice_client.post(f"{JOBS_URL}{failed.pk}/retry/")
    assert response.status_code == 202
    new = response.json()
    assert new["id"] != str(failed.pk) and new["params"] == {"status": "paid"} and new["status"] == "queued"
    assert redis_queue.job_ids == [f"report-{new['id']}-a1"]
    ReportJob.objects.filter(pk=failed.pk).update(status=Status.SUCCEEDED)
    conflict = alice_client.post(f"{JOBS_URL}{failed.pk}/retry/")
    assert conflict.status_code == 409 and "only failed" in conflict.json()["error"]
    other = Client()
    other.force_login(make_user("erin"))
    assert other.post(f"{JOBS_URL}{failed.pk}/retry/").status_code == 404


def test_notifications_api_lists_and_marks_only_own(alice_client, alice, make_user):
    from notifications.models import Notification

    mine = Notification.objects.create(user=alice, type="report.ready", title="Mine")
    theirs = Notification.objects.create(user=make_user("frank"), type="report.ready", title="Theirs")
    data = alice_client.get("/api/notifications/").json()
    assert data["unseen"] == 1 and [n["notification"]["title"] for n in data["notifications"]] == ["Mine"]
    seen = alice_client.post(
        "/api/notifications/seen/", data=json.dumps({"ids": [mine.pk, theirs.pk]}), content_type="application/json"
    )
    assert seen.json() == {"seen": 1}
    theirs.refresh_from_db()
    assert theirs.seen_at is None
    bad = alice_client.post("/api/notifications/seen/", data='{"ids": "all"}', content_type="application/json")
    assert bad.status_code == 400
    assert Client().get("/api/notifications/").status_code == 401


def test_filters_that_match_nothing_are_refused_at_once(alice_client, settings):
    settings.REPORTS_EMPTY_CHECK_MS = 200
    demo.seed(50)
    nothing = {"report": "orders", "format": "csv", "params": {"country": "ZZ"}}
    response = alice_client.post(JOBS_URL, data=json.dumps(nothing), content_type="application/json")
    assert response.status_code == 400 and not ReportJob.objects.exists()
    assert response.json()["fields"] == {
        "__all__": ["Nothing matches these filters: there is nothing to export. Widen or clear them and try again."]
    }
    some = {"report": "orders", "format": "csv", "params": {"country": Order.objects.first().country}}
    assert alice_client.post(JOBS_URL, data=json.dumps(some), content_type="application/json").status_code == 202


def test_a_slow_emptiness_check_is_given_up_and_leaves_the_connection_as_it_was(settings):
    from django.db import connection

    from reports.services import nothing_matches

    settings.REPORTS_EMPTY_CHECK_MS = 50
    demo.seed(5)
    # empty, but 0.2 s a row to say so
    slow = Order.objects.extra(where=["pg_sleep(0.2)::text = 'never'"])
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        before = cursor.fetchone()[0]
        started = time.monotonic()
        # not known in time: the run will say it
        assert nothing_matches(slow) is False
        assert time.monotonic() - started < 0.4
        assert nothing_matches(Order.objects.filter(country="ZZ")) is True
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == before
