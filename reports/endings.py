"""Ending a job: the one function every path goes through (a run that joined, failed or was given
up, a cancel, an instant download written or abandoned, a file expired, a schedule's run that
could not start).

The move is a conditional UPDATE (ReportJob.transition): of two paths racing to end a job, one
wins and the other is told so. After it, always in this order: the segments not written stop, the
segment objects are deleted, and the owner hears of it once the transaction commits.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import transaction

from .events import job_changed, job_ended
from .files import discard_segment_files
from .models import Delivery, ReportJob, Status

# How the owner hears of the ending: a notification that is kept (a toast, the bell, maybe an
# e-mail); the ending said to the open pages only (one's own cancel); the job's row updated on the
# open pages, no toast; or nothing (the download itself was the answer, or the file expired).
KEPT, PAGES, ROW, SILENT = "kept", "pages", "row", "silent"


def end_job(job: ReportJob, status: str, *, tell: str = KEPT, **fields: Any) -> bool:
    """Move the job to `status` (saving `fields` with it) and clean up after it; False when it had
    ended already, or may not move there."""
    if not job.transition(status, **fields):
        return False
    # An instant job has no segments (it is written in its download); an expired one's objects went
    # when it succeeded, and a joined job's segments are all written.
    if job.delivery != Delivery.INSTANT and status != Status.EXPIRED:
        if status != Status.SUCCEEDED:
            job.stop_segments()
        discard_segment_files(job)
    if tell != SILENT:
        transaction.on_commit(functools.partial(_tell, job, tell))
    return True


def fail(job: ReportJob, error: str, detail: str = "") -> bool:
    """End the job failed: `error` for its owner, `detail` for staff (reports.events.explain_error)."""
    return end_job(job, Status.FAILED, error=error, error_detail=detail, held_by="")


def _tell(job: ReportJob, tell: str) -> None:
    if tell == ROW:
        job_changed(job)
    else:
        job_ended(job, stored=tell == KEPT)
