"""The operations that cross into the outside world: request, cancel and re-enqueue report jobs."""

from __future__ import annotations

import functools
import logging
from typing import Any

import django_rq
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from redis.exceptions import RedisError
from rq import Queue

from .definitions import ParamsInvalid
from .events import job_ended
from .models import ReportJob, Status
from .registry import get_report

logger = logging.getLogger(__name__)
QUEUE_NAME = "reports"


@functools.cache
def reports_queue() -> Queue:
    """The reports queue, one per process: requests reuse its Redis connections (a fresh queue
    opens a new connection, a millisecond of every POST)."""
    return django_rq.get_queue(QUEUE_NAME)


@receiver(setting_changed)
def _forget_queue(setting, **kwargs) -> None:
    if setting == "RQ_QUEUES":
        reports_queue.cache_clear()


class TooManyJobs(Exception):
    pass


class JobConflict(Exception):
    """The job is in a state that does not allow this (409)."""


def request_report(*, user, slug: str, format: str, params: Any = None, enqueue: bool = True) -> ReportJob:
    """Validate a request, record the job and enqueue it once the row is committed.

    Raises NotRegistered (unknown slug), PermissionDenied, ParamsInvalid (bad format or params)
    and TooManyJobs (the user already has the maximum of queued and running jobs). With
    enqueue=False the job is only recorded, for a caller that runs it in the foreground.
    """
    report = get_report(slug)
    if not report.has_permission(user):
        raise PermissionDenied(f"You may not run the {report.get_title()!r} report.")
    if format not in report.get_formats():
        raise ParamsInvalid({"format": [f"Choose one of: {', '.join(report.get_formats())}."]})
    cleaned = report.clean_params(params)
    check_row_cap(report, format, cleaned, user)

    limit = settings.REPORTS_MAX_ACTIVE_JOBS_PER_USER
    with transaction.atomic():
        # Serialise this user's requests so two at once cannot both slip under the limit.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if enqueue and ReportJob.objects.for_user(user).active().count() >= limit:
            raise TooManyJobs(f"You already have {limit} reports queued or running; wait for one to finish.")
        job = ReportJob.objects.create(owner=user, report=slug, format=format, params=report.serialize_params(cleaned))
        if enqueue:
            transaction.on_commit(functools.partial(enqueue_job, job))
    return job


def row_cap(format: str) -> int | None:
    """Formats laid out as a whole (PDF) are refused above a cap, decided before any work."""
    return settings.REPORTS_PDF_MAX_ROWS if format == "pdf" else None


def check_row_cap(report, format: str, cleaned: dict, user) -> None:
    cap = row_cap(format)
    if cap is None:
        return
    rows = report.get_report_queryset(report.serialize_params(cleaned), user).count()
    if rows > cap:
        raise ParamsInvalid({"format": [
            f"{format.upper()} is limited to {cap:,} rows and this report has {rows:,}. "
            "Narrow the filters, or choose CSV or XLSX, which have no limit."
        ]})  # fmt: skip


def enqueue_job(job: ReportJob) -> bool:
    """Put the job on the queue under its deterministic id. Redis being down is not fatal:
    the row stays queued and the sweeper enqueues it again."""
    from .jobs import generate_report

    try:
        reports_queue().enqueue(
            generate_report,
            str(job.pk),
            job_id=job.rq_job_id,
            job_timeout=settings.REPORTS_JOB_TIMEOUT,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
    except RedisError:
        logger.exception("Could not enqueue report job %s; the sweeper will retry.", job.pk)
        return False
    return True


def retry_report(job: ReportJob) -> ReportJob:
    """A new job with the same report, format and parameters (the old one stays as it ended)."""
    if job.is_active or job.status == Status.SUCCEEDED:
        raise JobConflict(f"The job is {job.status}; only failed, cancelled or expired jobs are retried.")
    return request_report(user=job.owner, slug=job.report, format=job.format, params=job.params)


def cancel_report(job: ReportJob) -> ReportJob:
    """A queued job never starts; a running one stops at its next chunk and leaves no file."""
    if not job.transition(Status.CANCELLED):
        job.refresh_from_db()
        raise JobConflict(f"The job is {job.status} and can no longer be cancelled.")
    job_ended(job)
    try:
        rq_job = reports_queue().fetch_job(job.rq_job_id)
        if rq_job is not None and rq_job.get_status() == "queued":
            rq_job.cancel()
    except RedisError:
        pass  # the row says cancelled: the worker will not start it whatever Redis holds
    return job
