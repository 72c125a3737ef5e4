"""The benchmark: our pipeline side by side with the limit (COPY) and the alternatives, in one run.

    python bench/run.py --rows 1000000 --rounds 3        (make bench N=1000000)

Seeds N orders in a PostgreSQL database of its own, then runs every approach as a separate process,
interleaved over several rounds, and takes medians: rows/s, the ratio to COPY, and the peak memory
(max RSS) of the process doing the work. Our pipeline runs in a real RQ worker process (SimpleWorker:
the job runs in the worker process itself, so its peak memory is the worker's). Then, with the web server (project.web)
and a worker running: POST -> 202 latency while a 1M-row report is generated, and the delay from a
file being stored to the websocket message. Prints one table and writes it as Markdown and JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path.insert(0, str(ROOT))
WORKER = [PYTHON, "manage.py", "rqworker", "reports", "--serializer", "rq.serializers.JSONSerializer"]
# about 1% of the demo orders: the "10k rows" memory baseline
SMALL = {"created_to": "2024-01-08"}
# under the PDF cap at 1M orders
PDF_PARAMS = {"created_to": "2024-01-03"}


def run_measured(command: list[str], env: dict) -> tuple[str, float, float]:
    """Run a command; its output, peak RSS in MB and CPU seconds (its own, from wait4)."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Read the output without reaping, then reap with wait4 to get this child's own rusage.
    out = process.stdout.read().decode()
    err = process.stderr.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {err[-2000:]}")
    return out, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


class PostgresCpu:
    """The CPU time PostgreSQL's backends spend on the benchmark's database while a case runs (read
    from /proc: the server runs on this machine). Backends that start during the case count from 0."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        import threading

        from django.db import connection

        self.connection, self.seen, self.started = connection, {}, dt.datetime.now(dt.UTC)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.seconds = sum(last - first for first, last in self.seen.values())

    def cpu(self, pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.TICK

    def watch(self) -> None:
        with self.connection.cursor() as cursor:
            while not self.stop.wait(0.05):
                cursor.execute(
                    "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
                for pid, started in cursor.fetchall():
                    with contextlib.suppress(FileNotFoundError, IndexError):
                        now = self.cpu(pid)
                        first = self.seen.get(pid, (0.0 if started >= self.started else now, now))[0]
                        self.seen[pid] = (first, now)
        self.connection.close()


def approach(name: str, env: dict, workdir: Path) -> dict:
    with PostgresCpu() as postgres:
        out, rss, _ = run_measured([PYTHON, "bench/approaches.py", name, str(workdir / f"{name}.out")], env)
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "rows": result["rows"],
        "seconds": result["seconds"],
        "rss_mb": rss,
        "pg_cpu": postgres.seconds,
        "cpu": result["cpu"],
    }


def pipeline(
    fmt: str, env: dict, params: dict | None = None, workers: int = 1, slug: str = "orders", **extra_env
) -> dict:
    """One report through our pipeline in real RQ worker processes. With one worker, a burst worker
    works the job off (all its segments, one after the other) and exits; with more, as many workers
    share its segments until the job has ended. The peak memory is the largest worker's; the CPU
    time is theirs together (start-up included)."""
    env = {**env, **{k: str(v) for k, v in extra_env.items()}}
    job_id = subprocess.run(
        [PYTHON, "bench/approaches.py", "enqueue", fmt, json.dumps(params or {}), slug],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    command = [*WORKER, "--worker-class", "rq.SimpleWorker"]
    with PostgresCpu() as postgres:
        if workers == 1:
            _, rss, cpu = run_measured([*command, "--burst"], env)
        else:
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            processes = [subprocess.Popen(command, cwd=ROOT, env=env, **quiet) for _ in range(workers)]
            rss, cpu = run_until_ended(job_id, processes)
    shown = subprocess.run(
        [PYTHON, "bench/approaches.py", "show", job_id], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout
    job = json.loads(shown)
    # its file (GBs over a whole run)
    shutil.rmtree(Path(env["VAR_DIR"]) / "reports", ignore_errors=True)
    if job["status"] != "succeeded":
        raise RuntimeError(f"pipeline {fmt} ended {job['status']}: {job['error']}")
    cpu -= workers * idle_worker_cpu(tuple(sorted(env.items())))
    return {"rows": job["rows"], "seconds": job["seconds"], "rss_mb": rss, "pg_cpu": postgres.seconds, "cpu": cpu}


@functools.cache
def idle_worker_cpu(env_key: tuple) -> float:
    """The CPU seconds a worker spends starting and stopping with nothing to do (imports, Django)."""
    return statistics.median(
        run_measured([*WORKER, "--worker-class", "rq.SimpleWorker", "--burst"], dict(env_key))[2] for _ in range(3)
    )


def shared(fmt: str, workers: int, params: dict | None = None):
    """A case: the report (with `params`) shared by `workers` worker processes."""
    return lambda env, workdir: pipeline(fmt, env, params, workers=workers)


def run_until_ended(job_id: str, workers: list[subprocess.Popen], timeout: float = 3600) -> tuple[float, float]:
    """Wait for the job to end, stop the workers; the largest peak RSS among them, in MB, and their
    CPU seconds together."""
    from reports.models import ACTIVE, ReportJob

    deadline = time.monotonic() + timeout
    while ReportJob.objects.filter(pk=job_id, status__in=ACTIVE).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    peaks, cpu = [], 0.0
    for worker in workers:
        worker.terminate()
        _, _, usage = os.wait4(worker.pid, 0)
        worker.returncode = 0
        peaks.append(usage.ru_maxrss / 1024)
        cpu += usage.ru_utime + usage.ru_stime
    return max(peaks), cpu


FORMATS = {"CSV": "csv", "XLSX": "xlsx", "JSON": "json", "NDJSON": "ndjson", "Parquet": "parquet"}
CASES = {
    "(a) COPY to a file": lambda env, wd: approach("copy", env, wd),
    "(b) naive: list(queryset) + csv": lambda env, wd: approach("naive", env, wd),
    "(c) StreamingHttpResponse": lambda env, wd: approach("streaming", env, wd),
    "(d) values_list().iterator() + csv": lambda env, wd: approach("loop", env, wd),
    "xlsxwriter constant_memory loop": lambda env, wd: approach("xlsxwriter_loop", env, wd),
    "json.dumps loop": lambda env, wd: approach("json_loop", env, wd),
    **{f"(e) pipeline {label}": shared(fmt, 1) for label, fmt in FORMATS.items()},
    **{f"(e) pipeline {label}, 2 workers": shared(fmt, 2) for label, fmt in FORMATS.items()},
    **{f"(e) pipeline {label}, 3 workers": shared(fmt, 3) for label, fmt in FORMATS.items() if fmt in ("csv", "xlsx")},
    "(e) pipeline PDF (at its cap)": lambda env, wd: pipeline("pdf", env, PDF_PARAMS),
    # The order-totals report: two of its 12 columns are SQL expressions (net amount, shipped).
    "(a) COPY to a file, order totals": lambda env, wd: approach("copy_totals", env, wd),
    "(e) pipeline CSV, order totals": lambda env, wd: pipeline("csv", env, slug="order-totals"),
    **{f"(e) pipeline {label}, ~1% rows": shared(fmt, 1, SMALL) for label, fmt in FORMATS.items()},
}


def setup(args) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": args.database,
        "REDIS_URL": args.redis,
        "VAR_DIR": tempfile.mkdtemp(prefix="reports-bench-"),
        "LOG_LEVEL": "WARNING",
        "RQ_LOG_LEVEL": "WARNING",
        "REPORTS_MAX_ACTIVE_JOBS_PER_USER": "1000",
        "REPORTS_MAX_JOBS_PER_MINUTE": "100000",
        # every case here goes through the queue; --instant compares the two ways
        "REPORTS_INSTANT_MAX_ROWS": "0",
        # As in production: no debug bookkeeping (query log, debug pages) in the web or the workers.
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        # plain HTTP on localhost
        "DJANGO_SECURE_SSL_REDIRECT": "false",
    }
    os.environ.update(env)
    db = args.database.rsplit("/", 1)[1]
    subprocess.run(
        ["psql", args.database.rsplit("/", 1)[0] + "/postgres", "-qc", f"CREATE DATABASE {db}"], capture_output=True
    )
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from shop.models import Order

    if Order.objects.count() != args.rows:
        print(f"Seeding {args.rows:,} orders…", flush=True)
        subprocess.run(
            [PYTHON, "manage.py", "seed_demo", "--orders", str(args.rows), "--no-user", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
    user, _ = get_user_model().objects.get_or_create(username="bench")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="shop"))
    import django_rq

    django_rq.get_queue("reports").connection.flushdb()
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live(env: dict, posts: int, notifications: int) -> dict:
    """POST latency while a 1M-row report runs, and file-stored -> websocket delay."""
    from django.contrib.auth import get_user_model
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client
    from websockets.sync.client import connect

    from reports.models import ReportJob, Status
    from reports.services import JobConflict, cancel_report, request_report

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = subprocess.Popen(
        [PYTHON, "-m", "project.web", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # As the run command and the Procfile start workers: niced, so background work yields the CPU to the web.
    worker = subprocess.Popen(
        ["nice", "-n", "10", *WORKER], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        user = get_user_model().objects.get(username="bench")
        client = Client()
        client.force_login(user)
        csrf = _get_new_csrf_string()
        cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)

        def post(body: dict) -> tuple[float, dict]:
            request = urllib.request.Request(
                base + "/api/reports/jobs/",
                data=json.dumps(body).encode(),
                headers={"Cookie": cookie, "X-CSRFToken": csrf, "Content-Type": "application/json"},
            )
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
                assert response.status == 202
            return (time.perf_counter() - started) * 1000, answer

        big = request_report(user=user, slug="orders", format="json")
        while ReportJob.objects.get(pk=big.pk).status != Status.RUNNING:
            time.sleep(0.1)

        # a new request each time (the same one again would be the same job)
        def tiny(n: int) -> dict:
            return {"report": "orders", "format": "csv", "params": {"created_to": "2024-01-01", "min_amount": n}}

        latencies = [post(tiny(n))[0] for n in range(posts)]
        still_running = ReportJob.objects.get(pk=big.pk).status == Status.RUNNING
        for job in ReportJob.objects.filter(owner=user, status__in=[Status.QUEUED, Status.RUNNING]):
            # it may have finished meanwhile
            with contextlib.suppress(JobConflict):
                cancel_report(job)
        while ReportJob.objects.filter(owner=user, status=Status.RUNNING).exists():
            time.sleep(0.1)

        delays = []
        ws_url = base.replace("http", "ws") + "/ws/notifications/"
        with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": base}) as ws:
            # drain the replay of earlier notifications
            while True:
                try:
                    ws.recv(timeout=1)
                except TimeoutError:
                    break
            for n in range(notifications):
                _, job = post(tiny(posts + n))
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message["type"] == "report.ready" and message["job"]["id"] == job["id"]:
                        received = time.time()
                        finished = dt.datetime.fromisoformat(message["job"]["finished_at"]).timestamp()
                        delays.append((received - finished) * 1000)
                        break
        latencies.sort()
        return {
            "post_ms_median": statistics.median(latencies),
            "post_ms_p95": latencies[int(len(latencies) * 0.95) - 1],
            "post_during_big_report": still_running,
            "notify_ms_median": statistics.median(delays),
            "notify_ms_worst": max(delays),
            "posts": posts,
            "notifications": notifications,
        }
    finally:
        for process in (web, worker):
            process.terminate()
            process.wait(timeout=20)


def small_beside_big(env: dict, smalls: int = 10, bigs: int = 4) -> dict:
    """With two workers busy on 1M-row XLSX reports (`bigs` of them, queued at once, so that they stay
    busy), another user's small reports, one after the other: how long from each request to its start
    (its run picked up by a worker). Only the smalls that started while a big one ran count."""
    from django.contrib.auth import get_user_model

    from reports.models import ReportJob, Status
    from reports.services import request_report

    workers = [
        subprocess.Popen(WORKER, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        owner = get_user_model().objects.get(username="bench")
        other, _ = get_user_model().objects.get_or_create(username="bench-other")
        other.user_permissions.set(owner.user_permissions.all())
        big = [
            request_report(user=owner, slug="orders", format="xlsx", params={"min_amount": str(-(10**9) - n)}).pk
            # every row, yet not the same request (that would be one job)
            for n in range(bigs)
        ]
        running = ReportJob.objects.filter(pk__in=big, status=Status.RUNNING)
        while not running.filter(segments__status="running").exists():
            time.sleep(0.05)
        started = []
        for _ in range(smalls):
            small = request_report(user=other, slug="orders", format="csv", params={"created_to": "2024-01-02"})
            while (job := ReportJob.objects.get(pk=small.pk)).status != Status.SUCCEEDED:
                time.sleep(0.02)
            started.append(job)
        ended = [job.finished_at for job in ReportJob.objects.filter(pk__in=big)]
        last_big = None if None in ended else max(ended)
        delays = [
            (job.started_at - job.created_at).total_seconds()
            for job in started
            if last_big is None or job.started_at < last_big
        ]
        return {
            "start_delay_median": statistics.median(delays) if delays else None,
            "start_delay_worst": max(delays, default=None),
            "start_delays": len(delays),
            "smalls": smalls,
        }
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=60)


def instant(env: dict, rounds: int) -> str:
    """A report of 1,000 orders (CSV and XLSX) both ways, over HTTP through the web server (project.web),
    with one worker running: written at once into its download (POST -> 201, GET) and through the queue (POST -> 202,
    the worker, GET once it is ready). From the POST's start: the first byte of the file, its last."""
    from django.contrib.auth import get_user_model
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    from reports.models import ReportJob, Status
    from shop.models import Order

    # the default limit
    web_env = {k: v for k, v in env.items() if k != "REPORTS_INSTANT_MAX_ROWS"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = subprocess.Popen(
        [PYTHON, "-m", "project.web", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=web_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(WORKER, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client()
        client.force_login(get_user_model().objects.get(username="bench"))
        csrf = _get_new_csrf_string()
        headers = {
            "Cookie": f"sessionid={client.cookies['sessionid'].value}; csrftoken={csrf}",
            "X-CSRFToken": csrf,
            "Content-Type": "application/json",
        }
        for _ in range(100):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(base + "/login/", timeout=1)
                break
            time.sleep(0.2)
        threshold = Order.objects.order_by("-amount").values_list("amount", flat=True)[999]

        def ask(body: dict) -> tuple[int, dict]:
            request = urllib.request.Request(
                base + "/api/reports/jobs/", data=json.dumps(body).encode(), headers=headers
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())

        def fetch(url: str, started: float) -> tuple[float, float, int]:
            with urllib.request.urlopen(urllib.request.Request(base + url, headers=headers), timeout=60) as response:
                first = response.read(1)
                ttfb = time.perf_counter() - started
                size = len(first) + len(response.read())
            return ttfb, time.perf_counter() - started, size

        lines = [
            "| format, way | rows | bytes | first byte ms, median | last byte ms, median | last byte ms, worst |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for fmt in ("csv", "xlsx"):
            for way in ("auto", "background"):
                ttfbs, totals = [], []
                # One after the other: the queued one has ended before the same is asked again.
                body = {"report": "orders", "format": fmt, "delivery": way, "params": {"min_amount": str(threshold)}}
                for _ in range(rounds):
                    started = time.perf_counter()
                    status, job = ask(body)
                    assert status == (201 if way == "auto" else 202), (status, job)
                    if way == "background":
                        while ReportJob.objects.get(pk=job["id"]).status != Status.SUCCEEDED:
                            time.sleep(0.005)
                    ttfb, total, size = fetch(f"/reports/jobs/{job['id']}/download/", started)
                    ttfbs.append(ttfb * 1000)
                    totals.append(total * 1000)
                rows = ReportJob.objects.get(pk=job["id"]).rows_done
                name = "at once (201)" if way == "auto" else "queued (202)"
                lines.append(
                    f"| {fmt.upper()}, {name} | {rows:,} | {size:,} | {statistics.median(ttfbs):.0f} | "
                    f"{statistics.median(totals):.0f} | {max(totals):.0f} |"
                )
        return "\n".join(lines)
    finally:
        for process in (web, worker):
            process.terminate()
            process.wait(timeout=20)


def segment_sizes(env: dict, sizes: list[int], rounds: int) -> str:
    """Rows/s of CSV (COPY path) and XLSX with one worker, at each segment size: the cost of segments."""
    lines = [
        "| segment rows | segments | CSV rows/s | CSV vs one segment | XLSX rows/s | XLSX vs one segment | "
        "XLSX seconds per segment |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rates = {}
    for size in sizes:
        for fmt in ("csv", "xlsx"):
            runs = [pipeline(fmt, env, REPORTS_SEGMENT_ROWS=size) for _ in range(rounds)]
            rates[size, fmt] = statistics.median(r["rows"] / r["seconds"] for r in runs)
            print(f"segments of {size:,} rows, {fmt}: {rates[size, fmt]:,.0f} rows/s", flush=True)
    whole = max(sizes)
    rows = runs[0]["rows"]
    for size in sizes:
        csv_rate, xlsx_rate = rates[size, "csv"], rates[size, "xlsx"]
        per_segment = min(size, rows) / xlsx_rate
        lines.append(
            f"| {size:,} | {-(-rows // size)} | {csv_rate:,.0f} | {csv_rate / rates[whole, 'csv']:.2f} | "
            f"{xlsx_rate:,.0f} | {xlsx_rate / rates[whole, 'xlsx']:.2f} | {per_segment:.1f} |"
        )
    return "\n".join(lines)


# The row-at-a-time pipeline before the columnar engine (docs/benchmark.md's table of 2026-11-28, same machine).
ROW_AT_A_TIME = {"XLSX": 49_791, "JSON": 65_521, "NDJSON": 69_849}


def table(results: dict, rows: int, live_results: dict | None) -> str:
    keys = ("seconds", "rss_mb", "pg_cpu", "cpu")
    med = {
        name: {k: statistics.median(r[k] for r in runs) for k in keys} | {"rows": runs[0]["rows"]}
        for name, runs in results.items()
    }
    rate = {name: m["rows"] / m["seconds"] for name, m in med.items()}
    copy = rate["(a) COPY to a file"]
    lines = [
        f"| approach ({rows:,} orders, 12 columns) | rows | rows/s | × COPY | peak RSS MB | PostgreSQL CPU s | "
        "our CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in med.items():
        lines.append(
            f"| {name} | {m['rows']:,} | {rate[name]:,.0f} | {rate[name] / copy:.2f} | {m['rss_mb']:.0f} | "
            f"{m['pg_cpu']:.1f} | {m['cpu']:.1f} |"
        )

    def target(label, ok, figure):
        return f"| {label} | {'pass' if ok else 'FAIL'} | {figure} |"

    def pipeline_rate(label):
        return rate[f"(e) pipeline {label}"]

    checks = ["", "| target | result | figure |", "|---|---|---|"]
    csv_ratio = pipeline_rate("CSV") / copy
    checks.append(target("CSV ≥ 0.8× a raw COPY of the report's query", csv_ratio >= 0.8, f"{csv_ratio:.2f}×"))
    totals = rate["(e) pipeline CSV, order totals"] / rate["(a) COPY to a file, order totals"]
    checks.append(
        target(
            "CSV with database-expression columns ≥ 0.8× a raw COPY of its query",
            totals >= 0.8,
            f"{totals:.2f}× (order totals: net amount and shipped computed by PostgreSQL)",
        )
    )
    for label in ("JSON", "NDJSON"):
        r = pipeline_rate(label)
        checks.append(
            target(
                f"{label} ≥ 4× the row-at-a-time pipeline and ≥ 250k rows/s",
                r >= 4 * ROW_AT_A_TIME[label] and r >= 250_000,
                f"{r:,.0f} rows/s, {r / ROW_AT_A_TIME[label]:.1f}× ({ROW_AT_A_TIME[label]:,})",
            )
        )
    parquet = pipeline_rate("Parquet")
    checks.append(target("Parquet ≥ 300k rows/s", parquet >= 300_000, f"{parquet:,.0f} rows/s"))
    xlsx, anchor = pipeline_rate("XLSX"), rate["xlsxwriter constant_memory loop"]
    checks.append(
        target(
            "XLSX ≥ 2× the row-at-a-time pipeline and ≥ 7× xlsxwriter constant_memory",
            xlsx >= 2 * ROW_AT_A_TIME["XLSX"] and xlsx >= 7 * anchor,
            f"{xlsx / ROW_AT_A_TIME['XLSX']:.1f}×, {xlsx / anchor:.1f}× xlsxwriter",
        )
    )
    for label, anchor_name in [("JSON", "json.dumps loop"), ("CSV", "(d) values_list().iterator() + csv")]:
        times = pipeline_rate(label) / rate[anchor_name]
        checks.append(f"| {label} next to its hand-written anchor, {anchor_name} | measured | {times:.1f}× |")
    cores = os.cpu_count()
    for label in FORMATS:
        one = med[f"(e) pipeline {label}"]
        two = rate[f"(e) pipeline {label}, 2 workers"] / pipeline_rate(label)
        three_workers = rate.get(f"(e) pipeline {label}, 3 workers")
        three = f" → {three_workers / pipeline_rate(label):.2f}×" if three_workers else ""
        # The most any number of workers can gain here: the CPU one report needs (the worker's and
        # PostgreSQL's, on these same cores) spread over every core, against one worker's time.
        allowed = one["seconds"] / ((one["cpu"] + one["pg_cpu"]) / cores)
        figure = (
            f"1 → {two:.2f}×{three}; the {cores} cores allow at most {allowed:.2f}× (PostgreSQL "
            f"{one['pg_cpu']:.1f} s + workers {one['cpu']:.1f} s of CPU in {one['seconds']:.1f} s)"
        )
        label = f"{label}: 2 workers ≥ 1.7× one where the cores allow (segments; 1 → 2 → 3 workers)"
        if allowed < 1.7:
            checks.append(f"| {label} | cores do not allow | {figure} |")
        else:
            checks.append(target(label, two >= 1.7, figure))
    for label in FORMATS:
        growth = med[f"(e) pipeline {label}"]["rss_mb"] - med[f"(e) pipeline {label}, ~1% rows"]["rss_mb"]
        checks.append(
            target(
                f"{label} worker RSS: all rows ≤ 1% rows + 30 MB",
                growth <= 30,
                f"+{growth:.0f} MB (1%: {med[f'(e) pipeline {label}, ~1% rows']['rss_mb']:.0f} MB)",
            )
        )
    if live_results:
        p95 = live_results["post_ms_p95"]
        checks.append(
            target(
                "POST → 202 p95 < 30 ms during a 1M-row report",
                p95 < 30,
                f"median {live_results['post_ms_median']:.1f} ms, p95 {p95:.1f} ms ({live_results['posts']} POSTs)",
            )
        )
        checks.append(
            f"| file stored → websocket message | measured | median {live_results['notify_ms_median']:.1f} "
            f"ms, worst {live_results['notify_ms_worst']:.1f} ms of {live_results['notifications']} |"
        )
        worst, counted = live_results["start_delay_worst"], live_results["start_delays"]
        checks.append(
            target(
                "another user's small report starts < 2 s with 2 workers busy on 1M-row XLSX reports",
                counted >= live_results["smalls"] // 2 and worst < 2,
                f"median {live_results['start_delay_median'] or 0:.2f} s, worst {worst or 0:.2f} s "
                f"of {counted} started while the workers were busy (of {live_results['smalls']})",
            )
        )
    return "\n".join(lines + checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/reports_bench"),
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--only", help="comma-separated substrings of case names")
    parser.add_argument("--no-live", action="store_true", help="skip POST latency and websocket delay")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--segment-sizes", help="comma-separated segment sizes: measure them instead")
    parser.add_argument("--instant", action="store_true", help="measure a 1,000-row download both ways instead")
    args = parser.parse_args()
    env = setup(args)
    try:
        return measure(args, env)
    finally:
        shutil.rmtree(env["VAR_DIR"], ignore_errors=True)


def measure(args, env: dict) -> int:
    if args.segment_sizes:
        text = segment_sizes(env, [int(s) for s in args.segment_sizes.split(",")], args.rounds)
        command = f"python bench/run.py --rows {args.rows} --rounds {args.rounds} --segment-sizes {args.segment_sizes}"
        print(f"\n{text}\n\n`{command}`")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "segments.md").write_text(f"{text}\n\n`{command}`\n")
        return 0
    if args.instant:
        text = instant(env, rounds=max(args.rounds, 5))
        command = f"python bench/run.py --rows {args.rows} --rounds {args.rounds} --instant"
        print(f"\n{text}\n\n`{command}`")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "instant.md").write_text(f"{text}\n\n`{command}`\n")
        return 0
    cases = {k: v for k, v in CASES.items() if not args.only or any(s in k for s in args.only.split(","))}
    cases.setdefault("(a) COPY to a file", CASES["(a) COPY to a file"])
    workdir = Path(env["VAR_DIR"])
    results: dict[str, list] = {name: [] for name in cases}
    for round_ in range(1, args.rounds + 1):
        for name, case in cases.items():
            result = case(env, workdir)
            results[name].append(result)
            print(
                f"round {round_} {name}: {result['rows'] / result['seconds']:,.0f} rows/s, {result['rss_mb']:.0f} MB",
                flush=True,
            )
            for f in workdir.glob("*.out"):
                f.unlink()
    live_results = None if args.no_live else {**live(env, posts=100, notifications=20), **small_beside_big(env)}
    text = table(results, args.rows, live_results) if not args.only else json.dumps(results, indent=1)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    header = f"Benchmark {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — {machine} — medians of {args.rounds} rounds"
    command = f"python bench/run.py --rows {args.rows} --rounds {args.rounds}"
    print(f"\n{header}\n\n{text}\n\n`{command}`")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(f"{header}\n\n{text}\n\n`{command}`\n")
    (out / "latest.json").write_text(
        json.dumps(
            {"results": results, "live": live_results, "rows": args.rows, "rounds": args.rounds, "machine": machine},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
