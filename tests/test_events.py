import datetime as dt
import errno
import re

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from django.core import mail
from django.db import OperationalError

from notifications.models import Notification
from reports import events
from reports.models import ReportJob, Status
from tests.helpers import OUTAGE_ERROR, PLAIN_ERROR

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(events, "notify", lambda user, **kw: calls.append(kw))
    return calls


def running_job(user, **fields):
    return ReportJob.objects.create(owner=user, report="orders", format="csv", status=Status.RUNNING, **fields)


def test_progress_is_throttled_but_the_last_tick_always_goes(alice, sent, monkeypatch):
    clock = iter([0.0, 0.2, 0.4, 1.1, 1.3, 1.4])
    monkeypatch.setattr(events.time, "monotonic", lambda: next(clock))
    notifier = events.ProgressNotifier(interval=1.0)
    job = running_job(alice, rows_total=600)
    for done in (0, 100, 200, 300, 400, 600):
        # as the pipeline does after each batch
        if notifier.due(done, job.rows_total):
            job.rows_done = done
            notifier.push(job)
    assert [c["payload"]["job"]["rows_done"] for c in sent] == [0, 300, 600]
    assert all(c["type"] == "report.progress" and c["store"] is False for c in sent)


def test_ready_is_stored_with_the_job_and_a_download_link(alice):
    job = running_job(alice, rows_done=10, rows_total=10)
    job.transition(Status.SUCCEEDED, file_size=2048)
    events.job_ended(job)
    notification = Notification.objects.get(user=alice)
    assert notification.type == "report.ready"
    assert notification.link == f"/reports/jobs/{job.pk}/download/"
    assert notification.body == "Orders · CSV: 10 rows, 2.0\xa0KB."
    assert notification.payload["job"]["status"] == "succeeded"


def test_an_empty_result_is_said_plainly(alice):
    job = running_job(alice, rows_done=0, rows_total=0)
    job.transition(Status.SUCCEEDED, file_size=67)
    events.job_ended(job)
    assert Notification.objects.get(user=alice).body == "Orders · CSV: 0 rows — nothing matched the filters."


def test_long_reports_are_also_emailed_when_configured(alice, settings):
    settings.REPORTS_EMAIL_AFTER_SECONDS = 60
    alice.email = "alice@example.com"
    alice.save()
    quick = running_job(alice, started_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    quick.transition(Status.FAILED, error="Boom", finished_at=quick.started_at + dt.timedelta(seconds=5))
    events.job_ended(quick)
    assert mail.outbox == []
    slow = running_job(alice, started_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    slow.transition(Status.SUCCEEDED, file_size=1, finished_at=slow.started_at + dt.timedelta(minutes=5))
    events.job_ended(slow)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert f"/reports/jobs/{slow.pk}/download/" in mail.outbox[0].body


def test_no_email_by_default(alice):
    alice.email = "alice@example.com"
    job = running_job(alice, started_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    job.transition(Status.SUCCEEDED, file_size=1)
    events.job_ended(job)
    assert mail.outbox == []


@pytest.mark.parametrize(
    "exc, cause",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk it is written on was full"),
        (OSError("No space left on device (os error 28)"), "the disk it is written on was full"),
        (OperationalError("server closed the connection unexpectedly"), "the database could not be reached"),
        (EndpointConnectionError(endpoint_url="http://s3"), "the file storage answered with an error or not at all"),
        (ReadTimeoutError(endpoint_url="http://s3"), "the file storage answered with an error or not at all"),
    ],
)
def test_an_outage_is_named_to_the_owner_and_detailed_for_staff(exc, cause):
    error, detail = events.explain_error(exc)
    assert re.fullmatch(OUTAGE_ERROR.format(cause=cause), error)
    assert detail.endswith(f"{type(exc).__name__}: {exc}")


def test_any_other_error_is_ours_and_names_nothing_of_the_system():
    error, detail = events.explain_error(OSError(errno.EACCES, "Permission denied: '/srv/secret'"))
    assert re.fullmatch(PLAIN_ERROR, error) and "/srv/secret" in detail
