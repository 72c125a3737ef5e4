"""The operations that cross into the outside world: request, cancel and retry report jobs."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from . import conf, queues
from .dates import resolve_relative_dates
from .definitions import RequestInvalid, check_rows, instant_max_rows, json_safe, row_cap
from .endings import KEPT, PAGES, end_job
from .events import NOTHING_MATCHES, job_changed
from .models import ACTIVE, RETRYABLE, Delivery, ReportJob, Status
from .pipeline import INSTANT_WRITES
from .queries import last_key
from .registry import get_report
from .runs import enqueue_job


class TooManyJobs(Exception):
    pass


class JobConflict(Exception):
    """The job is in a state that does not allow this (409)."""


def request_report(
    *,
    user,
    slug: str,
    format: str,
    params: Any = None,
    columns: Any = None,
    delivery: str = "auto",
    enqueue: bool = True,
    dates_at: tuple[dt.datetime, dt.tzinfo] | None = None,
    **fields,
) -> ReportJob:
    """Validate a request, record the job and enqueue it once the row is committed.

    Raises NotRegistered (unknown slug), PermissionDenied, RequestInvalid (bad format, params or
    columns) and TooManyJobs (the user has the maximum of queued and running jobs, or asked for too
    many in the last minute). The same request while its job is still queued or running gets that job
    (`job.reused` is then True). With `delivery` "auto", a small report (instant_max_rows) is not
    queued: the job is recorded for its download to write (Delivery.INSTANT); "background" queues
    it whatever its size. With enqueue=False the job is only recorded, for a caller that runs it in
    the foreground. Relative dates ("last month") mean what they do at `dates_at` (a moment and a time
    zone; default: now, in the site's). `fields` are saved on the job (a schedule's run: schedule,
    slot: its own job even while an earlier slot's runs, and even when nothing matches: its file says so).
    """
    scheduled = "schedule" in fields
    columns, params, rows = validate_request(
        user=user, slug=slug, format=format, params=params, columns=columns, dates_at=dates_at
    )
    limit = instant_max_rows(format) if enqueue and delivery == "auto" else 0
    count, upper = count_up_to(rows, limit) if limit else (None, None)
    if enqueue and not scheduled and nothing_matches(rows, count=count):
        raise RequestInvalid({"__all__": [f"{NOTHING_MATCHES} Widen or clear them and try again."]})
    instant = count is not None and count <= limit

    with transaction.atomic():
        # Serialise this user's requests: two at once cannot both slip under the limits, and the
        # second of two identical ones finds the first.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        same = (
            ReportJob.objects.for_user(user)
            .active()
            .filter(delivery=Delivery.BACKGROUND, report=slug, format=format, params=params, columns=columns)
        )
        instant = instant and instant_has_room(user)
        if enqueue and not instant and not scheduled and (same := same.first()):
            # a double click, a second tab, a retried POST: the job already asked for
            same.reused = True
            return same
        check_limits(user, active=enqueue and not instant)
        # its rows are those up to the last key now, as a background run's are when it starts
        if instant:
            fields.update(delivery=Delivery.INSTANT, upper_key=json_safe(upper))
        job = ReportJob.objects.create(owner=user, report=slug, format=format, params=params, columns=columns, **fields)
        if enqueue and not instant:
            # Redis away: the sweeper enqueues it
            transaction.on_commit(functools.partial(enqueue_job, job))
    return job


def validate_request(
    *,
    user,
    slug: str,
    format: str,
    params: Any = None,
    columns: Any = None,
    dates_at: tuple[dt.datetime, dt.tzinfo] | None = None,
) -> tuple[list, dict, QuerySet]:
    """A request checked as request_report does, nothing recorded: (its columns, its params as stored,
    its rows). Raises NotRegistered, PermissionDenied and RequestInvalid."""
    report = get_report(slug)
    if not report.has_permission(user):
        needs = report.describe_permission()
        raise PermissionDenied(f"You may not run the {report.get_title()!r} report: it needs {needs}.")
    if format not in report.get_formats():
        raise RequestInvalid({"format": [f"Choose one of: {', '.join(report.get_formats())}."]})
    columns = report.clean_columns(columns)
    now, zone = dates_at or (timezone.now(), timezone.get_current_timezone())
    cleaned = report.clean_params(resolve_relative_dates(report, params, now, zone), user)
    report.check_request(cleaned, user)
    params = report.serialize_params(cleaned)
    # (a query only if a check below asks)
    rows = report.get_report_queryset(params, user)
    if row_cap(format) is not None:
        check_rows(format, rows.count())
    return columns, params, rows


def instant_has_room(user) -> bool:
    """Whether a small report of this user's may be written by its download: fewer than
    REPORTS_INSTANT_PER_USER of theirs wait for (or are in) their download, and this process writes
    fewer than REPORTS_INSTANT_WRITES_PER_PROCESS. Otherwise it is queued like a big one."""
    waiting = ReportJob.objects.for_user(user).active().filter(delivery=Delivery.INSTANT).count()
    return waiting < conf.REPORTS_INSTANT_PER_USER and INSTANT_WRITES.has_room()


def move_to_queue(job: ReportJob) -> bool:
    """An instant job that its download may not write becomes a queued background job (its owner's
    pages are told); False if it had ended meanwhile."""
    with transaction.atomic():
        if not job.move_to_queue():
            return False
        transaction.on_commit(functools.partial(enqueue_job, job))
    job_changed(job)
    return True


def count_up_to(rows, limit: int) -> tuple[int, Any]:
    """How many rows there are up to the last key now, counted up to one past `limit`, and that key."""
    upper = last_key(rows)
    if upper is None:
        return 0, None
    return rows.filter(pk__lte=upper).order_by()[: limit + 1].count(), upper


def check_limits(user, *, active: bool) -> None:
    """At most REPORTS_MAX_ACTIVE_JOBS_PER_USER queued or running jobs (when `active`), and at most
    REPORTS_MAX_JOBS_PER_MINUTE new jobs a minute, cancelled ones included."""
    limit, rate = conf.REPORTS_MAX_ACTIVE_JOBS_PER_USER, conf.REPORTS_MAX_JOBS_PER_MINUTE
    since = timezone.now() - dt.timedelta(minutes=1)
    # One query: the user's active jobs and those of the last minute, each counted.
    active_jobs, recent = Q(status__in=ACTIVE, delivery=Delivery.BACKGROUND), Q(created_at__gte=since)
    counts = (
        ReportJob.objects.for_user(user)
        .filter(active_jobs | recent)
        .aggregate(active=Count("pk", filter=active_jobs), recent=Count("pk", filter=recent))
    )
    if active and counts["active"] >= limit:
        raise TooManyJobs(f"You already have {limit} reports queued or running; wait for one to finish.")
    if counts["recent"] >= rate:
        raise TooManyJobs(f"You asked for {rate} reports in the last minute; wait a moment before asking again.")


def nothing_matches(queryset, *, count: int | None = None) -> bool:
    """Whether the filters match no row, when the database can tell at once: on PostgreSQL an EXISTS
    given REPORTS_EMPTY_CHECK_MS to answer (a slower one is given up: the run will say it found
    nothing), unless the rows were counted already; elsewhere, or with the setting at 0, it is not asked."""
    limit = conf.REPORTS_EMPTY_CHECK_MS
    if not limit or connection.vendor != "postgresql":
        return False
    if count is not None:
        return count == 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)", [f"{limit}ms"]
            )
            before = cursor.fetchone()[0]
            empty = not queryset.exists()
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
            return empty
    # the time ran out (the savepoint's rollback restores the timeout)
    except DatabaseError:
        return False


def retry_report(job: ReportJob) -> ReportJob:
    """A new job with the same report, format and parameters (the old one stays as it ended)."""
    if job.status not in RETRYABLE:
        raise JobConflict(f"The job is {job.status}; only failed, cancelled or expired jobs are retried.")
    return request_report(
        user=job.owner,
        slug=job.report,
        format=job.format,
        params=job.params,
        columns=job.columns or None,
        delivery="background",
    )


def cancel_report(job: ReportJob, *, by=None) -> ReportJob:
    """A queued job never starts; a running one stops at its next batch and leaves no file.

    The owner's pages are told at once; the owner is notified to keep (a toast, the bell) only when
    someone else (`by`, e.g. staff in the admin) cancelled it: what one did oneself needs no notice.
    """
    # Running segments see the cancel at their next batch and store nothing.
    if not end_job(job, Status.CANCELLED, tell=KEPT if by is not None and by.pk != job.owner_id else PAGES):
        job.refresh_from_db()
        raise JobConflict(f"The job is {job.status} and can no longer be cancelled.")
    # the row says cancelled: no run starts it, whatever Redis holds
    queues.cancel(job.rq_job_id)
    return job
