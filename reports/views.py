import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import FileSystemStorage
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import batches
from .api import runnable_reports
from .definitions import ParamsInvalid
from .events import describe_error, job_changed
from .files import download_filename, reports_storage
from .metrics import registry
from .models import ACTIVE, RETRYABLE, WEEKDAYS, Delivery, Frequency, ReportDownload, ReportJob, ReportSchedule, Status
from .pipeline import Stopped, write_instant
from .writers import FORMATS


@require_GET
@login_required
def download(request, job_id):
    job = ReportJob.objects.for_user(request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such report file.")
    if job.status == Status.EXPIRED:
        return text(410, "This report file has expired and was deleted. Ask for the report again.")
    if job.delivery == Delivery.INSTANT:
        return instant_download(request, job)
    if job.status != Status.SUCCEEDED or not job.file:
        return text(409, f"This report is {job.status}; there is no file to download.")
    filename = download_filename(job)
    storage = reports_storage()
    ReportDownload.record(job, request)
    if isinstance(storage, FileSystemStorage):
        response = FileResponse(storage.open(job.file.name, "rb"), as_attachment=True, filename=filename)
        response["Content-Type"] = FORMATS[job.format].content_type
        return response
    return HttpResponseRedirect(signed_url(storage, job, filename))


def instant_download(request, job: ReportJob):
    """A small report written now, by this process, into the response: once (it is not kept)."""
    if job.status == Status.SUCCEEDED:
        return text(410, "This report was written straight into its download and not kept. Ask for it again.")
    if not job.transition(Status.RUNNING):
        job.refresh_from_db()
        return text(409, f"This report is {job.status}; there is no file to download.")
    job_changed(job)
    try:
        output = write_instant(job)
    except Stopped:
        return text(409, "This report was cancelled.")
    except Exception as exc:  # refused (permission, a column gone) or broken: the job says why
        batches.fail_job(job, describe_error(exc))
        if not isinstance(exc, PermissionDenied | ParamsInvalid):
            raise
        return text(403 if isinstance(exc, PermissionDenied) else 400, describe_error(exc))
    ReportDownload.record(job, request)
    job_changed(job)
    blocks = async_blocks(output) if isinstance(request, ASGIRequest) else iter_blocks(output)
    response = StreamingHttpResponse(blocks, content_type=FORMATS[job.format].content_type)
    response["Content-Length"] = str(job.file_size)
    response["Content-Disposition"] = content_disposition_header(True, download_filename(job))
    return response


def iter_blocks(fh, size: int = 1 << 16):
    with fh:
        while block := fh.read(size):
            yield block


async def async_blocks(fh, size: int = 1 << 16):
    """The file a block at a time, read off the event loop (daphne serves this response)."""
    try:
        while block := await sync_to_async(fh.read, thread_sensitive=False)(size):
            yield block
    finally:
        fh.close()


def text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def signed_url(storage, job: ReportJob, filename: str) -> str:
    """A short-lived URL straight to the object, carrying the filename and type (S3)."""
    return storage.url(
        job.file.name,
        parameters={
            "ResponseContentDisposition": content_disposition_header(True, filename),
            "ResponseContentType": FORMATS[job.format].content_type,
        },
    )


@require_GET
def metrics(request):
    """Prometheus metrics (reports.metrics), for a scraper sending `Authorization: Bearer <RQ_API_TOKEN>`."""
    token = settings.RQ_API_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not constant_time_compare(given, token):
        refusal = HttpResponse("Send the metrics token (RQ_API_TOKEN) as a bearer token.", status=401,
                               content_type="text/plain; charset=utf-8")  # fmt: skip
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
