"""Reports on a schedule: slots in the owner's time zone (DST included), once per slot, missed slots,
relative dates, lost permissions, the API; and end to end, RQ's cron scheduler in two sweeper
processes putting the tick on the queue for real workers."""

import datetime as dt
import threading
import zoneinfo

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import close_old_connections, connection
from django.test import Client, override_settings

from notifications.models import Notification
from reports import schedules
from reports.dates import period
from reports.models import ReportJob, ReportSchedule, Status
from shop import demo
from tests.helpers import JOBS_URL, LiveSession, post_json, serve, wait_for

pytestmark = pytest.mark.django_db
UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def create(client, **fields):
    body = {
        "report": "orders",
        "format": "csv",
        "frequency": "weekly",
        "weekdays": [0],
        "time": "08:00",
        "time_zone": "Europe/Berlin",
        **fields,
    }
    return post_json(client, "/api/reports/schedules/", body)


def at(*args, zone=UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=zone)


@override_settings(REPORTS_MAX_ACTIVE_JOBS_PER_USER=100)
def test_a_weekly_schedule_runs_on_its_slots_only_across_a_dst_change(alice_client, alice):
    """Mondays and Thursdays at 08:00 in Berlin, ticked every 10 minutes for three weeks around the end
    of summer time (2026-10-25): 08:00 is 06:00 UTC before it and 07:00 UTC after, one run each."""
    with time_machine.travel(at(2026, 10, 15, 12, 0), tick=False) as traveller:
        response = create(alice_client, weekdays=[3, 0], time="08:00")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["description"] == "Mondays and Thursdays at 08:00 (Europe/Berlin)"
        assert body["next_run_at"] == "2026-10-19T06:00:00+00:00"
        moment = at(2026, 10, 15, 12, 0)
        while moment < at(2026, 11, 6, 12, 0):
            moment += dt.timedelta(minutes=10)
            traveller.move_to(moment)
            schedules.run_due()
    runs = list(ReportJob.objects.filter(schedule_id=body["id"]).order_by("slot"))
    assert [run.slot for run in runs] == [
        # CEST, UTC+2
        at(2026, 10, 19, 6),
        at(2026, 10, 22, 6),
        # CET, UTC+1
        at(2026, 10, 26, 7),
        at(2026, 10, 29, 7),
        at(2026, 11, 2, 7),
        at(2026, 11, 5, 7),
    ]
    assert all(run.slot.astimezone(BERLIN).strftime("%a %H:%M") in ("Mon 08:00", "Thu 08:00") for run in runs)
    # Each run was asked for by the first tick after its slot, as an ordinary queued job of the owner.
    assert all(dt.timedelta(0) <= run.created_at - run.slot <= dt.timedelta(minutes=10) for run in runs)
    assert {(run.owner_id, run.report, run.format, run.status) for run in runs} == {
        (alice.pk, "orders", "csv", Status.QUEUED)
    }
    assert ReportSchedule.objects.get().next_run_at == at(2026, 11, 9, 7)


def test_a_skipped_or_repeated_wall_time_runs_once():
    """02:30 does not exist in Berlin on 2026-03-29 (it runs at 03:30 CEST) and happens twice on
    2026-10-25 (it runs at the first)."""
    daily = ReportSchedule(frequency="daily", time=dt.time(2, 30), time_zone="Europe/Berlin")
    assert schedules.next_slot(daily, at(2026, 3, 28, 12)) == at(2026, 3, 29, 1, 30)
    assert schedules.next_slot(daily, at(2026, 3, 29, 1, 30)) == at(2026, 3, 30, 0, 30)
    assert schedules.next_slot(daily, at(2026, 10, 24, 12)) == at(2026, 10, 25, 0, 30)
    assert schedules.next_slot(daily, at(2026, 10, 25, 0, 30)) == at(2026, 10, 26, 1, 30)
    monthly = ReportSchedule(frequency="monthly", day_of_month=31, time=dt.time(9), time_zone="UTC")
    slots, moment = [], at(2027, 1, 1)
    for _ in range(4):
        moment = schedules.next_slot(monthly, moment)
        slots.append(moment.date().isoformat())
    assert slots == ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]


def test_slots_missed_while_everything_was_down_run_once(alice_client):
    with time_machine.travel(at(2026, 11, 2, 12), tick=False) as traveller:
        schedule_id = create(alice_client, frequency="daily", time="08:00", time_zone="UTC").json()["id"]
        # the slots of the 3rd, 4th, 5th and 6th passed unseen
        traveller.move_to(at(2026, 11, 6, 9, 30))
        assert schedules.run_due() == 1
        assert schedules.run_due() == 0
    runs = ReportJob.objects.filter(schedule_id=schedule_id)
    # once, for the latest of them
    assert [run.slot for run in runs] == [at(2026, 11, 6, 8)]
    assert ReportSchedule.objects.get().next_run_at == at(2026, 11, 7, 8)


@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_start_one_run(alice_client, redis_queue):
    schedule_id = create(alice_client, frequency="daily", time="08:00", time_zone="UTC").json()["id"]
    ReportSchedule.objects.filter(pk=schedule_id).update(next_run_at=at(2026, 1, 1, 8))
    barrier, started = threading.Barrier(4), []

    def tick():
        barrier.wait()
        try:
            started.append(schedules.run_due())
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(started) == [0, 0, 0, 1]
    assert ReportJob.objects.filter(schedule_id=schedule_id).count() == 1


@override_settings(REPORTS_MAX_ACTIVE_JOBS_PER_USER=100)
def test_relative_dates_are_resolved_when_each_run_starts(alice_client):
    params = {"created_from": "last month", "created_to": "last month", "status": "paid"}
    with time_machine.travel(at(2026, 10, 20, 12), tick=False) as traveller:
        response = create(alice_client, frequency="monthly", day_of_month=1, time="06:00", params=params)
        assert response.status_code == 201, response.content
        # kept as given: resolved per run
        assert response.json()["params"] == params
        # 06:01 in Berlin (CET)
        for moment in (at(2026, 11, 1, 5, 1), at(2026, 12, 1, 5, 1)):
            traveller.move_to(moment)
            assert schedules.run_due() == 1
    runs = ReportJob.objects.order_by("slot")
    assert [run.params for run in runs] == [
        {"status": "paid", "created_from": "2026-10-01", "created_to": "2026-10-31"},
        {"status": "paid", "created_from": "2026-11-01", "created_to": "2026-11-30"},
    ]


def test_relative_periods():
    today = dt.date(2026, 3, 1)
    assert period("today", today) == (today, today)
    assert period("yesterday", today) == (dt.date(2026, 2, 28),) * 2
    assert period("last 7 days", today) == (dt.date(2026, 2, 22), dt.date(2026, 2, 28))
    assert period("this month", today) == (today, today)
    assert period("last month", today) == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))


def test_a_one_off_request_takes_relative_dates_too(alice_client):
    with time_machine.travel(at(2026, 11, 29, 10), tick=False):
        response = post_json(
            alice_client,
            JOBS_URL,
            {"report": "orders", "format": "csv", "params": {"created_from": "yesterday"}},
        )
    assert response.status_code == 202
    assert response.json()["params"] == {"created_from": "2026-11-28"}


@override_settings(REPORTS_EMAIL_AFTER_SECONDS=3600)
def test_a_run_whose_owner_lost_the_permission_fails_with_a_notice(
    alice_client, alice, django_capture_on_commit_callbacks
):
    alice.email = "alice@example.com"
    alice.save()
    schedule_id = create(alice_client, frequency="daily", time="08:00", time_zone="UTC").json()["id"]
    alice.user_permissions.remove(Permission.objects.get(codename="view_order"))
    ReportSchedule.objects.filter(pk=schedule_id).update(next_run_at=at(2026, 1, 1, 8))
    with django_capture_on_commit_callbacks(execute=True):
        assert schedules.run_due() == 1
    run = ReportJob.objects.get(schedule_id=schedule_id)
    assert run.status == Status.FAILED and run.file.name == ""
    assert run.error.startswith("The scheduled run could not start: You may not run the 'Orders' report")
    notice = Notification.objects.get(user=alice)
    assert notice.type == "report.failed" and "could not start" in notice.body
    # A scheduled run is e-mailed however quickly it ended (nobody waits for it on a page).
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    assert "could not start" in mail.outbox[0].body
    # it goes on: the permission may come back
    assert ReportSchedule.objects.get().next_run_at > at(2026, 11, 1)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"frequency": "hourly"}, "frequency", "Choose one of: daily, weekly, monthly."),
        ({"weekdays": []}, "weekdays", "A weekly schedule needs its days"),
        ({"weekdays": [7]}, "weekdays", "A weekly schedule needs its days"),
        ({"weekdays": [True]}, "weekdays", "A weekly schedule needs its days"),
        ({"weekdays": list(range(7)) * 10_000}, "weekdays", "A weekly schedule needs its days"),
        ({"frequency": "monthly", "day_of_month": 32}, "day_of_month", "1 to 31"),
        ({"frequency": "monthly"}, "day_of_month", "1 to 31"),
        ({"time": "25:00"}, "time", 'as "HH:MM"'),
        ({"time": "08:00:30"}, "time", 'as "HH:MM"'),
        ({"time": 800}, "time", 'as "HH:MM"'),
        ({"time_zone": "../../etc/passwd"}, "time_zone", "IANA time zone"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "IANA time zone"),
        ({"columns": ["amount", "secret"]}, "columns", "Unknown column 'secret'"),
        ({"params": {"status": "last month"}}, "status", "Select a valid choice"),
        ({"params": {"created_from": "next year"}}, "created_from", "Enter a valid date"),
        ({"format": "exe"}, "format", "Choose one of"),
    ],
)
def test_wrong_schedules_are_refused_with_the_reason(alice_client, fields, field, message):
    response = create(alice_client, **fields)
    assert response.status_code == 400, response.content
    assert message in " ".join(response.json()["fields"][field])
    assert not ReportSchedule.objects.exists()


def test_schedule_api_lists_pauses_resumes_and_deletes_only_ones_own(alice_client, make_user):
    with time_machine.travel(at(2026, 11, 29, 10), tick=False) as traveller:
        body = create(alice_client, columns=["number", "amount"], params={"created_from": "last 7 days"}).json()
        assert body["next_run_at"] == "2026-11-30T07:00:00+00:00" and body["columns"] == ["number", "amount"]
        assert body["last_run"] is None and body["paused"] is False
        url = f"/api/reports/schedules/{body['id']}/"
        paused = post_json(alice_client, url + "pause/", {}).json()
        assert paused["paused"] is True and paused["next_run_at"] is None
        traveller.move_to(at(2026, 12, 2, 10))
        # paused: Monday's slot passes
        assert schedules.run_due() == 0
        resumed = post_json(alice_client, url + "resume/", {}).json()
        # from the next slot on, not the passed one
        assert resumed["next_run_at"] == "2026-12-07T07:00:00+00:00"
    listed = alice_client.get("/api/reports/schedules/").json()["schedules"]
    assert [s["id"] for s in listed] == [body["id"]]
    client = Client()
    client.force_login(make_user("bob"))
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert post_json(client, url + "pause/", {}).status_code == 404
    assert client.get("/api/reports/schedules/").json() == {"schedules": []}
    assert alice_client.delete(url).json() == {"deleted": True}
    assert not ReportSchedule.objects.exists()


@override_settings(REPORTS_MAX_SCHEDULES_PER_USER=2)
def test_a_user_has_at_most_so_many_schedules(alice_client):
    assert create(alice_client).status_code == 201
    assert create(alice_client).status_code == 201
    response = create(alice_client)
    assert response.status_code == 400
    assert response.json()["fields"]["__all__"] == ["You have 2 schedules already; delete one first."]


@pytest.mark.integration
def test_two_cron_schedulers_queue_the_tick_and_the_slot_runs_once(
    alice_client, start_worker, start_sweeper, redis_queue
):
    """End to end: RQ's cron scheduler in two sweeper processes, each putting the tick on the queue,
    two real workers running the ticks and the report; the schedule's slot gives one file."""
    demo.seed(300)
    body = create(alice_client, frequency="daily", time="08:00", time_zone="UTC", columns=["amount", "number"]).json()
    ReportSchedule.objects.filter(pk=body["id"]).update(next_run_at=at(2026, 1, 1, 8))
    start_worker()
    start_worker()
    start_sweeper(every=0.5)
    start_sweeper(every=0.5)
    run = wait_for(
        lambda: ReportJob.objects.filter(schedule_id=body["id"], status=Status.SUCCEEDED).first(),
        timeout=90,
        message="the scheduled run to end",
    )
    ticks = wait_for(
        lambda: len(finished_ticks(redis_queue)) >= 2 and finished_ticks(redis_queue),
        timeout=60,
        message="both schedulers' ticks to have run",
    )
    assert len(ticks) >= 2
    assert ReportJob.objects.filter(schedule_id=body["id"]).count() == 1
    lines = run.file.open("rb").read().decode().splitlines()
    assert lines[0] == "Amount,Number" and len(lines) == 301
    ready = Notification.objects.filter(user=run.owner, type="report.ready")
    wait_for(ready.exists, timeout=10, message="the ready notification (stored just after the job ends)")
    assert ready.count() == 1 and ready.get().payload["job"]["id"] == str(run.pk)
    assert alice_client.get(f"/api/reports/schedules/{body['id']}/").json()["last_run"]["status"] == "succeeded"


def finished_ticks(queue) -> list[str]:
    from rq.registry import FinishedJobRegistry

    registry = FinishedJobRegistry(queue=queue)
    return [job_id for job_id in registry.get_job_ids() if queue.fetch_job(job_id).func_name.endswith("tick_schedules")]


def test_the_admin_lists_everyones_schedules_and_pauses_them(alice_client, make_user, client):
    body = create(alice_client, frequency="monthly", day_of_month=31, time="06:15", time_zone="Asia/Tokyo").json()
    admin_user = make_user("root", perms=(), is_staff=True, is_superuser=True)
    admin_client = Client()
    admin_client.force_login(admin_user)
    page = admin_client.get("/admin/reports/reportschedule/").content.decode()
    assert "Orders · CSV" in page and "Monthly on day 31 at 06:15 (Asia/Tokyo)" in page and "alice" in page
    done = admin_client.post(
        "/admin/reports/reportschedule/", {"action": "pause", "_selected_action": [body["id"]]}, follow=True
    )
    assert "Paused 1 schedules." in done.content.decode()
    assert ReportSchedule.objects.get().paused and ReportSchedule.objects.get().next_run_at is None
    detail = admin_client.get(f"/admin/reports/reportschedule/{body['id']}/change/")
    assert detail.status_code == 200 and "Asia/Tokyo" in detail.content.decode()
    staff = make_user("staff", perms=("reports.view_reportschedule",), is_staff=True)
    viewer = Client()
    viewer.force_login(staff)
    assert viewer.get("/admin/reports/reportschedule/").status_code == 200
    assert viewer.post(
        "/admin/reports/reportschedule/", {"action": "resume", "_selected_action": [body["id"]]}
    ).status_code in (200, 302)
    # seeing them is not managing them
    assert ReportSchedule.objects.get().paused


def test_a_schedule_that_breaks_the_tick_does_not_stop_the_others(alice_client, monkeypatch):
    first = create(alice_client, frequency="daily", time="08:00", time_zone="UTC").json()["id"]
    second = create(alice_client, frequency="daily", time="09:00", time_zone="UTC").json()["id"]
    ReportSchedule.objects.update(next_run_at=at(2026, 1, 1, 8))
    real = schedules.start_run

    def start_run(schedule, slot, now):
        if schedule.pk == first:
            raise RuntimeError("the database went away")
        return real(schedule, slot, now)

    monkeypatch.setattr(schedules, "start_run", start_run)
    assert schedules.run_due() == 1
    assert list(ReportJob.objects.values_list("schedule_id", flat=True)) == [second]
    # its slot waits for the next tick
    assert ReportSchedule.objects.get(pk=first).next_run_at == at(2026, 1, 1, 8)


def test_a_deactivated_owners_schedules_pause_and_say_why(alice_client, alice, client, make_user):
    with time_machine.travel(at(2026, 10, 15, 12, 0), tick=False) as traveller:
        schedule_id = create(alice_client, frequency="daily").json()["id"]
        alice.is_active = False
        alice.save()
        schedule = ReportSchedule.objects.get(pk=schedule_id)
        assert schedule.paused and schedule.next_run_at is None
        assert schedule.paused_because == "Its owner's account was deactivated."
        traveller.move_to(at(2026, 10, 20, 12, 0))
        assert schedules.run_due() == 0
    assert not ReportJob.objects.exists() and not mail.outbox and not Notification.objects.exists()
    staff = make_user("staff", perms=["reports.view_reportschedule"], is_staff=True)
    client.force_login(staff)
    page = client.get(f"/admin/reports/reportschedule/{schedule_id}/change/").content.decode()
    assert "Its owner&#x27;s account was deactivated." in page


def test_an_owner_deactivated_by_a_bulk_update_gets_no_run_either(alice_client, alice):
    with time_machine.travel(at(2026, 10, 15, 12, 0), tick=False) as traveller:
        schedule_id = create(alice_client, frequency="daily").json()["id"]
        # no signal
        type(alice).objects.filter(pk=alice.pk).update(is_active=False)
        traveller.move_to(at(2026, 10, 16, 12, 0))
        assert schedules.run_due() == 0
    assert not ReportJob.objects.exists() and not mail.outbox
    schedule = ReportSchedule.objects.get(pk=schedule_id)
    assert schedule.paused and schedule.paused_because == "Its owner's account was deactivated."
    # Resumed (by its owner, active again), it runs and says nothing more of it.
    type(alice).objects.filter(pk=alice.pk).update(is_active=True)
    assert schedules.set_paused(schedule, False).paused_because == ""


@pytest.mark.django_db(transaction=True)
def test_schedules_saved_at_once_stay_within_the_limit(alice, redis_queue):
    """Eight saves at once through the real server, with room for three: three schedules, five refusals."""

    body = {"report": "orders", "format": "csv", "frequency": "daily", "time": "08:00", "time_zone": "UTC"}
    answers = []

    def save(session):
        answers.append(session.request("POST", "/api/reports/schedules/", body)[0])

    with serve(REPORTS_MAX_SCHEDULES_PER_USER=3) as base_url:
        session = LiveSession(base_url, alice)
        threads = [threading.Thread(target=save, args=(session,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(answers) == [201] * 3 + [400] * 5
    assert ReportSchedule.objects.filter(owner=alice).count() == 3
