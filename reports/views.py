import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import FileSystemStorage
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .api import runnable_reports
from .files import download_filename, reports_storage
from .metrics import registry
from .models import ACTIVE, RETRYABLE, ReportDownload, ReportJob, Status
from .writers import FORMATS


@require_GET
@login_required
def download(request, job_id):
    job = ReportJob.objects.for_user(request.user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such report file.")
    if job.status == Status.EXPIRED:
        return HttpResponse(
            "This report file has expired and was deleted. Ask for the report again.",
            status=410,
            content_type="text/plain; charset=utf-8",
        )
    if job.status != Status.SUCCEEDED or not job.file:
        return HttpResponse(
            f"This report is {job.status}; there is no file to download.",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    filename = download_filename(job)
    storage = reports_storage()
    ReportDownload.record(job, request)
    if isinstance(storage, FileSystemStorage):
        response = FileResponse(storage.open(job.file.name, "rb"), as_attachment=True, filename=filename)
        response["Content-Type"] = FORMATS[job.format].content_type
        return response
    return HttpResponseRedirect(signed_url(storage, job, filename))


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
    return render(request, "reports/page.html", {"reports": reports, "page": page_config(reports, jobs)})


def page_config(reports: list[dict], jobs: list[dict]) -> dict:
    """What the page's script knows: it learns it here rather than keeping copies of it."""
    placeholder = str(uuid.UUID(int=0))
    return {
        "urls": {
            "jobs": reverse("reports:api-jobs"),
            "job": reverse("reports:api-job", args=[placeholder]),
            "cancel": reverse("reports:api-job-cancel", args=[placeholder]),
            "retry": reverse("reports:api-job-retry", args=[placeholder]),
            "placeholder": placeholder,
        },
        "statuses": dict(Status.choices),
        "active": list(ACTIVE),
        "retryable": list(RETRYABLE),
        "formats": {name: format.label for name, format in FORMATS.items()},
        "reports": reports,
        "jobs": jobs,
    }
