"""Downloads through the real web server (project.web, a process of its own): slow clients, clients
that stop reading and many at once cost the server a bounded buffer each, never the file.

The server's memory is read from /proc (VmRSS) while 5 clients read a 300 MB file at 64 KB a second.
"""

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
from django.utils import timezone

from reports.files import reports_storage
from reports.models import ReportJob, Status
from tests.helpers import LiveSession, free_port, serve, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
MB = 1024 * 1024
FILE_SIZE = 300 * MB


def rss(pid: int) -> int:
    """The process's resident memory in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stored_job(owner, size: int) -> tuple[ReportJob, str]:
    """A succeeded job whose CSV file of `size` bytes is in the reports storage: (job, its SHA-256)."""
    job = ReportJob.objects.create(
        owner=owner, report="orders", format="csv", status=Status.SUCCEEDED, finished_at=timezone.now()
    )
    name = f"{job.pk}/big.csv"
    path = Path(reports_storage().path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    block = (b"0123456789abcdef" * (MB // 16))[: MB - 1] + b"\n"
    with path.open("wb") as fh:
        for n in range(size // MB):
            # every megabyte differs: a reordering would show
            piece = n.to_bytes(8, "big") + block[8:]
            fh.write(piece)
            digest.update(piece)
    ReportJob.objects.filter(pk=job.pk).update(file=name, file_size=size)
    job.refresh_from_db()
    return job, digest.hexdigest()


def open_download(base_url: str, session: LiveSession, job: ReportJob, *, receive_buffer: int = 16384):
    """A raw socket that asked for the job's file and has read nothing yet; a small receive buffer,
    so the kernel holds little of what the server sends."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, int(port)))
    headers = f"Host: {host}:{port}\r\nCookie: {session.cookie}\r\nConnection: close\r\n"
    request = f"GET /reports/jobs/{job.pk}/download/ HTTP/1.1\r\n{headers}\r\n"
    sock.sendall(request.encode())
    return sock


def read_headers(sock) -> tuple[int, bytes]:
    """The status code, and whatever of the body came with the headers."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before the headers: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


@pytest.fixture
def server(transactional_db, redis_queue):
    """The web server with the default stall timeout (30 s: slow clients are read from a busy machine)."""
    with serve(REPORTS_DOWNLOADS_PER_USER=5) as base_url:
        yield base_url


@pytest.fixture
def impatient_server(transactional_db, redis_queue):
    with serve(REPORTS_DOWNLOAD_STALL_SECONDS=3) as base_url:
        yield base_url


def server_pid(base_url: str) -> int:
    """The pid of the process listening on the server's port (project.web: uvicorn in that process)."""
    port = int(base_url.rsplit(":", 1)[1])
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        # LISTEN
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inode = fields[9]
    assert inode, "nobody listens on the port"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise AssertionError("the listening process was not found")


@pytest.mark.slow
def test_five_slow_clients_of_a_300_mb_file_cost_the_server_under_50_mb(server, alice, make_user):
    session = LiveSession(server, alice)
    job, _ = stored_job(alice, FILE_SIZE)
    pid = server_pid(server)
    # Warm up (the download code imported, a thread made) so that the baseline is the server at work:
    # another user's small file, read to its end (none of alice's download slots is taken).
    bob = make_user("bob")
    warm_job, _ = stored_job(bob, MB)
    warm = open_download(server, LiveSession(server, bob), warm_job)
    status, body = read_headers(warm)
    while chunk := warm.recv(65536):
        body += chunk
    warm.close()
    assert status == 200 and len(body) == MB
    before = rss(pid)
    clients = [open_download(server, session, job) for _ in range(5)]
    try:
        answers = [read_headers(sock) for sock in clients]
        assert [status for status, _ in answers] == [200] * 5
        received = [len(rest) for _, rest in answers]
        peak, started = before, time.monotonic()
        # 64 KB a second each, for 10 s: the server has 300 MB to send and may hold only its buffers.
        for second in range(10):
            for n, sock in enumerate(clients):
                want = 64 * 1024
                while want > 0:
                    chunk = sock.recv(min(want, 16384))
                    assert chunk, "the server closed a client that was reading"
                    received[n] += len(chunk)
                    want -= len(chunk)
            peak = max(peak, rss(pid))
            time.sleep(max(0.0, started + second + 1 - time.monotonic()))
    finally:
        for sock in clients:
            sock.close()
    growth = peak - before
    rss_line = f"server RSS {before / MB:.0f} MB -> peak {peak / MB:.0f} MB (+{growth / MB:.1f} MB)"
    print(f"{rss_line}, clients read {sum(received) / MB:.1f} MB of {5 * FILE_SIZE / MB:.0f} MB")
    assert growth < 50 * MB
    assert all(600 * 1024 <= n < 20 * MB for n in received)


def test_a_client_that_stops_reading_is_dropped_after_the_stall_timeout(impatient_server, alice):
    server = impatient_server
    session = LiveSession(server, alice)
    job, _ = stored_job(alice, 64 * MB)
    sock = open_download(server, session, job)
    assert read_headers(sock)[0] == 200
    # reads nothing for longer than REPORTS_DOWNLOAD_STALL_SECONDS (3 s here)
    time.sleep(3 + 2)
    sock.settimeout(10)
    total = 0
    # what the kernel buffers held, then the end
    while chunk := sock.recv(1 << 16):
        total += len(chunk)
    # dropped: far from the whole file
    assert total < 16 * MB
    # Its slot was given back: the user may download again, and gets the whole file.
    status, data, _ = session.request("GET", f"/reports/jobs/{job.pk}/download/")
    assert status == 200 and len(data) == 64 * MB


def test_a_normal_download_is_the_file_byte_for_byte(server, alice):
    session = LiveSession(server, alice)
    job, digest = stored_job(alice, 40 * MB)
    status, data, headers = session.request("GET", f"/reports/jobs/{job.pk}/download/")
    assert status == 200 and int(headers["Content-Length"]) == len(data) == 40 * MB
    assert hashlib.sha256(data).hexdigest() == digest
    assert 'attachment; filename="Orders' in headers["Content-Disposition"]
    assert job.downloads.count() == 1


def test_downloads_past_the_users_limit_are_429_until_one_ends(server, alice, make_user):
    session = LiveSession(server, alice)
    job, _ = stored_job(alice, 64 * MB)
    held = [open_download(server, session, job) for _ in range(5)]
    assert [read_headers(sock)[0] for sock in held] == [200] * 5
    status, body, headers = session.request("GET", f"/reports/jobs/{job.pk}/download/")
    assert status == 429 and headers["Retry-After"] and b"5 downloads in progress" in body
    # Another user is not limited by alice's downloads.
    bob = make_user("bob")
    bobs_job, _ = stored_job(bob, MB)
    assert LiveSession(server, bob).request("GET", f"/reports/jobs/{bobs_job.pk}/download/")[0] == 200
    held.pop().close()
    answers = []

    def fetched() -> bool:
        status, data, _ = session.request("GET", f"/reports/jobs/{job.pk}/download/")
        answers.append((status, len(data)))
        return status == 200

    wait_for(fetched, timeout=10, message="the closed download's slot to be free")
    assert answers[-1] == (200, 64 * MB)
    for sock in held:
        sock.close()


# -- Offloaded to the proxy --------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
user root;
worker_processes 1;
error_log {prefix}/error.log;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /protected-reports/ {{
            internal;
            alias {root}/;
        }}
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""


@pytest.fixture
def nginx_in_front(transactional_db, redis_queue, tmp_path):
    """A real nginx (Debian's) in front of the web server, which hands files to it: its base URL."""
    import shutil
    import subprocess

    assert shutil.which("nginx"), "nginx is installed by `scripts/services.sh nginx` (make test does it)"
    with serve(REPORTS_DOWNLOAD_OFFLOAD="x-accel-redirect") as upstream:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        root = Path(reports_storage().location)
        conf.write_text(NGINX_CONF.format(prefix=tmp_path, port=port, root=root, upstream=upstream))
        process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
        try:
            wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=15, message="nginx")
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_behind_nginx_the_proxy_sends_the_file_after_the_owner_check(nginx_in_front, alice, make_user):
    job, digest = stored_job(alice, 8 * MB)
    status, data, headers = LiveSession(nginx_in_front, alice).request("GET", f"/reports/jobs/{job.pk}/download/")
    assert status == 200 and len(data) == 8 * MB and hashlib.sha256(data).hexdigest() == digest
    assert 'attachment; filename="Orders' in headers["Content-Disposition"]
    # nginx consumed it
    assert "X-Accel-Redirect" not in headers
    assert job.downloads.count() == 1
    # Someone else's job: the owner check answers, and nginx never sends the file.
    status, data, _ = LiveSession(nginx_in_front, make_user("bob")).request("GET", f"/reports/jobs/{job.pk}/download/")
    assert status == 404 and len(data) < 10_000
    # The internal location is not reachable from outside.
    status, _, _ = LiveSession(nginx_in_front, alice).request("GET", f"/protected-reports/{job.file.name}")
    assert status == 404


def test_the_offload_headers_name_the_file_and_nothing_is_streamed(alice_client, alice, settings):
    job, _ = stored_job(alice, MB)
    settings.REPORTS_DOWNLOAD_OFFLOAD = "x-accel-redirect"
    response = alice_client.get(f"/reports/jobs/{job.pk}/download/")
    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected-reports/{job.file.name}"
    settings.REPORTS_DOWNLOAD_OFFLOAD = "x-sendfile"
    response = alice_client.get(f"/reports/jobs/{job.pk}/download/")
    assert response["X-Sendfile"] == reports_storage().path(job.file.name) and response.content == b""
    assert job.downloads.count() == 2


def test_an_unknown_offload_is_a_system_check_error(settings):
    from django.core import checks

    settings.REPORTS_DOWNLOAD_OFFLOAD = "x-accel"
    errors = [m for m in checks.run_checks() if m.id == "reports.E101"]
    assert len(errors) == 1 and "x-accel-redirect, x-sendfile" in errors[0].hint
