"""The periodic watch over the rows (the truth): runs whose worker died, queue entries Redis lost,
files past their retention, and whatever killed runs left on disk or in the storage.

Each step stands alone: with Redis away, the steps that need it wait for the next sweep while the
others go on, and the command that repeats them (sweep_reports --every) never exits on a lost
connection (see reports.management.commands.sweep_reports).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from django.db.models import Q
from django.utils import timezone

from . import conf, queues, runs
from .endings import ROW, SILENT, end_job
from .files import SEGMENT_OBJECT, SPOOL_NAME, delete_file, reports_storage, spool_dir
from .models import Delivery, ReportDownload, ReportJob, ReportSegment, SegmentStatus, Status

logger = logging.getLogger(__name__)
SEGMENTS = "segments"
INSTANT_WAIT = dt.timedelta(minutes=15)


def stale_before(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(seconds=conf.REPORTS_STALE_AFTER_SECONDS)


def take_over_dead_runs(now: dt.datetime) -> int:
    """Runs whose heartbeat stopped (their whole worker died, or its machine): their segment goes
    back on the queue (or the job fails after REPORTS_MAX_ATTEMPTS runs); a dead plan or join runs again."""
    dead = 0
    running = ReportSegment.objects.filter(status=SegmentStatus.RUNNING, job__status=Status.RUNNING)
    for segment in running.filter(Q(heartbeat_at__lt=stale_before(now)) | Q(heartbeat_at=None)).select_related(
        "job__owner"
    ):
        runs.segment_failed(segment, died=True)
        dead += 1
    held = ReportJob.objects.filter(status=Status.RUNNING).exclude(held_by="")
    for job in held.filter(Q(heartbeat_at__lt=stale_before(now)) | Q(heartbeat_at=None)).select_related("owner"):
        runs.job_run_failed(job, died=True)
        dead += 1
    return dead


def requeue_lost(now: dt.datetime) -> int:
    """Rows that should be on the queue and are not (Redis was away when they were queued, or lost
    them): queued again. Running jobs get their next segments or their join queued. Needs Redis."""
    grace = stale_before(now)
    requeued = 0
    background = ReportJob.objects.filter(delivery=Delivery.BACKGROUND)
    for job in background.filter(status=Status.QUEUED, created_at__lt=grace):
        if lost(job.rq_job_id) and runs.enqueue_job(job):
            requeued += 1
    queued = ReportSegment.objects.filter(status=SegmentStatus.QUEUED, queued_at__lt=grace, job__status=Status.RUNNING)
    for segment in queued:
        if lost(segment.rq_job_id) and runs.enqueue_segment(segment):
            requeued += 1
    for job in background.filter(status=Status.RUNNING, held_by="", updated_at__lt=grace):
        runs.dispatch(job)
    return requeued


def lost(rq_job_id: str) -> bool:
    """Whether the queue entry of a row that has waited the stale window is lost: Redis dropped it, or
    a worker took it and died before it claimed its row. A lost one is taken out of the dead worker's
    hands, to be queued again."""
    if queues.is_live(rq_job_id):
        return False
    queues.forget(rq_job_id)
    return True


def end_unfetched(now: dt.datetime) -> int:
    """Small reports are written by their download: one not fetched within INSTANT_WAIT (a client that
    never came for it) ends failed, and so does one still being written after the stale window (its
    web process died: a write takes seconds, and the job ends before its bytes are sent)."""
    ended, minutes = 0, int(INSTANT_WAIT.total_seconds() // 60)
    instant = ReportJob.objects.filter(delivery=Delivery.INSTANT).select_related("owner")
    reasons = {
        f"Not downloaded within {minutes} minutes. Ask for it again.": instant.filter(
            status=Status.QUEUED, updated_at__lt=now - INSTANT_WAIT
        ),
        "The download stopped while the report was being written. Ask for it again.": instant.filter(
            status=Status.RUNNING, updated_at__lt=stale_before(now)
        ),
    }
    for error, jobs in reasons.items():
        for job in jobs:
            if end_job(job, Status.FAILED, tell=ROW, error=error):
                ended += 1
    return ended


def expire_files(now: dt.datetime | None = None) -> int:
    """Delete files older than REPORTS_RETENTION_HOURS from the storage; their jobs become `expired`."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=conf.REPORTS_RETENTION_HOURS)
    expired = 0
    for job in ReportJob.objects.filter(status=Status.SUCCEEDED, finished_at__lt=cutoff):
        name = job.file.name
        if end_job(job, Status.EXPIRED, tell=SILENT, file=""):
            delete_file(name)
            expired += 1
    return expired


def prune_audit(now: dt.datetime) -> int:
    """Delete download records older than REPORTS_AUDIT_RETENTION_DAYS."""
    cutoff = now - dt.timedelta(days=conf.REPORTS_AUDIT_RETENTION_DAYS)
    return ReportDownload.objects.filter(at__lt=cutoff).delete()[0]


def clean_spool(now: dt.datetime | None = None, *, min_age: float | None = None) -> tuple[int, int]:
    """Remove the spool files of runs that are not running anywhere (killed runs leave them): (files,
    bytes). A file whose run the rows say is live is kept, whatever its age; others are removed once
    `min_age` seconds old (default: REPORTS_STALE_AFTER_SECONDS; a worker starting uses 0)."""
    now = now or timezone.now()
    min_age = conf.REPORTS_STALE_AFTER_SECONDS if min_age is None else min_age
    removed = size = 0
    # Only files named as runs name them: whatever else is in the folder is not ours to delete.
    for path in spool_dir().glob("*") if spool_dir().exists() else ():
        try:
            stat = path.stat()
        # its run just finished
        except FileNotFoundError:
            continue
        if not SPOOL_NAME.match(path.name) or now.timestamp() - stat.st_mtime < min_age or spool_run_is_live(path):
            continue
        path.unlink(missing_ok=True)
        removed, size = removed + 1, size + stat.st_size
    if removed:
        logger.info("Removed %s spool files of dead runs (%s bytes).", removed, size)
    return removed, size


def spool_run_is_live(path: Path) -> bool:
    match = SPOOL_NAME.match(path.name)
    if match is None:
        return False
    job, attempt = uuid.UUID(match["job"]), int(match["attempt"])
    if match["segment"] is not None:
        return ReportSegment.objects.filter(
            job_id=job, index=int(match["segment"]), attempts=attempt, status=SegmentStatus.RUNNING
        ).exists()
    return ReportJob.objects.filter(pk=job, attempts=attempt, status=Status.RUNNING).exclude(held_by="").exists()


def clean_storage(now: dt.datetime) -> int:
    """Delete segment objects nobody will read: of jobs that ended or were deleted, and of runs that
    lost their segment to another (a run's object is named after it: segments/<job>/<index>-a<n>.seg)."""
    storage = reports_storage()
    try:
        job_dirs, _ = storage.listdir(SEGMENTS)
    except FileNotFoundError:
        return 0
    removed = 0
    # Only folders and objects named as runs name them (reports.files.segment_name): nothing else there is ours.
    for job_id in filter(is_uuid, job_dirs):
        job = ReportJob.objects.filter(pk=job_id).first()
        kept = set(job.segments.exclude(file="").values_list("file", flat=True)) if job else set()
        _, names = storage.listdir(f"{SEGMENTS}/{job_id}")
        for name in filter(SEGMENT_OBJECT.match, names):
            path = str(PurePosixPath(SEGMENTS, job_id, name))
            if path in kept or (job and job.is_active and storage.get_modified_time(path) >= stale_before(now)):
                # recorded, or just stored by a run that records it next
                continue
            storage.delete(path)
            removed += 1
    return removed


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def sweep(now: dt.datetime | None = None) -> dict[str, int]:
    """Every step once; a step that cannot reach Redis or the database is logged and left for next time."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    steps: dict[str, Callable[[dt.datetime], int]] = {
        "taken_over": take_over_dead_runs,
        "requeued": requeue_lost,
        "expired": expire_files,
        "instant_unfetched": end_unfetched,
        "downloads_pruned": prune_audit,
        "segment_objects_removed": clean_storage,
        "spool_files_removed": lambda now: clean_spool(now)[0],
    }
    for name, step in steps.items():
        try:
            counts[name] = step(now)
        # Redis, the database or the storage away: the next sweep tries again
        except Exception:
            logger.warning("Sweep step %s failed; trying again next time.", name, exc_info=True)
            counts[name] = -1
    return counts
