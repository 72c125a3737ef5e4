"""The other parts failing under a running report: PostgreSQL restarted, the S3 endpoint answering
errors, slowly or resetting connections, the spool disk full. Each report ends with the bytes of an
undisturbed run, or failed with a message its owner can act on; none is left running. Each on a part
of the test's own: a PostgreSQL cluster, a fault-injecting proxy in front of the S3 server, a small
filesystem. (Redis going away and coming back empty: tests/test_outages.py.)"""

import contextlib
import glob
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from project.settings import reports_storage_config
from reports.models import ReportJob, Status
from shop import demo
from tests.helpers import (
    OUTAGE_ERROR,
    QUICK,
    csrf_client,
    downloaded,
    ended,
    fetch,
    free_port,
    post_job,
    record,
    reference,
    s3_env_for,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
# Segments of 4,000 rows at a pace a fault can land in the middle of.
PACED = {**QUICK, "REPORTS_SEGMENT_ROWS": 4000, "PACED_SECONDS": 0.05}


# -- PostgreSQL restarted --------------------------------------------------------------------------


def postgres_command(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    assert found, f"{name} not found: scripts/services.sh postgres installs PostgreSQL"
    return found


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb in a folder of the test's), which it restarts."""

    def __init__(self, folder: Path):
        self.data = folder / "data"
        self.port = free_port()
        # The server refuses to run as root: the cluster is the postgres user's, in folders it can reach.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        folder.mkdir(exist_ok=True)
        if self.as_user:
            for path in folder.parents:
                if not path.stat().st_mode & 0o001:
                    path.chmod(path.stat().st_mode | 0o001)
            shutil.chown(folder, "postgres")

    def run(self, name: str, *args: str) -> None:
        subprocess.run([*self.as_user, postgres_command(name), *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.pg_ctl("start")

    def pg_ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
        log = str(self.data / "server.log")
        self.run("pg_ctl", action, "-D", str(self.data), "-w", "-l", log, "-o", options, *args)

    def stop(self) -> None:
        self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate")


@pytest.fixture
def own_postgres(tmp_path, transactional_db):
    """This test, and every process it starts, on a PostgreSQL of its own (migrated, empty)."""
    from django.core.management import call_command

    server = PostgresServer(tmp_path / "postgres")
    server.start()
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(server.port), NAME="postgres", USER="postgres")
    connection.settings_dict.update(PASSWORD="")
    try:
        call_command("migrate", verbosity=0)
        yield server
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        server.stop()


def test_postgres_restarted_mid_run_ends_the_report_as_an_undisturbed_run(
    own_postgres, make_user, settings, start_worker, start_sweeper
):
    alice = make_user("alice")
    demo.seed(40_000)
    expected = reference(alice, "paced-orders", "csv", settings, REPORTS_SEGMENT_ROWS=PACED["REPORTS_SEGMENT_ROWS"])
    for _ in range(2):
        start_worker(**PACED)
    start_sweeper(every=1, **PACED)
    client = csrf_client(alice)
    _, asked = post_job(client, {"report": "paced-orders", "format": "csv"})
    wait_for(lambda: ReportJob.objects.get(pk=asked["id"]).rows_done > 8000, message="the report to be going")

    own_postgres.pg_ctl("restart", "-m", "fast")
    restarted = time.monotonic()
    # the test's own connection was cut with every other one
    connection.close()
    job = ended(asked["id"], timeout=120)
    assert job.status == Status.SUCCEEDED, job.error
    assert downloaded(client, job.pk) == expected
    retried = sorted(s.attempts for s in job.segments.all())
    # A segment cut by the restart is written again once; the others once.
    assert max(retried) <= 2, retried
    record(case="postgres restart", finished_after=round(time.monotonic() - restarted, 1), attempts=retried)


# -- The S3 endpoint failing -----------------------------------------------------------------------


class FaultyProxy:
    """A TCP proxy in front of the S3 server that, while `mode` says so, answers each new request with
    an HTTP 500 or 503 S3 error, holds it `SLOW_SECONDS` before passing it on, or resets the
    connection. Entering a fault cuts the connections open, so that pooled ones meet it too."""

    SLOW_SECONDS = 5

    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.mode = "pass"
        self.faulted: dict[str, int] = {}
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def set(self, mode: str) -> None:
        with self.lock:
            self.mode = mode
            cut, self.open = self.open, set()
        for sock in cut:
            reset(sock)

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket) -> None:
        with self.lock:
            mode = self.mode
            self.open.add(client)
        first = client.recv(65536)
        if not first:
            return client.close()
        if mode != "pass":
            with self.lock:
                self.faulted[mode] = self.faulted.get(mode, 0) + 1
        if mode == "reset":
            return reset(client)
        if mode in ("500", "503"):
            return answer_error(client, int(mode))
        if mode == "slow":
            time.sleep(self.SLOW_SECONDS)
        upstream = socket.create_connection(self.upstream)
        with self.lock:
            self.open.add(upstream)
        upstream.sendall(first)
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def close(self) -> None:
        self.listener.close()
        self.set("pass")


def pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a load balancer dropping a connection does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def answer_error(client: socket.socket, status: int) -> None:
    code, reason = {500: ("InternalError", "Internal Server Error"), 503: ("SlowDown", "Service Unavailable")}[status]
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{reason}</Message></Error>'
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
    with contextlib.suppress(OSError):
        client.sendall(f"{head}Connection: close\r\n\r\n{body}".encode())
        client.shutdown(socket.SHUT_WR)
    client.close()


@pytest.fixture
def faulty_s3(s3_endpoint, settings):
    """A fresh bucket behind a FaultyProxy: this process and the workers reach S3 through the proxy."""
    proxy = FaultyProxy(s3_endpoint)
    env = s3_env_for(proxy.url)
    env.pop("client")
    settings.STORAGES = {**settings.STORAGES, "reports": reports_storage_config(env)}
    yield proxy, env
    proxy.close()


def test_s3_failing_for_a_while_ends_the_report_as_an_undisturbed_run(
    faulty_s3, alice, settings, start_worker, start_sweeper
):
    """Errors, slowness and resets, each for a few seconds, while segments are stored and joined (XLSX:
    the join reads every segment back)."""
    fmt = "xlsx"
    proxy, env = faulty_s3
    demo.seed(48_000)
    expected = reference(alice, "paced-orders", fmt, settings, REPORTS_SEGMENT_ROWS=PACED["REPORTS_SEGMENT_ROWS"])
    for _ in range(2):
        start_worker(**PACED, **env)
    start_sweeper(every=1, **PACED, **env)
    client = csrf_client(alice)
    _, asked = post_job(client, {"report": "paced-orders", "format": fmt})
    wait_for(lambda: ReportJob.objects.get(pk=asked["id"]).rows_done > 4000, message="the report to be going")
    started = time.monotonic()
    # Each fault for a few seconds, and until a request has met it (however busy the machine).
    for mode, seconds in [("500", 3), ("503", 3), ("slow", 6), ("reset", 3)]:
        proxy.set(mode)
        time.sleep(seconds)
        wait_for(lambda m=mode: proxy.faulted.get(m), timeout=30, message=f"a request to meet the {mode} fault")
    proxy.set("pass")
    job = ended(asked["id"], timeout=120)
    assert job.status == Status.SUCCEEDED, job.error
    assert set(proxy.faulted) == {"500", "503", "slow", "reset"}, proxy.faulted
    status, data, _ = fetch(client.get(f"/reports/jobs/{job.pk}/download/")["Location"])
    assert status == 200 and data == expected
    record(
        case=f"s3 faults {fmt}",
        finished_after=round(time.monotonic() - started, 1),
        faulted=proxy.faulted,
        attempts=sorted(s.attempts for s in job.segments.all()),
    )


def test_s3_away_for_good_fails_the_report_with_a_message_its_owner_can_act_on(
    faulty_s3, alice, start_worker, start_sweeper
):
    proxy, env = faulty_s3
    demo.seed(8000)
    # Two tries per S3 call (botocore's AWS_MAX_ATTEMPTS) instead of ten, so that giving up is quick.
    start_worker(**PACED, **env, AWS_MAX_ATTEMPTS=2)
    start_sweeper(every=1, **PACED, **env, AWS_MAX_ATTEMPTS=2)
    proxy.set("503")
    client = csrf_client(alice)
    _, asked = post_job(client, {"report": "paced-orders", "format": "csv"})
    job = ended(asked["id"], timeout=120)
    assert job.status == Status.FAILED
    assert re.fullmatch(OUTAGE_ERROR.format(cause="the file storage answered with an error or not at all"), job.error)
    # staff read what S3 said
    assert "(503)" in job.error_detail
    # each of the segment's three runs tried S3 twice
    assert proxy.faulted["503"] >= 3 * 2


# -- The spool disk full ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB filesystem of the test's own (tmpfs), for a worker's spool folder."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root (CI runs as root)")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True, timeout=30)
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True, timeout=30)


def test_a_full_spool_disk_fails_the_report_clearly_frees_the_disk_and_the_worker_goes_on(
    small_disk, alice, settings, start_worker
):
    demo.seed(30_000)
    # One segment of ~4 MB of CSV: it cannot fit in 2 MiB, on any of its runs.
    start_worker(**QUICK, REPORTS_SPOOL_DIR=small_disk, REPORTS_SEGMENT_ROWS=30_000)
    client = csrf_client(alice)
    _, asked = post_job(client, {"report": "orders", "format": "csv"})
    job = ended(asked["id"], timeout=60)
    assert job.status == Status.FAILED
    assert re.fullmatch(OUTAGE_ERROR.format(cause="the disk it is written on was full"), job.error), job.error
    assert "No space left on device" in job.error_detail
    assert [s.attempts for s in job.segments.all()] == [settings.REPORTS_MAX_ATTEMPTS]
    wait_for(lambda: not any(small_disk.iterdir()), timeout=10, message="the spool files to go")
    assert shutil.disk_usage(small_disk).used < 64 * 1024

    # The same worker writes what fits.
    _, small = post_job(client, {"report": "orders", "format": "csv", "params": {"created_to": "2024-01-05"}})
    assert ended(small["id"], timeout=60).status == Status.SUCCEEDED
    assert downloaded(client, small["id"]) == reference(alice, "orders", "csv", settings, {"created_to": "2024-01-05"})
