"""What several test modules use: the stack's processes, clients, waiting, reference files."""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import unicodedata
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path
from urllib.parse import quote

import boto3
import django_rq
import pytest
from django.db import connection
from django.test import Client

from reports import tasks
from reports.files import reports_storage
from reports.models import ReportJob, Status

ROOT = Path(__file__).resolve().parent.parent


WORKER_COMMAND = [
    sys.executable,
    "manage.py",
    "rqworker",
    "reports",
    "--serializer",
    "rq.serializers.JSONSerializer",
    # the worker class is reports.worker.ReportsWorker, from settings.RQ
]


# What an owner reads of a report that failed on an error of ours (reports.events.explain_error).
PLAIN_ERROR = (
    r"The report could not be written because of an error on our side \(reference ([0-9a-f]{8})\)\. "
    r"Ask for it again; if it fails again, give the reference to an administrator\."
)


# ... and of one that failed because a part of the system was out of reach or full (the cause in words).
OUTAGE_ERROR = (
    r"The report could not be written: {cause} \(reference [0-9a-f]{{8}}\)\. Ask for it again in a few minutes; "
    r"if it fails again, give the reference to an administrator\."
)


def database_url() -> str:
    """The test database, as a URL a child process can use (pytest-django renamed it)."""
    s = connection.settings_dict
    credentials = quote(s["USER"] or "postgres") + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def child_env(**extra) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    env.update({k: str(v) for k, v in extra.items()})
    return env


# What the tests' own processes keep in Redis (RQ, the download slots, the channel layer): a database
# holding any other key is not the tests', and is never flushed.
OWN_KEYS = ("rq:", "reports:", "asgi")


def flush_own_redis(connection) -> None:
    """Empty the tests' Redis database, and refuse one that holds anything else (REDIS_URL pointing
    at a database of some other use): the run stops rather than wipe it."""
    foreign = next((key for key in connection.scan_iter(count=1000) if not key.decode().startswith(OWN_KEYS)), None)
    if foreign is not None:
        where = connection.connection_pool.connection_kwargs
        pytest.exit(
            f"Redis database {where.get('db')} at {where.get('host')} holds {foreign.decode()!r}, which no test "
            "writes: point REDIS_URL at a database of the tests' own (default redis://127.0.0.1:6379/15).",
            returncode=2,
        )
    connection.flushdb()


def spawn(command: list[str], **env) -> subprocess.Popen:
    """A process of the stack (worker, sweeper, web server) with the tests' environment. Its output goes to
    a file in VAR_DIR/logs: a pipe nobody reads would stop the process once full."""
    logs = Path(os.environ["VAR_DIR"]) / "logs"
    logs.mkdir(exist_ok=True)
    # rqworker, sweep_reports, project.web
    with open(logs / f"{command[2]}-{time.time_ns()}.log", "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=child_env(**env), stdout=log, stderr=subprocess.STDOUT)


def horse_pid(worker: subprocess.Popen) -> int | None:
    """The work-horse an RQ worker process has forked now, if any."""
    try:
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    except FileNotFoundError:
        return None
    return int(children[0]) if children else None


def rq_worker_name(worker: subprocess.Popen) -> str:
    """The name the RQ worker process registered under (segment rows say which worker ran them)."""
    from rq import Worker

    queue = django_rq.get_queue("reports")
    return wait_for(
        lambda: next((w.name for w in Worker.all(queue=queue) if w.pid == worker.pid), None),
        timeout=30,
        message="the worker to register",
    )


def ooxml_text(value):
    """Decode OOXML's _xHHHH_ escapes (how control characters such as CR are stored), as Excel does."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value) if value else value


def wait_for(predicate, timeout: float = 60, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}.")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(**env):
    """The web server (project.web) in a process of its own, with these settings from the environment:
    its base URL."""
    import socket

    port = free_port()
    process = spawn([sys.executable, "-m", "project.web", "--host", "127.0.0.1", "--port", str(port)], **env)

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, timeout=30, message="the web server to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        # connections a failed test left open hold its graceful shutdown
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class LiveSession:
    """HTTP and websocket calls to a live server as a logged-in user (a real session cookie)."""

    def __init__(self, base_url: str, user):
        from django.middleware.csrf import _get_new_csrf_string
        from django.test import Client

        client = Client()
        client.force_login(user)
        self.base_url = base_url
        self.session = client.cookies["sessionid"].value
        self.csrf = _get_new_csrf_string()

    @property
    def cookie(self) -> str:
        return f"sessionid={self.session}; csrftoken={self.csrf}"

    def request(self, method: str, path: str, body: dict | None = None):
        import json
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Cookie", self.cookie)
        request.add_header("X-CSRFToken", self.csrf)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers

    def websocket(self, origin: str | None = None):
        from websockets.sync.client import connect

        ws_url = self.base_url.replace("http://", "ws://") + "/ws/notifications/"
        return connect(ws_url, additional_headers={"Cookie": self.cookie, "Origin": origin or self.base_url})


def csrf_client(user) -> Client:
    """A client that enforces CSRF like a browser's session does."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    # any page; we then read the token Django would give the page
    client.get("/api/reports/")
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    client.defaults["HTTP_X_CSRFTOKEN"] = token
    return client


JOBS_URL = "/api/reports/jobs/"


def post_json(client, path: str, body, **extra):
    """POST `body` through a test client as JSON (text and bytes are sent as they are): the response."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **extra)


def post_job(client, body) -> tuple[int, dict]:
    """Ask for a report through the API: the status and the JSON answer."""
    response = post_json(client, JOBS_URL, body)
    return response.status_code, response.json()


# The signs a spreadsheet takes for a formula's start, with their full-width and small-form look-alikes
# and the minus sign (docs/security.md).
FORMULA_SIGNS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b\u2212")


def escaped(value: str) -> str:
    """Text as a CSV file holds it: an apostrophe before text that starts with TAB or CR, or whose
    first character after whitespace and invisible format characters (Unicode's Cf) is a sign. Worked
    out with unicodedata, not with the writers' pattern."""
    first = next((c for c in value if not (c.isspace() or unicodedata.category(c) == "Cf")), "")
    return "'" + value if value[:1] in ("\t", "\r") or first in FORMULA_SIGNS else value


def text(value) -> str:
    return "" if value is None else escaped(value)


def when(value) -> str:
    return "" if value is None else value.isoformat()


def expected_orders(queryset) -> list[list[str]]:
    """The file's rows worked out independently of the writer, straight from the ORM."""
    return [
        [
            str(o.id),
            o.number,
            text(o.customer.name),
            o.country,
            o.status,
            f"{o.amount:.2f}",
            "" if o.discount is None else f"{o.discount:.2f}",
            str(o.quantity),
            "true" if o.is_gift else "false",
            text(o.note),
            when(o.created_at),
            when(o.shipped_at),
        ]
        for o in queryset.select_related("customer").order_by("pk")
    ]


def reports_spool():
    from pathlib import Path

    from django.conf import settings

    return Path(settings.REPORTS_SPOOL_DIR)


def list_stored_files(job_id) -> list[str]:
    root = reports_storage().path("")
    from pathlib import Path

    return [str(p) for p in Path(root).rglob("*") if p.is_file() and str(job_id) in str(p)]


# a dead worker is found in seconds
QUICK = {"REPORTS_HEARTBEAT_SECONDS": 1, "REPORTS_STALE_AFTER_SECONDS": 4}


# what the runs measured, for the closing notes
RESULTS = ROOT / "test-output" / "segments.jsonl"


def record(**result) -> None:
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(result) + "\n")


def reference(user, report: str, fmt: str, settings, params=None, **overrides) -> bytes:
    """The report written in this process, with the same segments: what every run must equal."""
    for name, value in overrides.items():
        setattr(settings, name, value)
    job = ReportJob.objects.create(owner=user, report=report, format=fmt, params=params or {})
    assert tasks.run_in_foreground(job) and job.status == Status.SUCCEEDED, job.error
    # (The reports storage as settings say now: the file field's storage is the one of import time.)
    with reports_storage().open(job.file.name, "rb") as fh:
        return fh.read()


def downloaded(client, job_id) -> bytes:
    response = client.get(f"/reports/jobs/{job_id}/download/")
    assert response.status_code == 200, response.content[:300]
    return b"".join(response.streaming_content)


def ended(job_id, timeout: float = 120) -> ReportJob:
    return wait_for(
        lambda: (job := ReportJob.objects.get(pk=job_id)).status not in ("queued", "running") and job,
        timeout=timeout,
        message="the job to end",
    )


# Progress saved at every batch of 500 rows, so that the test sees how far a segment is (and kills one
# with half of it still to write: never one that ends before the signal lands).
KILL_ENV = {
    **QUICK,
    "REPORTS_SEGMENT_ROWS": 4000,
    "REPORTS_CHUNK_SIZE": 500,
    "PACED_SECONDS": 0.04,
    "REPORTS_PROGRESS_INTERVAL": 0,
}


# seconds between SIGTERM and SIGKILL, as an orchestrator gives (30 s in production)
GRACE = 5


def kill(worker: subprocess.Popen, fault: str) -> bool:
    """Deliver the fault to a worker process; False when there was nothing to kill (no work-horse)."""
    horse = horse_pid(worker)
    if fault == "horse":
        return sigkill(horse)
    # the machine is gone: the worker and its work-horse
    if fault == "worker":
        # Frozen first, so that it forks no new work-horse between the look and the kill.
        os.kill(worker.pid, signal.SIGSTOP)
        sigkill(horse_pid(worker))
        worker.kill()
        return True
    # a deploy: SIGTERM, then SIGKILL after the grace period
    worker.terminate()
    try:
        worker.wait(GRACE)
    except subprocess.TimeoutExpired:
        worker.kill()
        sigkill(horse_pid(worker))
    return True


def sigkill(pid: int | None) -> bool:
    """SIGKILL the process; False when there is none (a work-horse may end between looking and killing)."""
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def sheet_xml(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read("xl/worksheets/sheet1.xml")


def s3_env_for(endpoint: str) -> dict:
    """The environment of a fresh private bucket on the S3 server at `endpoint` (workers read it), with
    a client of the bucket under "client"."""
    env = {
        "AWS_STORAGE_BUCKET_NAME": f"reports-{uuid.uuid4().hex[:12]}",
        "AWS_S3_ENDPOINT_URL": endpoint,
        "AWS_S3_REGION_NAME": "us-east-1",
        "AWS_S3_ADDRESSING_STYLE": "path",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REPORTS_SIGNED_URL_SECONDS": "3",
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=env["AWS_STORAGE_BUCKET_NAME"])
    return {**env, "client": client}


def fetch(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)
