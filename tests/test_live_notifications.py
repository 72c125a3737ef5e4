"""Live notifications end to end: the real web server, a real RQ worker, real Redis, a real websocket client."""

import csv
import io
import json

import pytest
from websockets.exceptions import InvalidStatus

from notifications.models import Notification
from shop import demo
from tests.helpers import JOBS_URL, LiveSession

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ORDERS = 5000


def receive_until(ws, message_type: str, timeout: float = 60) -> list[dict]:
    """Every message up to and including the first of `message_type`."""
    messages = []
    while True:
        messages.append(json.loads(ws.recv(timeout=timeout)))
        if messages[-1]["type"] == message_type:
            return messages


def assert_silent(ws, seconds: float = 1.0):
    with pytest.raises(TimeoutError):
        ws.recv(timeout=seconds)


@pytest.fixture
def orders():
    demo.seed(ORDERS)


def test_progress_and_ready_reach_the_owner_and_nobody_else(orders, web_server, run_worker, alice, make_user):
    alice_live, bob_live = LiveSession(web_server, alice), LiveSession(web_server, make_user("bob"))
    with alice_live.websocket() as alice_ws, alice_live.websocket() as alice_second_tab, bob_live.websocket() as bob_ws:
        status, body, _ = alice_live.request("POST", JOBS_URL, {"report": "orders", "format": "csv"})
        assert status == 202, body
        job_id = json.loads(body)["id"]

        run_worker(REPORTS_CHUNK_SIZE=500, REPORTS_PROGRESS_INTERVAL=0)

        messages = receive_until(alice_ws, "report.ready")
        progress = [m["job"]["rows_done"] for m in messages if m["type"] == "report.progress"]
        assert progress == sorted(progress) and len(progress) >= 10
        # the last tick is always sent
        assert progress[-1] == ORDERS
        ready = messages[-1]
        assert ready["job"]["id"] == job_id and ready["job"]["status"] == "succeeded"
        assert ready["notification"]["title"] == "Your report is ready"
        assert ready["notification"]["link"] == ready["job"]["download_url"] == f"/reports/jobs/{job_id}/download/"
        assert receive_until(alice_second_tab, "report.ready")[-1]["job"]["id"] == job_id
        assert_silent(bob_ws)

        status, data, headers = alice_live.request("GET", ready["job"]["download_url"])
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
        assert len(rows) == ORDERS + 1
        status, _, _ = bob_live.request("GET", ready["job"]["download_url"])
        assert status == 404

    stored = Notification.objects.get(user=alice)
    assert stored.type == "report.ready" and stored.payload["job"]["id"] == job_id
    assert not Notification.objects.filter(type="report.progress").exists()


def test_a_client_that_connects_after_the_job_finished_gets_it_by_replay(orders, web_server, run_worker, alice):
    live = LiveSession(web_server, alice)
    _, body, _ = live.request("POST", JOBS_URL, {"report": "exploding", "format": "csv"})
    run_worker()
    with live.websocket() as ws:
        failed = json.loads(ws.recv(timeout=10))
        assert failed["type"] == "report.failed" and failed["replay"] is True
        assert failed["job"]["id"] == json.loads(body)["id"]
        assert failed["job"]["error"] == failed["notification"]["body"].split(": ", 1)[1]
        assert "an error on our side" in failed["job"]["error"] and "Exploded" not in json.dumps(failed)
        ws.send(json.dumps({"action": "seen", "ids": [failed["notification"]["id"]]}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "seen", "count": 1}
    with live.websocket() as ws:
        # seen: not replayed again
        assert_silent(ws, 0.5)


def test_cancel_is_pushed(orders, web_server, alice):
    live = LiveSession(web_server, alice)
    with live.websocket() as ws:
        _, body, _ = live.request("POST", JOBS_URL, {"report": "orders", "format": "csv"})
        job_id = json.loads(body)["id"]
        status, _, _ = live.request("POST", f"{JOBS_URL}{job_id}/cancel/")
        assert status == 200
        cancelled = receive_until(ws, "report.cancelled", timeout=10)[-1]
        assert cancelled["job"]["id"] == job_id and cancelled["job"]["status"] == "cancelled"


def test_the_live_server_refuses_foreign_origins_and_anonymous_sockets(web_server, alice):
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as foreign:
        LiveSession(web_server, alice).websocket(origin="https://evil.example")
    assert foreign.value.response.status_code == 403
    ws_url = web_server.replace("http://", "ws://") + "/ws/notifications/"
    with pytest.raises(InvalidStatus) as anonymous:
        connect(ws_url, additional_headers={"Origin": web_server})
    assert anonymous.value.response.status_code == 403
