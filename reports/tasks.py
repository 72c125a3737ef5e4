"""RQ entry points, named by their dotted path in reports.queues. Each takes ids only, loads the rows
and decides how the run goes on: a job's own run plans it and writes its first segment, each
segment's run writes it and, if it was the last, joins them all; otherwise it queues the next. The
work is reports.pipeline; the bookkeeping of runs (claims, heartbeats, failures) reports.runs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied

from . import pipeline, runs, schedules
from .definitions import RequestInvalid
from .endings import fail
from .events import explain_error
from .models import ReportJob, ReportSegment, SegmentStatus
from .runs import Lease

logger = logging.getLogger(__name__)


def run_report(job_id: str) -> None:
    """A job's own run: plan it, write its first segment and queue the others (or join at once)."""
    job = ReportJob.objects.select_related("owner").filter(pk=job_id).first()
    # deleted, cancelled, or already planned
    if job is None or not runs.start(job) or not plan(job):
        return
    segment = runs.claim_next(job)
    runs.dispatch(job)
    if segment is not None and write(segment):
        finish(job)


def run_segment(segment_id: int) -> None:
    segment = runs.claim(segment_id)
    if segment is not None and write(segment):
        finish(segment.job)


def run_join(job_id: str) -> None:
    """Join a job's segments when the run that should have did not (it died, or was never queued)."""
    job = ReportJob.objects.select_related("owner").filter(pk=job_id).first()
    if job is not None and runs.claim_join(job):
        join(job)


def tick_schedules() -> None:
    """The minute's tick, put on the queue by RQ's cron scheduler (reports.queues.cron_scheduler): start
    the runs of the schedules whose slot has come."""
    started = schedules.run_due()
    if started:
        logger.info("Started %s scheduled report%s.", started, "" if started == 1 else "s")


def run_in_foreground(
    job: ReportJob, *, batch_rows: int | None = None, on_progress: pipeline.ProgressCallback | None = None
) -> bool:
    """The whole job in this process (the export_report command, tests): the same plan, segments and
    join, nothing queued. False when the job was no longer queued."""
    if not runs.start(job):
        return False
    if not plan(job):
        job.refresh_from_db()
        return True
    while segment := runs.claim_next(job, states=(SegmentStatus.PENDING, SegmentStatus.QUEUED)):
        if not write(segment, batch_rows=batch_rows, on_progress=on_progress, again=False):
            break
    if runs.claim_join(job):
        join(job, again=False)
    job.refresh_from_db()
    return True


def guarded(
    work: Callable[[Lease], object], lease: Lease, *, job: ReportJob, retry: Callable[..., None], again: bool, what: str
) -> bool:
    """Run `work(lease)` (a plan, a segment's write or a join) while `lease` keeps its row's heartbeat;
    True when it finished. Stopped (the job ended meanwhile): False. A refusal (the owner may no longer
    run the report, or its parameters no longer hold) fails the job at once; any other error is logged
    and, with `again`, handed to `retry(error=…, detail=…)` for another run (up to
    REPORTS_MAX_ATTEMPTS), else fails the job."""
    try:
        with lease:
            work(lease)
    except pipeline.Stopped:
        return False
    except (RequestInvalid, PermissionDenied) as exc:
        fail(job, *explain_error(exc))
        return False
    except Exception as exc:
        logger.exception("%s failed.", what)
        error, detail = explain_error(exc)
        if again:
            retry(error=error, detail=detail)
        else:
            fail(job, error, detail)
        return False
    return True


def plan(job: ReportJob) -> bool:
    return guarded(
        lambda lease: runs.cut_into_segments(job),
        Lease.of_job(job),
        job=job,
        retry=functools.partial(runs.job_run_failed, job, died=False),
        again=True,
        what=f"Planning report job {job.pk}",
    )


def write(segment: ReportSegment, *, again: bool = True, **options: Any) -> bool:
    """Write the segment; True when it is done. A run that raised is given up (and, with `again`,
    the segment queued for another run, up to REPORTS_MAX_ATTEMPTS)."""
    return guarded(
        lambda lease: pipeline.write_segment(segment, lease=lease, **options),
        Lease.of_segment(segment),
        job=segment.job,
        retry=functools.partial(runs.segment_failed, segment, died=False),
        again=again,
        what=f"Report job {segment.job_id}, segment {segment.index}",
    )


def finish(job: ReportJob) -> None:
    """After a segment: join them all if it was the last, else queue the next."""
    if runs.claim_join(job):
        join(job)
    else:
        runs.dispatch(job)


def join(job: ReportJob, *, again: bool = True) -> None:
    """Join the job's segments. A join that raises is run again (with `again`, up to
    REPORTS_MAX_ATTEMPTS runs of the job), or fails the job."""
    guarded(
        lambda lease: pipeline.join_segments(job, lease=lease),
        Lease.of_job(job),
        job=job,
        retry=functools.partial(runs.job_run_failed, job, died=False),
        again=again,
        what=f"Joining report job {job.pk}",
    )
