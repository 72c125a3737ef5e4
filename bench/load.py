"""Load without loss: many open pages, a burst of requests, a long queue, measured from outside.

    python bench/load.py --users 200 --sockets-per-user 10 --hold 300 --web-processes 1

With the web server (project.web, uvicorn; `--web-processes` of it behind one socket), 2 RQ workers
and the sweeper running as the Procfile runs them, on a database of its own:

1. every user opens `--sockets-per-user` websockets (a page each); they are held `--hold` seconds,
   and every one must still be open at the end (the web processes' memory is read before and after);
2. all users ask for a small report at the same moment: each POST's latency, then every job must
   succeed and every socket of its owner get `report.ready` (the delay from the job's end); before
   it, its floor: all of them at once GET their job list, the lightest page with a session;
3. `--queued-users` users ask for `--queued-per-user` reports each, all at once: the queue must drain
   with every job succeeded;
4. what one request costs: the queries of a POST (counted in this process), and the web processes'
   CPU per POST over the burst.

Prints a table and writes it to bench/results/load.md. Nothing here asserts a time: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PYTHON, ROOT, WORKER, free_port, setup  # noqa: E402

# A report of about 40 rows: the work is the request, the queue and the notification, not the rows.
SMALL = {"report": "orders", "format": "csv", "params": {"created_to": "2024-01-01"}}


def users(count: int, prefix: str) -> list[tuple[str, str]]:
    """`count` users who may run the orders report, each with a session: (session key, username)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.models import Permission
    from django.contrib.sessions.backends.db import SessionStore

    model = get_user_model()
    permissions = list(Permission.objects.filter(content_type__app_label="shop"))
    made = []
    for n in range(count):
        user, _ = model.objects.get_or_create(username=f"{prefix}{n}")
        user.user_permissions.set(permissions)
        session = SessionStore()
        session.update(
            {
                SESSION_KEY: str(user.pk),
                HASH_SESSION_KEY: user.get_session_auth_hash(),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            }
        )
        session.create()
        made.append((session.session_key, user.username))
    return made


class Stack:
    """The web server, 2 workers and the sweeper, as the Procfile runs them."""

    def __init__(self, env: dict, web_processes: int, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        web = [PYTHON, "-m", "project.web", "--host", "127.0.0.1", "--port", str(self.port)]
        if web_processes > 1:
            web += ["--workers", str(web_processes)]
        quiet = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        # what went wrong, if anything did
        with log.open("w") as out:
            self.web = subprocess.Popen(web, **{**quiet, "stdout": out, "stderr": subprocess.STDOUT})
        self.others = [subprocess.Popen(["nice", "-n", "10", *WORKER], **quiet) for _ in range(2)]
        self.others.append(subprocess.Popen([PYTHON, "manage.py", "sweep_reports", "--every", "10"], **quiet))

    def wait_until_listening(self) -> None:
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/login/", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the web server did not start")

    def web_pids(self) -> list[int]:
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text().split()
        return [self.web.pid, *map(int, children)]

    def web_rss_mb(self) -> float:
        return sum(status_kb(pid, "VmRSS") for pid in self.web_pids()) / 1024

    def web_cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.web_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def stop(self) -> None:
        for process in [self.web, *self.others]:
            process.terminate()
        for process in [self.web, *self.others]:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Page:
    """One open page: its websocket, and when each job's `report.ready` arrived."""

    def __init__(self, session: str, username: str):
        self.session, self.username = session, username
        self.ready: dict[str, float] = {}
        self.closed = False

    async def open(self, base: str):
        from websockets.asyncio.client import connect

        cookie = f"sessionid={self.session}"
        url = base.replace("http://", "ws://") + "/ws/notifications/"
        self.ws = await connect(url, additional_headers={"Cookie": cookie, "Origin": base}, open_timeout=60)
        self.task = asyncio.create_task(self.listen())

    async def listen(self):
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("type") == "report.ready":
                    self.ready[message["job"]["id"]] = time.time()
        finally:
            self.closed = True


async def post(base: str, session: str, body: dict | None, method: str = "POST") -> tuple[float, int, dict]:
    """A report request (or, with `method` GET and no body, the user's job list) over a connection of
    its own: (milliseconds, status, answer)."""
    host, port = base.removeprefix("http://").split(":")
    data = json.dumps(body).encode() if body is not None else b""
    request = (
        f"{method} /api/reports/jobs/ HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nOrigin: {base}\r\nCookie: sessionid={session}; csrftoken={'x' * 32}\r\n"
        f"X-CSRFToken: {'x' * 32}\r\nConnection: close\r\n\r\n"
    ).encode() + data
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    response = await reader.read()
    elapsed = (time.perf_counter() - started) * 1000
    writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return elapsed, status, json.loads(payload) if payload.startswith(b"{") else {}


def errors(answers: list[tuple[float, int, dict]]) -> dict[int, int] | int:
    """0, or how many answers of each status other than 202 (and the first such answer, printed)."""
    wrong = [(status, answer) for _, status, answer in answers if status != 202]
    if wrong:
        print("For example:", *wrong[0])
    return dict(Counter(status for status, _ in wrong)) or 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


async def ended(job_ids: list[str], timeout: float) -> dict[str, int]:
    """Wait until none of the jobs is queued or running: how many ended in each status."""
    from django.db.models import Count

    from reports.models import ReportJob

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ReportJob.objects.filter(pk__in=job_ids, status__in=["queued", "running"]).exists():
            break
        # the pages' sockets are read meanwhile
        await asyncio.sleep(0.2)
    counts = ReportJob.objects.filter(pk__in=job_ids).values("status").annotate(n=Count("pk"))
    return {row["status"]: row["n"] for row in counts}


async def measure(args, env: dict) -> dict:
    from reports.models import ReportJob

    accounts = users(args.users, "load")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stack = Stack(env, args.web_processes, Path(args.out) / f"load-{args.web_processes}web.log")
    results: dict = {}
    try:
        stack.wait_until_listening()
        rss_before = stack.web_rss_mb()

        # 1. The pages.
        pages = [Page(*account) for account in accounts for _ in range(args.sockets_per_user)]
        started = time.perf_counter()
        # 100 at a time, as page loads arrive
        for start in range(0, len(pages), 100):
            await asyncio.gather(*(page.open(stack.base) for page in pages[start : start + 100]))
        results["sockets"] = len(pages)
        results["sockets_open_s"] = round(time.perf_counter() - started, 1)
        await asyncio.sleep(args.hold)
        results["sockets_held_s"] = args.hold
        results["sockets_dropped_while_held"] = sum(page.closed for page in pages)
        results["web_rss_mb"] = round(stack.web_rss_mb(), 1)
        results["kb_per_socket"] = round((stack.web_rss_mb() - rss_before) * 1024 / len(pages), 1)

        # 2. The burst. First its floor: the same users at once ask for the lightest page there is,
        # their job list (the session, the user and one query), which is what Django costs alone.
        cpu_before = stack.web_cpu_seconds()
        listed = await asyncio.gather(*(post(stack.base, session, None, "GET") for session, _ in accounts))
        assert all(status == 200 for _, status, _ in listed), Counter(status for _, status, _ in listed)
        results["floor_cpu_ms_per_get"] = round((stack.web_cpu_seconds() - cpu_before) * 1000 / len(accounts), 1)
        results["floor_get_ms_p50"] = round(statistics.median(ms for ms, _, _ in listed))
        results["floor_get_ms_p95"] = round(percentile([ms for ms, _, _ in listed], 0.95))
        cpu_before = stack.web_cpu_seconds()
        answers = await asyncio.gather(*(post(stack.base, session, SMALL) for session, _ in accounts))
        results["burst_cpu_ms_per_post"] = round((stack.web_cpu_seconds() - cpu_before) * 1000 / len(accounts), 1)
        latencies = [ms for ms, _, _ in answers]
        results["burst_posts"] = len(answers)
        results["burst_errors"] = errors(answers)
        results["burst_post_ms_p50"] = round(statistics.median(latencies))
        results["burst_post_ms_p95"] = round(percentile(latencies, 0.95))
        results["burst_post_ms_max"] = round(max(latencies))
        job_ids = [answer["id"] for _, status, answer in answers if status == 202]
        burst_started = time.monotonic()
        results["burst_jobs"] = await ended(job_ids, timeout=600)
        results["burst_jobs_done_s"] = round(time.monotonic() - burst_started, 1)
        # the last notifications on their way
        await asyncio.sleep(2)
        owners = [name for (_, status, _), (_, name) in zip(answers, accounts, strict=True) if status == 202]
        owner_of = dict(zip(job_ids, owners, strict=True))
        finished = {str(j.pk): j.finished_at.timestamp() for j in ReportJob.objects.filter(pk__in=job_ids)}
        delays, missing = [], 0
        for page in pages:
            for job_id, owner in owner_of.items():
                if owner != page.username:
                    continue
                if job_id in page.ready:
                    delays.append((page.ready[job_id] - finished[job_id]) * 1000)
                else:
                    missing += 1
        results["ready_messages"] = len(delays)
        results["ready_missing"] = missing
        results["ready_ms_p50"] = round(statistics.median(delays)) if delays else None
        results["ready_ms_p95"] = round(percentile(delays, 0.95)) if delays else None
        results["sockets_dropped"] = sum(page.closed for page in pages)

        # 3. The long queue.
        queued_accounts = users(args.queued_users, "queue")
        bodies = [
            (session, {**SMALL, "params": {**SMALL["params"], "min_amount": n}})
            for session, _ in queued_accounts
            for n in range(args.queued_per_user)
        ]
        started = time.monotonic()
        answers = await asyncio.gather(*(post(stack.base, session, body) for session, body in bodies))
        results["queued_posts"] = len(answers)
        results["queued_errors"] = errors(answers)
        results["queued_post_ms_p95"] = round(percentile([ms for ms, _, _ in answers], 0.95))
        job_ids = [answer["id"] for _, status, answer in answers if status == 202]
        results["queued_jobs"] = await ended(job_ids, timeout=1800)
        results["queued_drained_s"] = round(time.monotonic() - started, 1)
        for page in pages:
            await page.ws.close()
    finally:
        stack.stop()
    return results


def queries_per_post(username: str) -> int:
    """The queries one report request makes, counted in this process through Django's test client."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=username))
    body = {**SMALL, "params": {**SMALL["params"], "min_amount": 1}}
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/reports/jobs/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return len(queries)


def table(results: dict) -> str:
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in results.items())])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="orders in the database")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--sockets-per-user", type=int, default=10)
    parser.add_argument("--hold", type=float, default=300, help="seconds the sockets are held before the burst")
    parser.add_argument("--queued-users", type=int, default=50)
    parser.add_argument("--queued-per-user", type=int, default=10)
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/reports_bench"),
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    # Every socket is a file descriptor here and in the web server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 65536)), hard))
    env = setup(args)
    # Every user may ask for as many reports as the run asks of them, as fast.
    env.update(REPORTS_MAX_ACTIVE_JOBS_PER_USER="1000", REPORTS_MAX_JOBS_PER_MINUTE="100000")
    # This process reads the database between awaits (it is the measuring client, alone in its loop).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        results = asyncio.run(measure(args, env))
        results["queries_per_post"] = queries_per_post("load0")
    finally:
        shutil.rmtree(env["VAR_DIR"], ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    command = " ".join(["python bench/load.py", *sys.argv[1:]])
    text = f"Load {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — {machine}\n\n{table(results)}\n\n`{command}`\n"
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"load-{args.web_processes}web.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
