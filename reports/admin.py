from functools import wraps

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard

from .definitions import RequestInvalid
from .models import RETRYABLE, ReportDownload, ReportJob, ReportSchedule, ReportSegment, Status, title_of
from .registry import NotRegistered
from .schedules import set_paused
from .services import JobConflict, TooManyJobs, cancel_report, retry_report
from .writers import FORMATS


class JobPartInline(admin.TabularInline):
    """Rows that belong to a job, shown read-only on its page to whoever may see the job."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # they are part of the job
        return request.user.has_perm("reports.view_reportjob")


class ReportSegmentInline(JobPartInline):
    """The segments of a report (reports.runs)."""

    model = ReportSegment
    verbose_name_plural = "Segments (the report's parts, each written by any worker)"
    fields = [
        "index",
        "after",
        "upper_key",
        "status",
        "rows_done",
        "rows_planned",
        "file_size",
        "attempts",
        "worker",
        "error",
    ]


class ReportDownloadInline(JobPartInline):
    """Who downloaded the job's file, and when (the audit; see also Report downloads)."""

    model = ReportDownload
    fields = ["at", "username", "client_address", "file_size"]


@admin.register(ReportDownload)
class ReportDownloadAdmin(admin.ModelAdmin):
    list_display = ["at", "username", "report", "format", "job_ref", "client_address", "file_size"]
    list_filter = ["report", "format", "at"]
    search_fields = ["username", "=job_ref", "client_address"]
    date_hierarchy = "at"
    readonly_fields = ["job", "job_ref", "report", "format", "user", "username", "at", "client_address", "file_size"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def format_label(name: str) -> str:
    return FORMATS[name].label if name in FORMATS else name


class LabelledFilter(admin.SimpleListFilter):
    """The values of a job field in use, listed by what people call them."""

    def label(self, value: str) -> str:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        used = set(model_admin.get_queryset(request).order_by().values_list(self.parameter_name, flat=True))
        return sorted(((value, self.label(value)) for value in used), key=lambda item: item[1].lower())

    def queryset(self, request, queryset):
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class ReportFilter(LabelledFilter):
    title = "report"
    parameter_name = "report"

    def label(self, slug: str) -> str:
        return title_of(slug)


class FormatFilter(LabelledFilter):
    title = "format"
    parameter_name = "format"

    def label(self, name: str) -> str:
        return format_label(name)


@admin.register(ReportJob)
class ReportJobAdmin(admin.ModelAdmin):
    inlines = [ReportSegmentInline, ReportDownloadInline]
    # One line per job at 1280 px, the admin's menu open: the title is the link, times to the minute.
    list_display = ["title", "status", "owner", "rows", "size", "created", "download"]
    list_display_links = ["title"]
    list_filter = [
        "status",
        ReportFilter,
        FormatFilter,
        "delivery",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "created_at",
    ]
    search_fields = ["=id", "report", "owner__username", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    actions = ["cancel_jobs", "retry_jobs"]
    fields = [
        "id",
        "owner",
        "title",
        "format_name",
        "params",
        "columns",
        "delivery",
        "schedule",
        "slot",
        "status",
        "rows_done",
        "rows_total",
        "upper_key",
        "size",
        "download",
        "error",
        "error_detail",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "duration",
        "queue_dashboard",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # read-only; cancel and retry are actions
        return False

    def has_manage_permission(self, request):
        """Cancelling or retrying other people's jobs takes more than seeing them."""
        return request.user.has_perm("reports.change_reportjob")

    def get_queryset(self, request):
        # Whether each job is the viewer's own, per request: only the owner may download.
        mine = ExpressionWrapper(Q(owner=request.user), output_field=BooleanField())
        return super().get_queryset(request).annotate(viewer_is_owner=mine, download_count=Count("downloads"))

    @admin.display(description="Format", ordering="format")
    def format_name(self, job):
        return format_label(job.format)

    @admin.display(description="Created", ordering="created_at")
    def created(self, job):
        return timezone.localtime(job.created_at).strftime("%Y-%m-%d %H:%M")

    @admin.display(description="Report", ordering="report")
    def title(self, job):
        return f"{job.report_title} · {format_label(job.format)}"

    @admin.display(description="Rows")
    def rows(self, job):
        """While it runs, of how many; once it ended, how many."""
        if job.status in (Status.QUEUED, Status.RUNNING) and job.rows_total is not None:
            return f"{job.rows_done:,} / {job.rows_total:,}"
        return f"{job.rows_done:,}"

    @admin.display(description="Size", ordering="file_size")
    def size(self, job):
        return filesizeformat(job.file_size) if job.file_size is not None else "—"

    @admin.display(description="File (downloads)", ordering="download_count")
    def download(self, job):
        """The link (the owner's only), and how many times the file was downloaded (the audit)."""
        if job.status != Status.SUCCEEDED:
            return f"— ({job.download_count})" if job.download_count else "—"
        if not job.viewer_is_owner:
            return f"owner only ({job.download_count})"
        return format_html('<a href="{}">Download</a> ({})', job.get_download_url(), job.download_count)

    @admin.display(description="Duration")
    def duration(self, job):
        if job.started_at and job.finished_at:
            return f"{(job.finished_at - job.started_at).total_seconds():.1f} s"
        return "—"

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if may_see_queues(request.user) else [f for f in fields if f != "queue_dashboard"]

    @admin.display(description="Queue")
    def queue_dashboard(self, job):
        return format_html(
            '<a href="{}">RQ queue dashboard</a> (job id {})', reverse("admin:django_rq_home"), job.rq_job_id
        )

    def changelist_view(self, request, extra_context=None):
        if may_see_queues(request.user):
            extra_context = {**(extra_context or {}), "rq_dashboard_url": reverse("admin:django_rq_home")}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Cancel and Retry as buttons on the job's own page (they post the list's actions for this job)."""
        job = self.get_object(request, object_id)
        if job is not None and self.has_manage_permission(request):
            buttons = [("cancel_jobs", "Cancel")] if job.status in (Status.QUEUED, Status.RUNNING) else []
            buttons += [("retry_jobs", "Retry")] if job.status in RETRYABLE else []
            extra_context = {
                **(extra_context or {}),
                "job_actions": buttons,
                "changelist_url": reverse("admin:reports_reportjob_changelist"),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    class Media:
        css = {"all": ["reports/admin.css"]}

    @admin.action(description="Cancel selected jobs", permissions=["manage"])
    def cancel_jobs(self, request, queryset):
        cancelled, ended = 0, 0
        for job in queryset:
            try:
                if job.status not in (Status.QUEUED, Status.RUNNING):
                    raise JobConflict
                cancel_report(job, by=request.user)
                cancelled += 1
            except JobConflict:
                # it had ended (or ended meanwhile)
                ended += 1
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} job(s).", messages.SUCCESS)
        if ended:
            self.message_user(
                request,
                f"{ended} job(s) not cancelled: they had already ended (only queued or running jobs can be cancelled).",
                messages.WARNING,
            )

    @admin.action(description="Retry selected jobs (as new jobs for their owners)", permissions=["manage"])
    def retry_jobs(self, request, queryset):
        retried = 0
        for job in queryset.filter(status__in=RETRYABLE):
            try:
                retry_report(job)
                retried += 1
            except (JobConflict, TooManyJobs, PermissionDenied, RequestInvalid, NotRegistered) as exc:
                self.message_user(request, f"Job {str(job.pk)[:8]} was not retried: {exc}", messages.WARNING)
        if retried:
            self.message_user(request, f"Retried {retried} job(s).", messages.SUCCESS)
        if not_retryable := queryset.exclude(status__in=RETRYABLE).count():
            self.message_user(
                request,
                f"{not_retryable} job(s) not retried: only failed, cancelled or expired jobs can be retried.",
                messages.WARNING,
            )


# django-rq's dashboard lets whoever opens it empty queues and delete, stop or requeue jobs, and its
# views ask only for staff status. Here every one of them also needs its own permission,
# `django_rq.admin` ("Access admin page"), which superusers have.
QUEUE_PERMISSION = "django_rq.admin"


def may_see_queues(user) -> bool:
    return user.has_perm(QUEUE_PERMISSION)


def queue_permission_required(view):
    @wraps(view)
    def guarded(request, *args, **kwargs):
        # django-rq also takes the API token as part of the path, where access logs and proxies keep it.
        if kwargs.get("token"):
            message = "Send the token as a header, Authorization: Bearer <RQ_API_TOKEN>; never in the URL."
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        if request.user.is_authenticated and request.user.is_staff and not may_see_queues(request.user):
            raise PermissionDenied(f"The queue dashboard needs the {QUEUE_PERMISSION!r} permission.")
        # others: the admin's login, or the API token check
        return view(request, *args, **kwargs)

    return guarded


class GuardedQueueAdmin(QueueAdmin):
    def get_urls(self):
        patterns = super().get_urls()
        for pattern in patterns:
            pattern.callback = queue_permission_required(pattern.callback)
        return patterns

    def has_module_permission(self, request):
        return may_see_queues(request.user)


if admin.site.is_registered(Dashboard):
    admin.site.unregister(Dashboard)
admin.site.register(Dashboard, GuardedQueueAdmin)


@admin.register(ReportSchedule)
class ReportScheduleAdmin(admin.ModelAdmin):
    """Every user's schedules: who gets what, when next, how the last run went. Made on the report page
    (or the API) by their owners; here they are paused, resumed or deleted."""

    list_display = ["title", "owner", "when", "next_run", "last_run", "paused"]
    list_filter = ["paused", "frequency", ReportFilter, FormatFilter, ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["owner__username", "report"]
    list_select_related = ["owner"]
    actions = ["pause", "resume"]
    fields = [
        "owner",
        "title",
        "format",
        "params",
        "columns",
        "when",
        "time_zone",
        "paused",
        "paused_because",
        "next_run_at",
        "last_run",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # read-only; pausing and resuming are actions
        return False

    @admin.display(description="Report", ordering="report")
    def title(self, schedule):
        return f"{schedule.report_title} · {format_label(schedule.format)}"

    @admin.display(description="When")
    def when(self, schedule):
        return schedule.describe_when()

    @admin.display(description="Next run", ordering="next_run_at")
    def next_run(self, schedule):
        return timezone.localtime(schedule.next_run_at).strftime("%Y-%m-%d %H:%M") if schedule.next_run_at else "—"

    @admin.display(description="Last run")
    def last_run(self, schedule):
        run = schedule.last_run()
        if run is None:
            return "—"
        link = reverse("admin:reports_reportjob_change", args=[run.pk])
        return format_html(
            '<a href="{}">{}</a> · {}',
            link,
            run.get_status_display(),
            timezone.localtime(run.slot).strftime("%Y-%m-%d %H:%M"),
        )

    def has_manage_permission(self, request):
        return request.user.has_perm("reports.change_reportschedule")

    @admin.action(description="Pause the selected schedules", permissions=["manage"])
    def pause(self, request, queryset):
        for schedule in queryset:
            set_paused(schedule, True)
        self.message_user(request, f"Paused {queryset.count():,} schedules.", messages.SUCCESS)

    @admin.action(description="Resume the selected schedules (from their next slot)", permissions=["manage"])
    def resume(self, request, queryset):
        for schedule in queryset:
            set_paused(schedule, False)
        self.message_user(request, f"Resumed {queryset.count():,} schedules.", messages.SUCCESS)
