"""Redis going away: no process exits, a request made meanwhile is answered and enqueued once Redis is
back, and the report that was running ends as it would have. On a Redis server of the test's own."""

import shutil
import subprocess
import time

import pytest

from reports import queues
from reports.models import ReportJob, Status
from shop import demo
from tests.helpers import QUICK, csrf_client, downloaded, ended, free_port, post_job, record, reference, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class RedisServer:
    """A redis-server on a port of its own, which the test stops and starts again (empty, as a Redis
    without persistence comes back)."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.dir = tmp_path
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, timeout=10, message="redis-server to answer")

    def answers(self) -> bool:
        import redis

        try:
            return redis.Redis.from_url(self.url).ping()
        except redis.exceptions.ConnectionError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path, settings):
    server = RedisServer(tmp_path)
    server.start()
    settings.RQ_QUEUES = {"reports": {"URL": server.url, "SERIALIZER": "rq.serializers.JSONSerializer"}}
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [server.url]}}
    }
    yield server
    if server.process.poll() is None:
        server.stop()
    queues.reports_queue.cache_clear()


def test_redis_away_longer_than_a_sweep_strands_nothing_and_kills_no_process(
    alice, settings, own_redis, start_worker, start_sweeper, transactional_db
):
    demo.seed(40_000)
    env = {**QUICK, "REDIS_URL": own_redis.url, "REPORTS_SEGMENT_ROWS": 4000, "PACED_SECONDS": 0.08}
    processes = [start_worker(**env), start_worker(**env), start_sweeper(every=1, **env)]
    client = csrf_client(alice)
    _, running = post_job(client, {"report": "paced-orders", "format": "xlsx"})
    wait_for(lambda: ReportJob.objects.get(pk=running["id"]).rows_done > 4000, message="the report to be going")

    own_redis.stop()
    down = time.monotonic()
    status, asked = post_job(client, {"report": "orders", "format": "csv", "params": {"created_to": "2024-01-20"}})
    assert status == 202 and asked["status"] == "queued" and asked["waiting_for_queue"] is True
    # longer than a sweep period, and than the stale window
    time.sleep(6)
    # every process is still there
    assert [p.poll() for p in processes] == [None, None, None]

    # empty: the queue is gone with it
    own_redis.start()
    up = time.monotonic()
    requeued = wait_for(
        lambda: not ReportJob.objects.get(pk=asked["id"]).waiting_for_queue and time.monotonic(),
        timeout=30,
        message="the request to be enqueued",
    )
    asked_job, running_job = ended(asked["id"], timeout=60), ended(running["id"], timeout=120)
    finished = time.monotonic()
    assert asked_job.status == running_job.status == Status.SUCCEEDED, (asked_job.error, running_job.error)
    assert [p.poll() for p in processes] == [None, None, None]
    assert downloaded(client, asked_job.pk) == reference(alice, "orders", "csv", settings, {"created_to": "2024-01-20"})
    assert downloaded(client, running_job.pk) == reference(
        alice, "paced-orders", "xlsx", settings, REPORTS_SEGMENT_ROWS=4000
    )
    # one sweep period (1 s here) after Redis came back, give or take a start
    assert requeued - up < 5
    record(
        case="redis outage",
        down_for=round(up - down, 1),
        enqueued_after_up=round(requeued - up, 2),
        finished_after_up=round(finished - up, 1),
    )
