import os
import shutil
import subprocess
import sys
from pathlib import Path

import django_rq
import pytest
from django.contrib.auth.models import Permission

from tests.helpers import ROOT, WORKER_COMMAND, child_env, flush_own_redis, serve, spawn


def pytest_configure(config):
    """Pytest's own temporary folders go inside the run's folder, which goes at the end: a test run
    leaves nothing in the system's temporary folder."""
    if not config.option.basetemp:
        config.option.basetemp = str(Path(os.environ["VAR_DIR"]) / "pytest")


def pytest_sessionfinish(session):
    from tests import settings

    if settings.CREATED_VAR_DIR:
        shutil.rmtree(settings.CREATED_VAR_DIR, ignore_errors=True)


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
