"""RQ entry points, named by their dotted path in reports.queues. Each takes ids only, loads the rows
and decides how the run goes on: a job's own run plans it and writes its first segment, each
segment's run writes it and, if it was the last, joins them all; otherwise it queues the next. The
work is reports.pipeline; the bookkeeping of runs (claims, heartbeats, failures) reports.batches.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied

from . import batches, pipeline, schedules
from .batches import Lease
from .definitions import ParamsInvalid
from .endings import fail
from .events import explain_error
from .models import ReportJob, ReportSegment, SegmentStatus

logger = logging.getLogger(__name__)


def run_report(job_id: str) -> None:
    """A job's own run: plan it, write its first segment and queue the others (or join at once)."""
    job = ReportJob.objects.select_related("owner").filter(pk=job_id).first()
    # deleted, cancelled, or already planned
    if job is None or not batches.start(job) or not plan(job):
        return
    segment = batches.claim_next(job)
    batches.dispatch(job)
    if segment is not None and write(segment):
        finish(job)


def run_segment(segment_id: int) -> None:
    segment = batches.claim(segment_id)
    if segment is not None and write(segment):
        finish(segment.job)


def run_join(job_id: str) -> None:
    """Join a job's segments when the run that should have did not (it died, or was never queued)."""
    job = ReportJob.objects.select_related("owner").filter(pk=job_id).first()
    if job is not None and batches.claim_join(job):
        join(job)


def tick_schedules() -> None:
    """The minute's tick, put on the queue by RQ's cron scheduler (reports.queues.cron_scheduler): start
    the runs of the schedules whose slot has come."""
    started = schedules.run_due()
    if started:
        logger.info("Started %s scheduled report%s.", started, "" if started == 1 else "s")


def run_in_foreground(job: ReportJob, *, chunk_size: int | None = None, on_progress=None) -> bool:
    """The whole job in this process (the export_report command, tests): the same plan, segments and
    join, nothing queued. False when the job was no longer queued."""
    if not batches.start(job):
        return False
    if not plan(job):
        job.refresh_from_db()
        return True
    while segment := batches.claim_next(job, states=(SegmentStatus.PENDING, SegmentStatus.QUEUED)):
        if not write(segment, chunk_size=chunk_size, on_progress=on_progress, again=False):
            break
    if batches.claim_join(job):
        join(job, again=False)
    job.refresh_from_db()
    return True


def failure(exc: BaseException) -> dict[str, str]:
    error, detail = explain_error(exc)
    return {"error": error, "detail": detail}


def plan(job: ReportJob) -> bool:
    with Lease.of_job(job):
        try:
            batches.plan(job)
        except (ParamsInvalid, PermissionDenied) as exc:
            fail(job, *explain_error(exc))
            return False
        except Exception as exc:
            logger.exception("Planning report job %s failed.", job.pk)
            batches.job_run_failed(job, died=False, **failure(exc))
            return False
    return True


def write(segment: ReportSegment, *, again: bool = True, **options) -> bool:
    """Write the segment; True when it is done. A run that raised is given up (and, with `again`,
    the segment queued for another run, up to REPORTS_MAX_ATTEMPTS)."""
    try:
        with Lease.of_segment(segment) as lease:
            pipeline.write_segment(segment, lease=lease, **options)
    except pipeline.Stopped:
        return False
    except Exception as exc:
        logger.exception("Report job %s, segment %s failed.", segment.job_id, segment.index)
        if again:
            batches.segment_failed(segment, died=False, **failure(exc))
        else:
            fail(segment.job, *explain_error(exc))
        return False
    return True


def finish(job: ReportJob) -> None:
    """After a segment: join them all if it was the last, else queue the next."""
    if batches.claim_join(job):
        join(job)
    else:
        batches.dispatch(job)


def join(job: ReportJob, *, again: bool = True) -> None:
    """Join the job's segments. A join that raises is run again (with `again`, up to
    REPORTS_MAX_ATTEMPTS runs of the job), or fails the job."""
    try:
        with Lease.of_job(job) as lease:
            pipeline.join(job, lease=lease)
    except pipeline.Stopped:
        return
    except Exception as exc:
        logger.exception("Joining report job %s failed.", job.pk)
        if again:
            batches.job_run_failed(job, died=False, **failure(exc))
        else:
            fail(job, *explain_error(exc))
