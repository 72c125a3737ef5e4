import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from .files import reports_storage


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


# The only legal moves. RUNNING -> QUEUED is the sweeper putting back a job whose worker died.
TRANSITIONS: dict[str, set[str]] = {
    Status.QUEUED: {Status.RUNNING, Status.CANCELLED, Status.FAILED},
    Status.RUNNING: {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.QUEUED},
    Status.SUCCEEDED: {Status.EXPIRED},
    Status.FAILED: set(),
    Status.CANCELLED: set(),
    Status.EXPIRED: set(),
}
ACTIVE = (Status.QUEUED, Status.RUNNING)


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
    checkpoint = models.JSONField(null=True, blank=True, help_text="Last key written and the upper bound.")
    file = models.FileField(storage=reports_storage, max_length=500, blank=True)
    file_size = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReportJobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.report} ({self.format}) {self.status} {self.id}"

    @property
    def rq_job_id(self) -> str:
        return f"report-{self.id}"

    @property
    def rq_join_id(self) -> str:
        """The RQ job that joins this attempt's parts, when the report was split (reports.parallel)."""
        return f"report-{self.id}-join-{self.attempts}"

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
        from .registry import NotRegistered, get_report

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


class ReportPart(models.Model):
    """One key range of a report split across workers (reports.parallel): rows `after < pk <= upper`,
    written by its own RQ job to a part file in the reports storage; a join job puts the parts together.
    The parts of one attempt of the job; a new attempt replaces them."""

    job = models.ForeignKey(ReportJob, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveIntegerField()
    after = models.JSONField(null=True, blank=True, help_text="The last key before this part (none: from the start).")
    upper = models.JSONField(help_text="The last key of this part.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)  # never expired
    rows_done = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField()
    file = models.CharField(max_length=500, blank=True, help_text="The part file's name in the reports storage.")
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="reports_part_unique_index")]

    def __str__(self) -> str:
        return f"part {self.index} of {self.job_id} ({self.status})"

    @property
    def rq_job_id(self) -> str:
        return f"report-{self.job_id}-part-{self.pk}"


def _iso(value):
    return value.isoformat() if value else None
