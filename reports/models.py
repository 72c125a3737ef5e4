from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Subquery, Sum
from django.urls import reverse
from django.utils import timezone

from .files import reports_storage
from .registry import NotRegistered, get_report


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
RETRYABLE = (Status.FAILED, Status.CANCELLED, Status.EXPIRED)  # a retry makes a new job with the same request


class IllegalTransition(Exception):
    pass


class ReportJobQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(owner=user)

    def active(self):
        return self.filter(status__in=ACTIVE)


class ReportJob(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="report_jobs")
    report = models.SlugField(max_length=100)
    format = models.CharField(max_length=20)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(null=True, blank=True)
    upper_key = models.JSONField(null=True, blank=True, help_text="The last key of the report's rows when it started.")
    file = models.FileField(storage=reports_storage, max_length=500, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
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

    def __str__(self) -> str:  # the admin's page title: what a person recognises the job by
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

    def get_download_url(self) -> str:
        return reverse("reports:download", args=[self.id])

    @property
    def download_url(self) -> str | None:
        """Where the file is, while there is one."""
        return self.get_download_url() if self.status == Status.SUCCEEDED else None

    @property
    def report_title(self) -> str:
        """The report's title, or its slug if the report has since been removed."""
        try:
            return get_report(self.report).get_title()
        except NotRegistered:
            return self.report

    def as_dict(self) -> dict:
        """The job JSON of the public contract (API, websocket events, admin)."""
        return {
            "id": str(self.id),
            "report": self.report,
            "report_title": self.report_title,
            "format": self.format,
            "params": self.params,
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
        """The job ended: segments not written stay so (a run writing one stops at its next chunk)."""
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
    PENDING = "pending", "Pending"  # planned, not yet on the queue
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"  # gave up: the job failed with it
    CANCELLED = "cancelled", "Cancelled"  # not written: the job ended first (cancelled, or failed elsewhere)


class ReportSegmentQuerySet(models.QuerySet):
    def in_flight(self):
        return self.filter(status__in=(SegmentStatus.QUEUED, SegmentStatus.RUNNING))


class ReportSegment(models.Model):
    """One key range of a report, `after < pk <= upper`: the unit of work, of retry and of distribution.

    Written by one RQ task at a time (any worker, any machine) into a segment object in the reports
    storage, recorded here once complete: rows, bytes, checksum and what the format's join needs
    (`meta`). `attempts` counts the runs that started; a run holds the segment while its heartbeat
    is fresh. A job's segments are its plan (reports.batches)."""

    job = models.ForeignKey(ReportJob, on_delete=models.CASCADE, related_name="segments")
    index = models.PositiveIntegerField()
    after = models.JSONField(
        null=True, blank=True, help_text="The last key before this segment (none: from the start)."
    )
    upper = models.JSONField(null=True, blank=True, help_text="The last key of this segment (none: no rows).")
    rows_planned = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=SegmentStatus.choices, default=SegmentStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    rows_done = models.BigIntegerField(default=0)
    file = models.CharField(max_length=500, blank=True, help_text="The segment object's name in the reports storage.")
    bytes = models.BigIntegerField(null=True, blank=True)
    checksum = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the segment object.")
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
    bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.username} downloaded {self.report} ({self.format}) at {self.at:%Y-%m-%d %H:%M}"

    @classmethod
    def record(cls, job: ReportJob, request) -> ReportDownload:
        return cls.objects.create(job=job, job_ref=job.pk, report=job.report, format=job.format, user=request.user,
                                  username=request.user.get_username(), client_address=request.META.get("REMOTE_ADDR"),
                                  bytes=job.file_size)  # fmt: skip


def _iso(value):
    return value.isoformat() if value else None
