import uuid

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET, require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import conf, downloads
from .api import runnable_reports
from .definitions import RequestInvalid
from .endings import fail
from .events import describe_error, explain_error, job_changed
from .files import download_filename
from .metrics import registry
from .models import ACTIVE, RETRYABLE, WEEKDAYS, Delivery, Frequency, ReportDownload, ReportJob, ReportSchedule, Status
from .pipeline import InstantFile, NotInstant, Stopped, write_instant
from .services import move_to_queue
from .writers import FORMATS


@require_safe
@login_required
def download(request, job_id):
    job = ReportJob.objects.for_user(request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such report file.")
    if job.status == Status.EXPIRED:
        return text(410, "This report file has expired and was deleted. Ask for the report again.")
    instant = job.delivery == Delivery.INSTANT
    if instant and job.status == Status.SUCCEEDED:
        return text(410, "This report was written straight into its download and not kept. Ask for it again.")
    if not instant and (job.status != Status.SUCCEEDED or not job.file):
        return text(409, f"This report is {job.status}; there is no file to download.")
    # a link preview or a prefetch: nothing written, read or recorded
    if request.method == "HEAD":
        return text(200, "")
    if instant:
        return instant_download(request, job)
    response = downloads.stored_file(request, job)
    if response.status_code < 400:
        ReportDownload.record(job, request)
    return response


def instant_download(request, job: ReportJob) -> HttpResponse:
    """A small report written now, by this process, and sent as it is put together: once (it is not
    kept). One that may not be written here now (it grew, or too much is being written) is queued."""
    slot = downloads.DownloadSlot(job.owner_id)
    if not slot.acquire():
        return queued_instead(job, "you have other downloads in progress")
    try:
        written = write_now(job)
    except BaseException:
        slot.release()
        raise
    if isinstance(written, HttpResponse):
        slot.release()
        return written
    ReportDownload.record(job, request)
    job_changed(job)
    content_type = FORMATS[job.format].content_type
    filename = download_filename(job)
    response = downloads.stream(
        request, written.blocks(), slot=slot, content_type=content_type, filename=filename, size=written.size
    )
    response._resource_closers.append(written.close)
    return response


def write_now(job: ReportJob) -> InstantFile | HttpResponse:
    """The instant job's file, or the answer that says why there is none (refused, cancelled, queued)."""
    if not job.transition(Status.RUNNING):
        job.refresh_from_db()
        return text(409, f"This report is {job.status}; there is no file to download.")
    job_changed(job)
    try:
        return write_instant(job)
    except NotInstant as exc:
        return queued_instead(job, str(exc))
    except Stopped:
        return text(409, "This report was cancelled.")
    # refused (permission, a column gone) or broken: the job says why
    except Exception as exc:
        fail(job, *explain_error(exc))
        if not isinstance(exc, PermissionDenied | RequestInvalid):
            raise
        return text(403 if isinstance(exc, PermissionDenied) else 400, describe_error(exc))


def queued_instead(job: ReportJob, reason: str) -> HttpResponse:
    if not move_to_queue(job):
        job.refresh_from_db()
        return text(409, f"This report is {job.status}; there is no file to download.")
    queued = "it is queued instead, and you will be notified when its file is ready"
    return text(409, f"This report was not written at once ({reason}): {queued}.")


def text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


@require_GET
def metrics(request):
    """Prometheus metrics (reports.metrics), for a scraper sending `Authorization: Bearer <RQ_API_TOKEN>`."""
    token = conf.RQ_API_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not constant_time_compare(given, token):
        refusal = HttpResponse(
            "Send the metrics token (RQ_API_TOKEN) as a bearer token.",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        refusal["WWW-Authenticate"] = "Bearer"
        return refusal
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


@require_GET
@login_required
def report_page(request):
    reports = runnable_reports(request.user)
    jobs = [job.as_dict() for job in ReportJob.objects.for_user(request.user)[:50]]
    schedules = [s.as_dict() for s in ReportSchedule.objects.filter(owner=request.user).order_by("created_at")]
    return render(request, "reports/page.html", {"reports": reports, "page": page_config(reports, jobs, schedules)})


def page_config(reports: list[dict], jobs: list[dict], schedules: list[dict]) -> dict:
    """What the page's script knows: it learns it here rather than keeping copies of it."""
    placeholder, number = str(uuid.UUID(int=0)), 2**31 - 1
    return {
        "urls": {
            "jobs": reverse("reports:api-jobs"),
            "job": reverse("reports:api-job", args=[placeholder]),
            "cancel": reverse("reports:api-job-cancel", args=[placeholder]),
            "retry": reverse("reports:api-job-retry", args=[placeholder]),
            "placeholder": placeholder,
            "schedules": reverse("reports:api-schedules"),
            "schedule": reverse("reports:api-schedule", args=[number]),
            "schedule_pause": reverse("reports:api-schedule-pause", args=[number]),
            "schedule_resume": reverse("reports:api-schedule-resume", args=[number]),
            "schedule_placeholder": str(number),
        },
        "frequencies": Frequency.choices,
        "weekdays": WEEKDAYS,
        "schedules": schedules,
        "statuses": dict(Status.choices),
        "active": list(ACTIVE),
        "retryable": list(RETRYABLE),
        "formats": {name: format.label for name, format in FORMATS.items()},
        "reports": reports,
        "jobs": jobs,
    }
