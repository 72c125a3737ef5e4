"""Find jobs whose queue entry or worker was lost, from the rows (the truth), and put them right."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone
from rq.registry import StartedJobRegistry

from .events import job_ended
from .files import delete_file
from .models import ReportJob, Status
from .services import enqueue_job, reports_queue

logger = logging.getLogger(__name__)
LIVE_RQ_STATES = {"queued", "started", "deferred", "scheduled"}


def sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-enqueue queued rows Redis lost; requeue or fail running rows whose worker died."""
    now = now or timezone.now()
    stale_before = now - dt.timedelta(seconds=settings.REPORTS_STALE_AFTER_SECONDS)
    queue = reports_queue()
    StartedJobRegistry(queue=queue).cleanup()  # moves jobs of dead workers out of "started"
    counts = {"requeued": 0, "failed": 0}

    def alive(*rq_job_ids: str) -> bool:
        for rq_job_id in rq_job_ids:
            rq_job = queue.fetch_job(rq_job_id)
            if rq_job is not None and rq_job.get_status() in LIVE_RQ_STATES:
                return True
        return False

    for job in ReportJob.objects.filter(status=Status.QUEUED, updated_at__lt=stale_before):
        if not alive(job.rq_job_id) and enqueue_job(job):
            counts["requeued"] += 1
    for job in ReportJob.objects.filter(status=Status.RUNNING, updated_at__lt=stale_before):
        # A split job's parts wait in the queue before its join: the join is alive while they are.
        if alive(job.rq_job_id, job.rq_join_id):
            continue  # a long chunk, not a dead worker
        if job.attempts < settings.REPORTS_MAX_ATTEMPTS:
            if job.transition(Status.QUEUED, rows_done=0) and enqueue_job(job):
                counts["requeued"] += 1
        elif job.transition(Status.FAILED, error=f"The worker stopped {job.attempts} times while running it."):
            job_ended(job)
            counts["failed"] += 1
    return counts


def expire_files(*, now: dt.datetime | None = None) -> int:
    """Delete files older than REPORTS_RETENTION_HOURS from the storage; their jobs become `expired`."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=settings.REPORTS_RETENTION_HOURS)
    expired = 0
    for job in ReportJob.objects.filter(status=Status.SUCCEEDED, finished_at__lt=cutoff):
        name = job.file.name
        if job.transition(Status.EXPIRED, file=""):
            delete_file(name)
            expired += 1
    return expired
