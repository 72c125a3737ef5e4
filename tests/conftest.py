import os
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
    sys.executable, "manage.py", "rqworker", "reports",
    "--serializer", "rq.serializers.JSONSerializer", "--worker-class", "rq.Worker",
]  # fmt: skip


def database_url() -> str:
    """The test database, as a URL a child process can use (pytest-django renamed it)."""
    s = connection.settings_dict
    credentials = quote(s["USER"] or "postgres") + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def child_env(**extra) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def redis_queue():
    """The reports queue, emptied before and after the test."""
    queue = django_rq.get_queue("reports")
    queue.connection.flushdb()
    yield queue
    queue.connection.flushdb()


@pytest.fixture
def run_worker(redis_queue, transactional_db):
    """Run a real RQ worker process in burst mode: it works off the queue, then exits."""

    def run(timeout: float = 120, **env) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*WORKER_COMMAND, "--burst"], cwd=ROOT, env=child_env(**env), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run


@pytest.fixture
def start_worker(redis_queue, transactional_db):
    """Start a long-running RQ worker process; it is stopped after the test."""
    processes = []

    def start(**env) -> subprocess.Popen:
        process = subprocess.Popen(
            WORKER_COMMAND, cwd=ROOT, env=child_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


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
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client
