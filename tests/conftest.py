import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import django_rq
import pytest
from django.contrib.auth.models import Permission
from django.db import connection

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


def pytest_configure(config):
    """Pytest's own temporary folders go inside the run's folder, which goes at the end: a test run
    leaves nothing in the system's temporary folder."""
    if not config.option.basetemp:
        config.option.basetemp = str(Path(os.environ["VAR_DIR"]) / "pytest")


def pytest_sessionfinish(session):
    from tests import settings

    if settings.CREATED_VAR_DIR:
        shutil.rmtree(settings.CREATED_VAR_DIR, ignore_errors=True)


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


@pytest.fixture
def redis_queue():
    """The reports queue, emptied before and after the test."""
    queue = django_rq.get_queue("reports")
    flush_own_redis(queue.connection)
    yield queue
    flush_own_redis(queue.connection)


@pytest.fixture
def run_worker(redis_queue, transactional_db):
    """Run a real RQ worker process in burst mode: it works off the queue, then exits."""

    def run(timeout: float = 120, **env) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*WORKER_COMMAND, "--burst"],
            cwd=ROOT,
            env=child_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


def spawn(command: list[str], **env) -> subprocess.Popen:
    """A process of the stack (worker, sweeper, web server) with the tests' environment. Its output goes to
    a file in VAR_DIR/logs: a pipe nobody reads would stop the process once full."""
    logs = Path(os.environ["VAR_DIR"]) / "logs"
    logs.mkdir(exist_ok=True)
    # rqworker, sweep_reports, project.web
    with open(logs / f"{command[2]}-{time.time_ns()}.log", "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=child_env(**env), stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def start_worker(redis_queue, transactional_db):
    """Start a long-running RQ worker process; it is stopped after the test."""
    processes = []

    def start(**env) -> subprocess.Popen:
        process = spawn(WORKER_COMMAND, **env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def start_sweeper(redis_queue, transactional_db):
    """Start `sweep_reports --every` as a process, stopped after the test."""
    processes = []

    def start(every: float = 1, **env) -> subprocess.Popen:
        process = spawn([sys.executable, "manage.py", "sweep_reports", "--every", str(every)], **env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait(timeout=15)


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


@pytest.fixture
def make_user(django_user_model):
    def make(username="alice", *, perms=("shop.view_order", "shop.view_customer"), **fields):
        user = django_user_model.objects.create_user(username=username, password="pw-" + username, **fields)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        # fresh permission cache
        return django_user_model.objects.get(pk=user.pk)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP server (moto's), for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def web_server(transactional_db, redis_queue):
    """The web server (project.web, uvicorn) in a process of its own, serving HTTP and websockets: its
    base URL."""
    with serve() as base_url:
        yield base_url


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
