from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Subquery, Sum
from django.urls import reverse
from django.utils import timezone

from .files import reports_storage
from .registry import NotRegistered, get_report

if TYPE_CHECKING:
    from .definitions import Layout, Report


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Ready"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


# The only legal moves. (A worker that dies takes a segment with it, not the job: the job stays running.)
TRANSITIONS: dict[str, set[str]] = {
    Status.QUEUED: {Status.RUNNING, Status.CANCELLED, Status.FAILED},
    Status.RUNNING: {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED},
    Status.SUCCEEDED: {Status.EXPIRED},
    Status.FAILED: set(),
    Status.CANCELLED: set(),
    Status.EXPIRED: set(),
}
ACTIVE = (Status.QUEUED, Status.RUNNING)
# a retry makes a new job with the same request
RETRYABLE = (Status.FAILED, Status.CANCELLED, Status.EXPIRED)


def title_of(slug: str) -> str:
    """A report's title, or its slug if the report has since been removed."""
    try:
        return get_report(slug).get_title()
    except NotRegistered:
        return slug


class IllegalTransition(Exception):
    pass


class ReportJobQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(owner=user)

    def active(self):
        return self.filter(status__in=ACTIVE)


class Delivery(models.TextChoices):
    """How a job's file reaches its owner. A request asks for "auto" (instant when small enough) or
    "background"; the job records the delivery it got."""

    # queued, written by workers, stored, then downloaded
    BACKGROUND = "background", "In the background"
    # small: written by the web process into the download itself, not stored
    INSTANT = "instant", "At once"


class ReportJob(models.Model):
    """One request for a report, and the truth about it: Redis, the websocket and the files are how
    it is carried out and told, this row is what happened.

    - `owner`, `report` (a slug), `format`, `params` (the cleaned filters, as JSON), `columns` (the
      chosen ones in order; empty: all), `delivery` (background, or instant: written by its download),
      `schedule` and `slot` for a schedule's run.
    - `status` moves only by `transition()` (a conditional UPDATE along TRANSITIONS): queued →
      running → succeeded, failed or cancelled (a queued one may fail or be cancelled too, and an
      instant one go back to queued: `move_to_queue`); succeeded → expired once its file is deleted.
      Every ending goes through `reports.endings.end_job`.
    - Progress and result: `rows_done`, `rows_total`, `upper_key` (the last key when it started: rows
      added later are left out whole), `file`, `file_size`; `error` for the owner, `error_detail` for
      staff.
    - Runs: `attempts` (of its plan and join), `held_by` and `heartbeat_at` (the worker planning or
      joining it now), `waiting_for_queue` (accepted while Redis was away); its segments are
      `ReportSegment` rows.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_jobs")
    report = models.SlugField(max_length=100)
    format = models.CharField(max_length=20)
    params = models.JSONField(default=dict, blank=True)
    columns = models.JSONField(default=list, blank=True, help_text="The chosen columns in order (empty: all).")
    delivery = models.CharField(max_length=10, choices=Delivery, default=Delivery.BACKGROUND)
    schedule = models.ForeignKey(
        "ReportSchedule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="runs",
        help_text="The schedule this run is of, if any.",
    )
    slot = models.DateTimeField(null=True, blank=True, help_text="The schedule's slot this run is for.")
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED, db_index=True)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(null=True, blank=True)
    upper_key = models.JSONField(null=True, blank=True, help_text="The last key of the report's rows when it started.")
    file = models.FileField(storage=reports_storage, max_length=500, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_detail = models.TextField(blank=True, help_text="The error's technical text, for staff only.")
    attempts = models.PositiveIntegerField(default=0, help_text="Runs of the job's own task (plan, join).")
    waiting_for_queue = models.BooleanField(default=False, help_text="Accepted while the queue was unreachable.")
    held_by = models.CharField(max_length=200, blank=True, help_text="The worker planning or joining the job now.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of the plan or join.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReportJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]
        # a schedule's slot runs once, however many schedulers saw it come
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "slot"],
                condition=models.Q(schedule__isnull=False),
                name="reports_job_once_per_slot",
            ),
        ]

    # the admin's page title: what a person recognises the job by
    def __str__(self) -> str:
        created = timezone.localtime(self.created_at).strftime("%Y-%m-%d %H:%M") if self.created_at else ""
        return f"{self.report_title} · {self.format} · {self.get_status_display()} · {created}".rstrip(" ·")

    @property
    def rq_job_id(self) -> str:
        """The RQ job of the job's own task's next run: it plans, writes and joins (reports.tasks)."""
        return f"report-{self.id}-a{self.attempts + 1}"

    @property
    def progress(self) -> float:
        if self.status in (Status.SUCCEEDED, Status.EXPIRED):
            return 1.0
        if not self.rows_total:
            return 0.0
        return min(1.0, self.rows_done / self.rows_total)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    def get_report(self) -> Report:
        """The report this job runs (NotRegistered if it is no longer declared)."""
        return get_report(self.report)

    def layout(self) -> Layout:
        """The columns this job writes, as it asked for them (RequestInvalid if a chosen column is no
        longer declared)."""
        return self.get_report().layout(self.columns)

    def get_download_url(self) -> str:
        return reverse("reports:download", args=[self.id])

    @property
    def download_url(self) -> str | None:
        """Where the file is, while there is one."""
        if self.status == Status.SUCCEEDED and self.delivery == Delivery.INSTANT:
            # written into the download itself, not kept
            return None
        if self.status == Status.QUEUED and self.delivery == Delivery.INSTANT:
            # the download writes it
            return self.get_download_url()
        return self.get_download_url() if self.status == Status.SUCCEEDED else None

    @property
    def report_title(self) -> str:
        return title_of(self.report)

    def as_dict(self) -> dict:
        """The job JSON of the public contract (API, websocket events, admin)."""
        return {
            "id": str(self.id),
            "report": self.report,
            "report_title": self.report_title,
            "format": self.format,
            "params": self.params,
            "columns": self.columns or None,
            "delivery": self.delivery,
            "schedule": self.schedule_id,
            "status": self.status,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "progress": round(self.progress, 4),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "file_size": self.file_size,
            "download_url": self.download_url,
            "error": self.error if self.status == Status.FAILED else None,
            "waiting_for_queue": self.waiting_for_queue and self.status == Status.QUEUED,
        }

    def move_to_queue(self) -> bool:
        """An instant job whose download may not write it (its rows outgrew the limit since it was asked
        for, or too many are being written) becomes a background job, queued: the one move back to
        `queued` there is, and only for these. False when the job had moved on meanwhile."""
        fields = {
            "status": Status.QUEUED,
            "delivery": Delivery.BACKGROUND,
            "upper_key": None,
            "started_at": None,
            "rows_done": 0,
            "rows_total": None,
            "file_size": None,
            "updated_at": timezone.now(),
        }
        updated = ReportJob.objects.filter(pk=self.pk, delivery=Delivery.INSTANT, status__in=ACTIVE).update(**fields)
        if updated:
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)

    def transition(self, to: str, **fields) -> bool:
        """Move to status `to` if the row (in the database) may; save `fields` with it.

        The UPDATE is conditional on the current status, so two processes racing (a cancel and the
        worker finishing) cannot both win. Returns False when the row had already moved on.
        """
        allowed_from = [s for s, targets in TRANSITIONS.items() if to in targets]
        if not allowed_from:
            raise IllegalTransition(f"Nothing may move to {to!r}.")
        now = timezone.now()
        if to == Status.RUNNING:
            fields.setdefault("started_at", now)
        if to in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
            fields.setdefault("finished_at", now)
        fields["updated_at"] = now
        updated = ReportJob.objects.filter(pk=self.pk, status__in=allowed_from).update(status=to, **fields)
        if updated:
            self.status = to
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(updated)

    def update_if_running(self, **fields) -> bool:
        """Save `fields` if the job is still running (else it was cancelled or failed: the caller stops)."""
        fields["updated_at"] = timezone.now()
        if not ReportJob.objects.filter(pk=self.pk, status=Status.RUNNING).update(**fields):
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True

    def stop_segments(self) -> None:
        """The job ended: segments not written stay so (a run writing one stops at its next batch)."""
        self.segments.exclude(status__in=(SegmentStatus.DONE, SegmentStatus.FAILED)).update(
            status=SegmentStatus.CANCELLED, heartbeat_at=None
        )

    def sum_progress(self) -> bool:
        """Save the sum of the segments' rows as the job's progress, if it is still running."""
        rows = ReportSegment.objects.filter(job=OuterRef("pk")).values("job").annotate(n=Sum("rows_done")).values("n")
        if not ReportJob.objects.filter(pk=self.pk, status=Status.RUNNING).update(
            rows_done=Subquery(rows), updated_at=timezone.now()
        ):
            return False
        self.refresh_from_db(fields=["rows_done", "status", "updated_at"])
        return True


class SegmentStatus(models.TextChoices):
    # planned, not yet on the queue
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    # gave up: the job failed with it
    FAILED = "failed", "Failed"
    # not written: the job ended first (cancelled, or failed elsewhere)
    CANCELLED = "cancelled", "Cancelled"


class ReportSegmentQuerySet(models.QuerySet):
    def in_flight(self):
        return self.filter(status__in=(SegmentStatus.QUEUED, SegmentStatus.RUNNING))


class ReportSegment(models.Model):
    """One key range of a report, `after < pk <= upper_key`: the unit of work, of retry and of distribution.

    Written by one RQ task at a time (any worker, any machine) into a segment object in the reports
    storage, recorded here once complete: rows, file_size, checksum and what the format's join needs
    (`meta`). `attempts` counts the runs that started; a run holds the segment while its heartbeat
    is fresh. A job's segments are its plan (reports.runs)."""

    job = models.ForeignKey(ReportJob, on_delete=models.CASCADE, related_name="segments")
    index = models.PositiveIntegerField()
    after = models.JSONField(
        null=True, blank=True, help_text="The last key before this segment (none: from the start)."
    )
    upper_key = models.JSONField(null=True, blank=True, help_text="The last key of this segment (none: no rows).")
    rows_planned = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=SegmentStatus, default=SegmentStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    rows_done = models.BigIntegerField(default=0)
    file = models.CharField(max_length=500, blank=True, help_text="The segment object's name in the reports storage.")
    file_size = models.BigIntegerField(null=True, blank=True)
    checksum = models.CharField(
        max_length=64, blank=True, help_text="crc32:… of the segment object (a SHA-256 from earlier versions)."
    )
    meta = models.JSONField(default=dict, blank=True, help_text="What the format's join needs (e.g. CRC-32).")
    worker = models.CharField(max_length=200, blank=True, help_text="Where the last run ran.")
    error = models.TextField(blank=True)
    last_failure = models.CharField(max_length=10, blank=True, help_text="'died' or 'raised': how the last run ended.")
    queued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ReportSegmentQuerySet.as_manager()

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="reports_segment_unique_index")]

    def __str__(self) -> str:
        return f"segment {self.index} of {self.job_id} ({self.status})"

    @property
    def rq_job_id(self) -> str:
        """The RQ job of this segment's next run (a new id per run: a dead run's entry never clashes)."""
        return f"report-{self.job_id}-s{self.index}-a{self.attempts + 1}"


class ReportDownload(models.Model):
    """Who downloaded which report file, when, from where: kept (REPORTS_AUDIT_RETENTION_DAYS) after the
    file and the job are gone."""

    job = models.ForeignKey(ReportJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="downloads")
    job_ref = models.UUIDField(help_text="The job's id (kept when the job is deleted).")
    report = models.SlugField(max_length=100)
    format = models.CharField(max_length=20)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    username = models.CharField(max_length=150, help_text="Kept when the user is deleted.")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.username} downloaded {self.report} ({self.format}) at {self.at:%Y-%m-%d %H:%M}"

    @classmethod
    def record(cls, job: ReportJob, request) -> ReportDownload:
        return cls.objects.create(
            job=job,
            job_ref=job.pk,
            report=job.report,
            format=job.format,
            user=request.user,
            username=request.user.get_username(),
            client_address=request.META.get("REMOTE_ADDR"),
            file_size=job.file_size,
        )


def _iso(value):
    return value.isoformat() if value else None


class Frequency(models.TextChoices):
    DAILY = "daily", "Every day"
    WEEKLY = "weekly", "Every week"
    MONTHLY = "monthly", "Every month"


WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class ReportSchedule(models.Model):
    """A saved request (report, format, columns, filters) run at the slots of a schedule in its owner's
    time zone: every day, on chosen weekdays, or on a day of the month, at a time. Each run is an
    ordinary job of the owner (reports.schedules)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_schedules")
    report = models.SlugField(max_length=100)
    format = models.CharField(max_length=20)
    params = models.JSONField(default=dict, blank=True, help_text="Filters; dates may be relative ('last month').")
    columns = models.JSONField(default=list, blank=True, help_text="The chosen columns in order (empty: all).")
    frequency = models.CharField(max_length=10, choices=Frequency)
    weekdays = models.JSONField(default=list, blank=True, help_text="Weekly: the days, 0 = Monday ... 6 = Sunday.")
    day_of_month = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Monthly: 1-31 (or the last day).")
    time = models.TimeField(help_text="The time of day of each run, in the schedule's time zone.")
    time_zone = models.CharField(max_length=64, help_text="An IANA time zone name, e.g. Europe/Berlin.")
    paused = models.BooleanField(default=False)
    paused_because = models.CharField(max_length=200, blank=True, help_text="Why it was paused, if not by its owner.")
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True, help_text="The next slot (none: paused).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["owner", "next_run_at"]

    def __str__(self) -> str:
        return f"{self.report_title} · {self.format} · {self.describe_when()}"

    @property
    def report_title(self) -> str:
        return title_of(self.report)

    def describe_when(self) -> str:
        """The schedule in words: "Mondays and Thursdays at 08:00 (Europe/Berlin)"."""
        at = f"at {self.time:%H:%M} ({self.time_zone})"
        if self.frequency == Frequency.WEEKLY:
            days = [WEEKDAYS[d] + "s" for d in sorted(self.weekdays)]
            return f"{', '.join(days[:-1]) + ' and ' if len(days) > 1 else ''}{days[-1]} {at}"
        if self.frequency == Frequency.MONTHLY:
            return f"Monthly on day {self.day_of_month} {at}"
        return f"Daily {at}"

    def last_run(self) -> ReportJob | None:
        return self.runs.order_by("-slot").first()

    def as_dict(self) -> dict:
        last = self.last_run()
        return {
            "id": self.pk,
            "report": self.report,
            "report_title": self.report_title,
            "format": self.format,
            "params": self.params,
            "columns": self.columns or None,
            "frequency": self.frequency,
            "weekdays": self.weekdays,
            "day_of_month": self.day_of_month,
            "time": self.time.strftime("%H:%M"),
            "time_zone": self.time_zone,
            "description": self.describe_when(),
            "paused": self.paused,
            "paused_because": self.paused_because,
            "next_run_at": _iso(self.next_run_at),
            "last_run": None
            if last is None
            else {
                "job": str(last.pk),
                "slot": _iso(last.slot),
                "status": last.status,
                "error": last.error or None,
            },
            "created_at": _iso(self.created_at),
        }
