"""What the reports app tells users: live progress, and how each job ended."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import time

from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import InterfaceError, OperationalError
from django.template.defaultfilters import filesizeformat

from notifications.services import notify

from . import conf
from .definitions import RequestInvalid
from .models import ReportJob, Status
from .registry import NotRegistered
from .writers import FORMATS

logger = logging.getLogger(__name__)
NOTHING_MATCHED = "0 rows — nothing matched the filters"
NOTHING_MATCHES = "Nothing matches these filters: there is nothing to export."
ENDINGS: dict[str, tuple[str, str]] = {
    Status.SUCCEEDED: ("report.ready", "Your report is ready"),
    Status.FAILED: ("report.failed", "Your report failed"),
    Status.CANCELLED: ("report.cancelled", "Your report was cancelled"),
}


class ProgressNotifier:
    """Progress is saved on the row and pushed as `report.progress` at most every `interval` seconds
    per job, and always at the last tick: a commit per batch would cost a worker a tenth of its time.

    Progress is not stored as a notification: it would flood the table, and the row already holds it.
    """

    def __init__(self, interval: float | None = None):
        self.interval = conf.REPORTS_PROGRESS_INTERVAL if interval is None else interval
        self.last_sent = float("-inf")

    def due(self, rows_done: int, rows_total: int | None) -> bool:
        now = time.monotonic()
        if (rows_total is not None and rows_done >= rows_total) or now - self.last_sent >= self.interval:
            self.last_sent = now
            return True
        return False

    def push(self, job: ReportJob) -> None:
        job_changed(job)


def job_changed(job: ReportJob) -> None:
    """Tell the owner's open pages how the job stands now, without a notification to keep (no toast)."""
    notify(job.owner, type="report.progress", payload={"job": job.as_dict()}, store=False)


def job_ended(job: ReportJob, *, stored: bool = True) -> None:
    """Tell the owner how the job ended: stored, so a page opened later still shows it, unless
    `stored` is False (the owner's own cancel), when only the open pages hear of it."""
    type_, title = ENDINGS[job.status]
    notify(
        job.owner,
        type=type_,
        title=title,
        body=describe(job),
        link=job.download_url or "",
        payload={"job": job.as_dict()},
        store=stored,
    )
    maybe_email(job, title)


def describe(job: ReportJob) -> str:
    name = f"{job.report_title} · {FORMATS[job.format].label}" if job.format in FORMATS else job.report_title
    if job.status == Status.SUCCEEDED and not job.rows_done:
        return f"{name}: {NOTHING_MATCHED}."
    if job.status == Status.SUCCEEDED:
        return f"{name}: {job.rows_done:,} rows, {filesizeformat(job.file_size or 0)}."
    if job.status == Status.FAILED:
        return f"{name}: {job.error}"
    return f"{name} was cancelled."


def describe_error(exc: BaseException) -> str:
    """An exception as the owner reads it in the job's error (explain_error's first half)."""
    return explain_error(exc)[0]


def explain_error(exc: BaseException) -> tuple[str, str]:
    """(what the owner reads, what staff read in the admin). A refusal is said as it is, with no
    detail; anything else is "an error on our side" with a reference, and its text (which may name
    tables, paths or hosts) is for staff and the log only."""
    if isinstance(exc, RequestInvalid):
        return " ".join(message for messages in exc.errors.values() for message in messages), ""
    if isinstance(exc, PermissionDenied) or getattr(exc, "plain", False):
        return str(exc), ""
    if isinstance(exc, NotRegistered):
        return f"There is no {str(exc)!r} report any more.", ""
    reference = secrets.token_hex(4)
    message = str(exc).strip()
    detail = f"[{reference}] {type(exc).__name__}: {message}" if message else f"[{reference}] {type(exc).__name__}"
    logger.error("Report error %s", detail)
    cause = outage(exc)
    if cause:
        plain = f"The report could not be written: {cause} (reference {reference}). Ask for it again in a few minutes"
    else:
        plain = (
            f"The report could not be written because of an error on our side (reference {reference}). Ask for it again"
        )
    return f"{plain}; if it fails again, give the reference to an administrator.", detail


def outage(exc: BaseException) -> str | None:
    """The part of the system an error says was out of reach or full, in the owner's words (a
    passing state: asking again later may work), or None."""
    # (Polars raises an OSError with no errno, saying it: "No space left on device (os error 28)".)
    full = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, OSError) and (exc.errno in full or any(os.strerror(e) in str(exc) for e in full)):
        return "the disk it is written on was full"
    if isinstance(exc, (OperationalError, InterfaceError)):
        return "the database could not be reached"
    # botocore and what it uses (urllib3): the S3 storage answered with an error or not at all.
    if type(exc).__module__.partition(".")[0] in ("botocore", "urllib3", "s3transfer"):
        return "the file storage answered with an error or not at all"
    return None


def maybe_email(job: ReportJob, title: str) -> None:
    """Also e-mail the owner when a job ran longer than REPORTS_EMAIL_AFTER_SECONDS, or was a
    schedule's run (nobody waits for it on a page); off when the setting is unset."""
    threshold = conf.REPORTS_EMAIL_AFTER_SECONDS
    if threshold is None or not job.owner.email:
        return
    took = (job.finished_at - job.started_at).total_seconds() if job.started_at and job.finished_at else None
    if not job.schedule_id and (took is None or took < threshold):
        return
    link = job.download_url
    body = describe(job) + (f"\n\nDownload: {conf.REPORTS_SITE_URL.rstrip('/')}{link}" if link else "")
    try:
        send_mail(title, body, None, [job.owner.email])
    # the notification is stored and pushed already; mail is a bonus
    except Exception:
        logger.warning("Could not e-mail %s about report job %s.", job.owner.email, job.pk, exc_info=True)
