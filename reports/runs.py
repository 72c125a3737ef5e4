"""The runs of a report: its plan, who runs what, heartbeats, deaths, retries, the join.

Words (one thing each, here and in every module):
- segment: one key range of a job's rows, `after < pk <= upper_key` (a ReportSegment row), written
  into one segment object; the unit of work, of retry and of distribution.
- run: one RQ task's go at a segment (a segment's run) or at the job itself (the job's own run:
  plan, then join); `attempts` counts them.
- lease: a run's hold on its row, kept by a heartbeat thread (Lease); a run whose lease is lost stops.
- join: putting a job's segment objects together into its one file (reports.pipeline.join_segments).
- batch: the rows read and formatted at a time (reports.queries); a spool file: a run's file on
  its worker's disk (reports.files); delivery: how a file reaches its owner (models.Delivery).

The plan cuts the rows `pk <= upper_key` (the last key when the job starts) into key ranges that one
worker writes in about REPORTS_SEGMENT_SECONDS (or of REPORTS_SEGMENT_ROWS rows), stored as
ReportSegment rows. A segment is run by one RQ task at a time:
a run claims it with a conditional UPDATE (the attempt number goes up), keeps its heartbeat fresh
from a thread, and records it done with its object. A run that dies is found at once by its worker
(reports.worker) or, when the whole worker died, by its stale heartbeat (reports.sweeper); the
segment is queued again, alone, until REPORTS_MAX_ATTEMPTS runs have failed it, which fails the job.
A job keeps at most REPORTS_SEGMENTS_IN_FLIGHT (default: as many as there are workers) segments
queued or running, queueing the next as one ends, so other reports never wait behind a big one.
The job's own run (planning, then joining the segments) holds the job row the same way (`held_by`).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import socket
import threading

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from . import conf, queues
from .definitions import RequestInvalid, check_rows, json_safe
from .endings import fail
from .models import ReportJob, ReportSegment, SegmentStatus, Status
from .queries import key_cuts, last_key
from .writers import FORMATS
from .writers.base import cut_positions

logger = logging.getLogger(__name__)


def worker_name() -> str:
    """Who runs this: the RQ worker (its name, set in the work-horse), or this process."""
    return os.environ.get("RQ_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}"


# -- The job's own run: start and plan ---------------------------------------------------------------


def start(job: ReportJob) -> bool:
    """Take the job for its own run: a queued job starts; a running one without a plan (its planning
    run died) is planned again. False when there is nothing to do (cancelled, ended, planned)."""
    now = timezone.now()
    name = worker_name()
    if job.transition(Status.RUNNING, attempts=F("attempts") + 1, error="", held_by=name, heartbeat_at=now):
        job.refresh_from_db()
        return True
    unplanned = ~Exists(ReportSegment.objects.filter(job=OuterRef("pk")))
    if (
        ReportJob.objects.filter(pk=job.pk, status=Status.RUNNING, held_by="")
        .filter(unplanned)
        .update(held_by=name, heartbeat_at=now)
    ):
        job.refresh_from_db()
        return True
    return False


def cut_into_segments(job: ReportJob) -> None:
    """Cut the job's rows into segments (rows_total, upper_key); raises RequestInvalid (over a format's
    cap) or PermissionDenied (the owner may no longer run the report)."""
    # (RequestInvalid if a chosen column is no longer declared)
    report = job.layout().report
    if not report.has_permission(job.owner):
        raise PermissionDenied(
            f"{job.owner} may no longer run the {report.get_title()!r} report: it needs {report.describe_permission()}."
        )
    if job.format not in report.get_formats():
        raise RequestInvalid({"format": [f"The report is no longer offered as {job.format}."]})
    queryset = report.get_report_queryset(job.params, job.owner)
    # Rows inserted after this moment with a greater key are left out whole, never half-included.
    upper_key = last_key(queryset)
    total = 0 if upper_key is None else queryset.filter(pk__lte=upper_key).count()
    # the rows may have grown since it was asked for
    check_rows(job.format, total)
    writer_class = FORMATS[job.format].writer_class
    every = max(total, 1) if writer_class.laid_out_whole else segment_rows(job)
    positions = cut_positions(total, every, writer_class.sheet_rows)
    keys = [json_safe(key) for key in key_cuts(queryset, upper_key, positions)]
    counts = [end - start for start, end in itertools.pairwise([0, *positions, total])]
    segments = [
        ReportSegment(job=job, index=i, after=after, upper_key=end, rows_planned=count)
        for i, (after, end, count) in enumerate(zip([None, *keys], [*keys, json_safe(upper_key)], counts, strict=True))
    ]
    with transaction.atomic():
        # one plan, even if two runs got here
        ReportJob.objects.select_for_update().filter(pk=job.pk).first()
        if not job.segments.exists():
            ReportSegment.objects.bulk_create(segments)
            job.update_if_running(rows_total=total, rows_done=0, upper_key=json_safe(upper_key), held_by="")
    logger.info("Report job %s: %s rows in %s segments.", job.pk, total, len(segments))


def segment_rows(job: ReportJob) -> int:
    """Rows per segment: REPORTS_SEGMENT_ROWS if set, else what one worker writes in about
    REPORTS_SEGMENT_SECONDS in this format (its measured speed: see the benchmark)."""
    if conf.REPORTS_SEGMENT_ROWS:
        return conf.REPORTS_SEGMENT_ROWS
    speed = FORMATS[job.format].writer_class.rows_per_second
    return max(1000, int(round(speed * conf.REPORTS_SEGMENT_SECONDS, -3)))


# -- Runs of segments ----------------------------------------------------------------------------


def claim(segment_id: int, *, states=(SegmentStatus.QUEUED,)) -> ReportSegment | None:
    """Take the segment for a run of this worker, if it is in one of `states` and its job is running."""
    claimed = ReportSegment.objects.filter(pk=segment_id, status__in=states, job__status=Status.RUNNING).update(
        status=SegmentStatus.RUNNING,
        attempts=F("attempts") + 1,
        worker=worker_name(),
        heartbeat_at=timezone.now(),
        rows_done=0,
        error="",
    )
    return ReportSegment.objects.select_related("job__owner").get(pk=segment_id) if claimed else None


def claim_next(job: ReportJob, *, states=(SegmentStatus.PENDING,)) -> ReportSegment | None:
    """The job's next segment in one of `states`, claimed by this worker (None when there is none)."""
    for segment_id in job.segments.filter(status__in=states).order_by("index").values_list("pk", flat=True):
        segment = claim(segment_id, states=states)
        if segment is not None:
            return segment
    return None


def dispatch(job: ReportJob) -> None:
    """Queue the job's next pending segments, keeping at most REPORTS_SEGMENTS_IN_FLIGHT (by default,
    as many as there are workers) queued or running; once all are done and nobody joins them, queue
    the join; a job not planned yet (its planning run died) gets its own run again."""
    limit = conf.REPORTS_SEGMENTS_IN_FLIGHT or queues.worker_count()
    with transaction.atomic():
        if ReportJob.objects.select_for_update().filter(pk=job.pk, status=Status.RUNNING).first() is None:
            return
        segments = job.segments.all()
        # not planned yet (its planning run died): plan it
        if not segments.exists():
            transaction.on_commit(functools.partial(enqueue_job, job))
            return
        if not segments.exclude(status=SegmentStatus.DONE).exists():
            if ReportJob.objects.filter(pk=job.pk, held_by="").exists():
                transaction.on_commit(functools.partial(enqueue_join, job))
            return
        room = limit - segments.in_flight().count()
        ids = list(segments.filter(status=SegmentStatus.PENDING).order_by("index").values_list("pk", flat=True)[:room])
        ReportSegment.objects.filter(pk__in=ids).update(status=SegmentStatus.QUEUED, queued_at=timezone.now())
        for segment in ReportSegment.objects.filter(pk__in=ids):
            transaction.on_commit(functools.partial(enqueue_segment, segment))


def enqueue_segment(segment: ReportSegment) -> bool:
    return queues.enqueue("run_segment", segment.pk, rq_job_id=segment.rq_job_id)


def enqueue_job(job: ReportJob) -> bool:
    """Queue the job's own run (it plans, writes what it can and joins); remember if Redis was away.
    It goes first in line, before the queued segments of jobs already running: a newcomer waits for one
    segment to end, however many big reports are under way."""
    enqueued = queues.enqueue("run_report", str(job.pk), rq_job_id=job.rq_job_id, at_front=True)
    # (a new job is not waiting: nothing to write when enqueued)
    if job.waiting_for_queue == enqueued:
        ReportJob.objects.filter(pk=job.pk, waiting_for_queue=enqueued).update(waiting_for_queue=not enqueued)
        job.waiting_for_queue = not enqueued
    return enqueued


def enqueue_join(job: ReportJob) -> bool:
    return queues.enqueue("run_join", str(job.pk), rq_job_id=f"{job.rq_job_id}-join")


def claim_join(job: ReportJob) -> bool:
    """The run that finds every segment done and nobody joining them takes the join."""
    # Planned (every plan has a segment, an empty report too), and every segment done.
    planned = Exists(ReportSegment.objects.filter(job=OuterRef("pk")))
    undone = Exists(ReportSegment.objects.filter(job=OuterRef("pk")).exclude(status=SegmentStatus.DONE))
    if (
        ReportJob.objects.filter(pk=job.pk, status=Status.RUNNING, held_by="")
        .filter(planned, ~undone)
        .update(held_by=worker_name(), heartbeat_at=timezone.now())
    ):
        job.refresh_from_db()
        return True
    return False


# -- Failures ------------------------------------------------------------------------------------


def segment_failed(segment: ReportSegment, *, died: bool, error: str = "", detail: str = "") -> None:
    """A run of the segment ended without it: queue it again at once, alone, or fail the job once
    REPORTS_MAX_ATTEMPTS runs have."""
    again = segment.attempts < conf.REPORTS_MAX_ATTEMPTS
    if not ReportSegment.objects.filter(pk=segment.pk, status=SegmentStatus.RUNNING, attempts=segment.attempts).update(
        status=SegmentStatus.QUEUED if again else SegmentStatus.FAILED,
        queued_at=timezone.now(),
        rows_done=0,
        heartbeat_at=None,
        error=detail or error,
        last_failure="died" if died else "raised",
    ):
        # another run has it already, or the job ended
        return
    job = segment.job
    logger.warning(
        "Report job %s, segment %s, run %s %s%s.",
        job.pk,
        segment.index,
        segment.attempts,
        "died" if died else "failed",
        "" if again else ": giving up",
    )
    if again:
        job.sum_progress()
        enqueue_segment(segment)
    else:
        fail(job, died_message(segment.attempts) if died else error, detail)


def job_run_failed(job: ReportJob, *, died: bool, error: str = "", detail: str = "") -> None:
    """The job's own run (planning or joining) ended without finishing: run it again, or fail the job."""
    if not ReportJob.objects.filter(pk=job.pk, status=Status.RUNNING, held_by=job.held_by).update(
        held_by="", heartbeat_at=None, attempts=F("attempts") + 1
    ):
        return
    job.refresh_from_db()
    if job.attempts > conf.REPORTS_MAX_ATTEMPTS:
        fail(job, died_message(job.attempts - 1) if died else error, detail)
    elif job.segments.exists():
        enqueue_join(job)
    else:
        enqueue_job(job)


RQ_JOB_ID = re.compile(r"^report-(?P<job>[0-9a-f-]{36})(?:-s(?P<index>\d+))?-a\d+(?P<join>-join)?$")


def entry_died(rq_job_id: str) -> None:
    """The work-horse running the RQ job `rq_job_id` died before the run claimed its row (or a claimed
    row was released by worker_died): the row is queued again at once, under the id its next run has."""
    match = RQ_JOB_ID.match(rq_job_id)
    if match is None:
        return
    job = ReportJob.objects.select_related("owner").filter(pk=match["job"]).first()
    if job is None:
        return
    if match["index"] is not None:
        segment = job.segments.filter(index=int(match["index"]), status=SegmentStatus.QUEUED).first()
        if segment is not None and segment.rq_job_id == rq_job_id and job.status == Status.RUNNING:
            queues.forget(rq_job_id)
            enqueue_segment(segment)
    elif job.status == Status.QUEUED and job.rq_job_id == rq_job_id:
        queues.forget(rq_job_id)
        enqueue_job(job)
    elif job.status == Status.RUNNING and not job.held_by:
        dispatch(job)


def worker_died(name: str) -> None:
    """Everything the worker `name` was running died with it (its work-horse was killed)."""
    for segment in ReportSegment.objects.filter(worker=name, status=SegmentStatus.RUNNING).select_related("job__owner"):
        segment_failed(segment, died=True)
    for job in ReportJob.objects.filter(held_by=name, status=Status.RUNNING).select_related("owner"):
        job_run_failed(job, died=True)


def died_message(times: int) -> str:
    return (
        f"The worker died {times} time{'s' if times != 1 else ''} while writing this report — it may need more memory."
    )


# -- Heartbeats ----------------------------------------------------------------------------------


class Lease:
    """While a run works, a thread keeps its row's heartbeat fresh; `lost` turns true when the row no
    longer says the run holds it (the job was cancelled or failed, or the run was given up for dead)."""

    def __init__(self, rows):
        # a queryset of the held row, filtered on what holding it means
        self.rows = rows
        self.lost = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="reports-heartbeat", daemon=True)

    @classmethod
    def of_segment(cls, segment: ReportSegment) -> Lease:
        return cls(
            ReportSegment.objects.filter(
                pk=segment.pk, status=SegmentStatus.RUNNING, attempts=segment.attempts, job__status=Status.RUNNING
            )
        )

    @classmethod
    def of_job(cls, job: ReportJob) -> Lease:
        return cls(ReportJob.objects.filter(pk=job.pk, status=Status.RUNNING, held_by=job.held_by))

    def __enter__(self) -> Lease:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def beat(self) -> None:
        try:
            while not self.stop.wait(conf.REPORTS_HEARTBEAT_SECONDS):
                try:
                    self.lost = self.lost or not self.rows.update(heartbeat_at=timezone.now())
                # the database is away: the run notices when it saves progress
                except DatabaseError:
                    logger.warning("Could not save a heartbeat.", exc_info=True)
                    close_old_connections()
        finally:
            # this thread's own connection
            connection.close()
