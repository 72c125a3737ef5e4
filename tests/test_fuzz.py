"""Generated hostile input at every endpoint that takes a body, and at the websocket: never a 5xx,
and an invalid request creates nothing (no job, no schedule, no notification)."""

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifications.models import Notification
from reports.admin_reports import admin_report_slug
from reports.models import ReportJob, ReportSchedule, Status
from reports.registry import all_reports
from reports.writers import FORMATS
from shop.models import Order
from tests.helpers import JOBS_URL, post_json

pytestmark = pytest.mark.django_db
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
slugs = st.sampled_from([r.slug for r in all_reports()] + [admin_report_slug(Order)]) | st.text(max_size=20)
formats = st.sampled_from(list(FORMATS)) | st.text(max_size=10)
filter_names = st.sampled_from(sorted({f.name for r in all_reports() for f in r.get_filters()} | {"ids", "query"}))
params = st.dictionaries(
    filter_names | st.text(max_size=15), json_values | st.lists(st.integers() | st.text()), max_size=5
)
job_bodies = (
    st.fixed_dictionaries(
        {"report": slugs, "format": formats}, optional={"params": params | json_values, "columns": json_values}
    )
    | json_values
)
schedule_bodies = (
    st.fixed_dictionaries(
        {"report": slugs, "format": formats},
        optional={
            "params": params | json_values,
            "columns": json_values,
            "delivery": json_values,
            "frequency": st.sampled_from(["daily", "weekly", "monthly"]) | json_values,
            "weekdays": st.lists(st.integers(-2, 9), max_size=9) | json_values,
            "day_of_month": st.integers(-1, 40) | json_values,
            "time": st.sampled_from(["08:00", "23:59", "24:00", "8"]) | json_values,
            "time_zone": st.sampled_from(["Europe/Berlin", "UTC", "../../etc/passwd", ""]) | json_values,
        },
    )
    | json_values
)
seen_bodies = st.fixed_dictionaries({}, optional={"ids": json_values | st.lists(st.integers()), "all": json_values})


@pytest.fixture
def staff_client(client, make_user, settings):
    settings.REPORTS_MAX_ACTIVE_JOBS_PER_USER = settings.REPORTS_MAX_JOBS_PER_MINUTE = 10**6
    user = make_user("fuzzer", perms=["shop.view_order", "shop.view_customer"], is_staff=True)
    client.force_login(user)
    client.user = user
    Notification.objects.create(user=user, type="report.ready", title="Unseen")
    return client


def made_or_refused(response, made: int, model) -> None:
    """Never a 5xx: what was asked for made (and removed again for the next example), or a 4xx with an
    error that made nothing."""
    assert response.status_code < 500
    if response.status_code == made:
        model.objects.all().delete()
    else:
        assert 400 <= response.status_code < 500 and "error" in response.json()
        assert not model.objects.exists()


@FUZZ
@given(body=job_bodies)
def test_generated_job_requests_never_get_a_5xx(staff_client, body):
    made_or_refused(post_json(staff_client, JOBS_URL, body), 202, ReportJob)


@FUZZ
@given(body=schedule_bodies)
def test_generated_schedules_never_get_a_5xx(staff_client, body):
    response = post_json(staff_client, "/api/reports/schedules/", body)
    if response.status_code == 201:
        assert ReportSchedule.objects.get().next_run_at is not None
    made_or_refused(response, 201, ReportSchedule)


@FUZZ
@given(body=seen_bodies | json_values, raw=st.binary(max_size=40))
def test_generated_seen_requests_never_get_a_5xx_and_mark_only_when_valid(staff_client, body, raw):
    for sent in (body, raw):
        response = post_json(staff_client, "/api/notifications/seen/", sent)
        assert response.status_code in (200, 400)
        if response.status_code == 400:
            assert Notification.objects.unseen().count() == 1
        Notification.objects.update(seen_at=None)


@FUZZ
@given(
    body=json_values | st.binary(max_size=40),
    job_id=st.uuids() | st.just(None),
    action=st.sampled_from(["cancel", "retry"]),
)
def test_generated_cancel_and_retry_requests_never_get_a_5xx(staff_client, body, job_id, action):
    job = ReportJob.objects.create(owner=staff_client.user, report="orders", format="csv", status=Status.FAILED)
    before = ReportJob.objects.count()
    response = post_json(staff_client, f"{JOBS_URL}{job_id or job.pk}/{action}/", body)
    assert response.status_code < 500
    if job_id is not None:
        assert response.status_code == 404 and ReportJob.objects.count() == before
    ReportJob.objects.all().delete()


@pytest.mark.django_db(transaction=True)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(json_values.map(json.dumps) | st.text(min_size=1, max_size=50), min_size=1, max_size=5))
def test_generated_websocket_messages_get_an_answer_and_the_socket_stays_open(alice, messages):
    from django.test import Client

    from project.asgi import application

    client = Client()
    client.force_login(alice)
    headers = [
        (b"host", b"localhost:8000"),
        (b"origin", b"http://localhost:8000"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
    ]

    async def scenario():
        comm = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
        assert (await comm.connect(timeout=5))[0]
        for message in messages:
            await comm.send_to(text_data=message)
            assert (await comm.receive_json_from(timeout=5))["type"] in ("error", "seen")
        await comm.send_json_to({"action": "seen", "ids": [1]})
        assert (await comm.receive_json_from(timeout=5))["type"] == "seen"
        await comm.disconnect()

    asyncio.run(scenario())
