"""Kills at random moments of random phases, as a machine, a kernel or a deploy delivers them.

Two workers and the sweeper run as the Procfile runs them, with the default settings (stale window
20 s, a sweep every 10 s). Reports in CSV, XLSX, JSON and Parquet are asked for one after another
while, 40 times, a phase is picked (the job's plan, a segment being written, a segment's queue entry
taken but not yet claimed, the join, or nothing at all) and a fault (the work-horse killed, the
whole worker killed, or a deploy: SIGTERM, then SIGKILL after a grace) is delivered to a worker in
that phase, at a random moment of it. Every job must end succeeded with the bytes of an undisturbed
run, each death cost at most the segment it interrupted, and each recovery (from the fault until
what it interrupted is taken up again) be under 60 s. The table goes to test-output/kills.md.
"""

import random
import statistics
import time
from collections import defaultdict

import pytest
from django.db.models import Q

from reports.models import ReportJob, ReportSegment, SegmentStatus, Status
from shop import demo
from tests.helpers import ROOT, csrf_client, downloaded, kill, post_job, reference, sheet_xml, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
KILLS = 40
FORMATS = ["csv", "xlsx", "json", "parquet"]
PHASES = ["plan", "writing", "taken", "join", "idle"]
FAULTS = ["horse", "worker", "term"]
# Segments of 2,000 rows written at a pace a kill can land in; plans and joins are short, so a phase
# is waited for (up to PHASE_WAIT) and the kill lands at a random moment once it is seen.
ENV = {"REPORTS_SEGMENT_ROWS": 2000, "REPORTS_CHUNK_SIZE": 500, "PACED_SECONDS": 0.02}
PHASE_WAIT = 4.0
RECOVERY_LIMIT = 60


def phase_of(name: str) -> tuple[str, dict]:
    """What the worker `name` is doing now, from the rows: its phase and what a recovery must see."""
    held = ReportJob.objects.filter(status=Status.RUNNING, held_by=name).first()
    if held is not None:
        planned = held.segments.exists()
        return ("join" if planned else "plan"), {"job": held.pk, "attempts": held.attempts}
    segment = ReportSegment.objects.filter(status=SegmentStatus.RUNNING, worker=name).first()
    if segment is not None:
        return "writing", {"segment": segment.pk, "attempts": segment.attempts}
    return "idle", {}


def recovered(phase: str, target: dict) -> bool:
    """Whether what the fault interrupted has been taken up again (or was never lost): a segment claimed
    by another run (or done), a plan made, a job joined."""
    if "segment" in target:
        segment = ReportSegment.objects.get(pk=target["segment"])
        return segment.status == SegmentStatus.DONE or segment.attempts > target["attempts"]
    if "job" in target:
        job = ReportJob.objects.get(pk=target["job"])
        return job.status != Status.RUNNING or (phase == "plan" and job.segments.exists())
    # an entry taken, not claimed: claimed by another run, or done
    if "queued" in target:
        return not ReportSegment.objects.filter(pk=target["queued"], status=SegmentStatus.QUEUED).exists()
    return True


class Stack:
    """Two workers, restarted as a supervisor would, and the sweeper; the jobs asked for so far."""

    def __init__(self, start_worker, client, rng):
        self.start_worker, self.client, self.rng = start_worker, client, rng
        self.jobs: list[tuple[str, str]] = []
        # kills whose recovery has not been seen yet
        self.pending: list[dict] = []
        self.workers = [self.spawn() for _ in range(2)]

    def settle(self) -> bool:
        """Look again at the kills not yet recovered; True when none is left."""
        self.pending = [record for record in self.pending if not settle(record)]
        return not self.pending

    def spawn(self):
        """A new worker and its name once it has registered, recoveries watched meanwhile."""
        from rq import Worker

        from reports.queues import reports_queue

        worker = self.start_worker(**ENV)

        def registered():
            self.settle()
            return next((w.name for w in Worker.all(queue=reports_queue()) if w.pid == worker.pid), None)

        return worker, wait_for(registered, timeout=30, interval=0.02, message="the worker to register")

    def replace(self, index: int) -> None:
        self.workers[index] = self.spawn()

    def keep_busy(self) -> None:
        """At most two reports running or queued at once; a new one of a random format otherwise."""
        self.settle()
        active = ReportJob.objects.filter(status__in=(Status.QUEUED, Status.RUNNING)).count()
        if active < 2:
            fmt = self.rng.choice(FORMATS)
            _, job = post_job(self.client, {"report": "paced-orders", "format": fmt})
            self.jobs.append((job["id"], fmt))


def wait_for_phase(stack: Stack, phase: str) -> tuple[int, str, dict]:
    """A worker in `phase` (the first seen within PHASE_WAIT), else any worker as it is then."""
    deadline = time.monotonic() + PHASE_WAIT
    while time.monotonic() < deadline:
        stack.keep_busy()
        for index, (_, name) in enumerate(stack.workers):
            seen, target = phase_of(name)
            if phase == "taken" and seen == "idle":
                queued = taken_entry(name)
                if queued:
                    return index, "taken", {"queued": queued}
            if seen == phase:
                return index, seen, target
        time.sleep(0.002)
    index = stack.rng.randrange(2)
    return index, *phase_of(stack.workers[index][1])


def taken_entry(name: str) -> int | None:
    """A segment whose queue entry the worker `name` has taken and not yet claimed (RQ's current job)."""
    from rq import Worker

    from reports.queues import reports_queue

    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=reports_queue().connection)
    current = worker and worker.get_current_job_id()
    if not current or "-s" not in current:
        return None
    job_id, _, rest = current.removeprefix("report-").rpartition("-s")
    index = int(rest.split("-")[0])
    row = ReportSegment.objects.filter(job_id=job_id, index=index, status=SegmentStatus.QUEUED).first()
    return row and row.pk


def test_forty_kills_at_random_moments_cost_at_most_their_segment(alice, settings, start_worker, start_sweeper):
    demo.seed(20_000)
    settings.REPORTS_MAX_JOBS_PER_MINUTE = 1000
    # (Parquet's row groups follow the batches read: the reference reads in the workers' batches.)
    same = {"REPORTS_SEGMENT_ROWS": ENV["REPORTS_SEGMENT_ROWS"], "REPORTS_CHUNK_SIZE": ENV["REPORTS_CHUNK_SIZE"]}
    expected = {fmt: reference(alice, "paced-orders", fmt, settings, **same) for fmt in FORMATS}
    rng = random.Random(20261203)
    start_sweeper(every=10, **ENV)
    stack = Stack(start_worker, csrf_client(alice), rng)
    kills = []
    while len(kills) < KILLS:
        stack.keep_busy()
        fault = rng.choice(FAULTS)
        if fault == "worker" and any(k["fault"] == "worker" for k in stack.pending):
            # One lost machine at a time: a second could take the first one's work with it (then the
            # first recovery would hold two stale windows), which says nothing about either.
            fault = rng.choice(["horse", "term"])
        index, phase, target = wait_for_phase(stack, rng.choice(PHASES))
        time.sleep(rng.uniform(0, 0.03))
        worker, _ = stack.workers[index]
        at = time.monotonic()
        if not kill(worker, fault):
            phase, target = "idle", {}
        record = {"fault": fault, "phase": phase, "target": target, "at": at, "wall": time.time(), "recovery": None}
        kills.append(record)
        stack.pending.append(record)
        stack.settle()
        if fault != "horse":
            # what a supervisor does
            stack.replace(index)
    wait_for(
        stack.settle,
        timeout=RECOVERY_LIMIT + 30,
        interval=0.2,
        message="every interrupted run to be taken up again",
    )
    for job_id, fmt in stack.jobs:
        ended = ReportJob.objects.filter(pk=job_id).exclude(status__in=(Status.QUEUED, Status.RUNNING))
        row = wait_for(ended.first, timeout=RECOVERY_LIMIT + 30, message="every job to end")
        assert row.status == Status.SUCCEEDED, (fmt, row.error, row.error_detail)
        data = downloaded(stack.client, job_id)
        if fmt == "xlsx":
            assert sheet_xml(data) == sheet_xml(expected[fmt])
        assert data == expected[fmt], fmt
        # Each death costs at most the one segment it interrupted: a job redoes no more segments than
        # there were kills while it ran.
        alive = (row.created_at.timestamp(), row.finished_at.timestamp())
        deaths = sum(1 for k in kills if alive[0] <= k["wall"] <= alive[1])
        redone = sum(s.attempts - 1 for s in row.segments.filter(~Q(attempts=0)))
        assert redone <= deaths, (fmt, redone, deaths)
    write_table(kills)
    slow = [k for k in kills if k["recovery"] is None or k["recovery"] >= RECOVERY_LIMIT]
    assert not slow, slow


def settle(record: dict) -> bool:
    """Mark the kill recovered (with the time it took) once what it interrupted is taken up again."""
    if record["recovery"] is None and recovered(record["phase"], record["target"]):
        record["recovery"] = time.monotonic() - record["at"]
    return record["recovery"] is not None


def write_table(kills: list[dict]) -> None:
    cells = defaultdict(list)
    for k in kills:
        cells[(k["phase"], k["fault"])].append(k["recovery"])
    lines = ["| phase | fault | kills | recovered | recovery median s | recovery max s |", "|---|---|---|---|---|---|"]
    for (phase, fault), times in sorted(cells.items()):
        done = [t for t in times if t is not None]
        median = f"{statistics.median(done):.1f}" if done else "—"
        worst = f"{max(done):.1f}" if done else "—"
        lines.append(f"| {phase} | {fault} | {len(times)} | {len(done)} | {median} | {worst} |")
    out = ROOT / "test-output" / "kills.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
