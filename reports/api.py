"""The JSON API (docs/api.md). Session auth; CSRF on every POST."""

from __future__ import annotations

import json
from functools import wraps

from django import forms
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from notifications.services import login_required_json

from .dates import RELATIVE_DATES
from .definitions import RequestInvalid
from .models import Delivery, ReportJob, ReportSchedule
from .registry import NotRegistered, all_reports
from .schedules import SCHEDULE_FIELDS, save_schedule, set_paused
from .services import JobConflict, TooManyJobs, cancel_report, request_report, retry_report
from .writers import FORMATS

MAX_JOBS_LISTED = 100


def error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def csrf_failure(request, reason=""):
    """CSRF failures answer JSON on the API and Django's usual page elsewhere."""
    if request.path.startswith("/api/"):
        return error(403, f"CSRF check failed: {reason} Send the csrftoken cookie's value as X-CSRFToken.")
    from django.views.csrf import csrf_failure as default_failure

    return default_failure(request, reason)


INPUT_TYPES = [
    (forms.NullBooleanField, "select"),
    (forms.ChoiceField, "select"),
    (forms.DateTimeField, "datetime-local"),
    (forms.DateField, "date"),
    (forms.DecimalField, "number"),
    (forms.FloatField, "number"),
    (forms.IntegerField, "number"),
]


def filter_as_dict(name: str, field: forms.Field) -> dict:
    """What a page needs to draw a filter's input: its HTML input type, choices, limits."""
    input_type = next((kind for cls, kind in INPUT_TYPES if isinstance(field, cls)), "text")
    choices = getattr(field, "choices", None) or getattr(field.widget, "choices", None) or []
    data = {
        "name": name,
        "label": str(field.label),
        "input": input_type,
        # The empty choice ("---------", or "Unknown" for yes/no) means no filter: say so.
        "choices": [[str(v), "Any" if v in ("", None, "unknown") else str(label)] for v, label in choices]
        if input_type == "select"
        else [],
    }
    if input_type in ("date", "datetime-local"):
        # also taken: "last month" and the like (reports.dates)
        data["relative"] = list(RELATIVE_DATES)
    if isinstance(field, forms.DecimalField) and field.decimal_places is not None:
        data["step"] = str(10**-field.decimal_places) if field.decimal_places else "1"
    if getattr(field, "max_length", None):
        data["max_length"] = field.max_length
    return data


def report_as_dict(report) -> dict:
    form = report.get_params_form_class()()
    return {
        "slug": report.slug,
        "title": report.get_title(),
        "description": report.description,
        "formats": [{"name": name, "label": FORMATS[name].label} for name in report.get_formats()],
        "filters": [filter_as_dict(name, field) for name, field in form.fields.items()],
        "columns": [{"name": spec.name, "label": spec.label} for spec in report.layout().column_specs()],
    }


def runnable_reports(user) -> list[dict]:
    return [report_as_dict(r) for r in all_reports() if r.listed and r.has_permission(user)]


@require_GET
@login_required_json
def report_list(request):
    return JsonResponse({"reports": runnable_reports(request.user)})


@require_http_methods(["GET", "POST"])
@login_required_json
def job_list(request):
    if request.method == "POST":
        return job_create(request)
    jobs = ReportJob.objects.for_user(request.user)[:MAX_JOBS_LISTED]
    return JsonResponse({"jobs": [job.as_dict() for job in jobs]})


BODY_SHAPE = '{"report": slug, "format": name, "params": {...}, "columns": [...], "delivery": "auto"}'
DELIVERIES = ("auto", "background")


def read_json(request):
    """The request's JSON body, or the 4xx answer that says what is wrong with it."""
    try:
        return json.loads(request.body or b"null"), None
    except RequestDataTooBig:
        return None, error(413, "The request body is too large.")
    except RecursionError:
        return None, error(400, "The JSON body is nested too deeply.")
    except (ValueError, UnicodeDecodeError):
        return None, error(400, f"The body must be JSON: {BODY_SHAPE}.")


def read_body(request, allowed: tuple[str, ...], shape: str):
    """The request's JSON object with `report` and `format` as text and no field but `allowed`, or the
    400 answer that names what is wrong."""
    body, refusal = read_json(request)
    if refusal:
        return None, refusal
    if not isinstance(body, dict):
        return None, error(400, f"The body must be a JSON object: {shape}.")
    missing = {k: ["This field is required."] for k in ("report", "format") if not body.get(k)}
    wrong = {k: ["Must be text."] for k in ("report", "format") if body.get(k) and not isinstance(body[k], str)}
    # (a schedule's runs are queued)
    if "delivery" in allowed and body.get("delivery", "auto") not in DELIVERIES:
        wrong["delivery"] = ['Must be "auto" (small reports download at once) or "background" (always queued).']
    unknown = [k for k in body if k not in allowed]
    if missing or wrong or unknown:
        fields = {**missing, **wrong, **RequestInvalid.for_fields(unknown, "Unknown field.").errors}
        return None, error(400, "Invalid request.", fields=fields)
    return body, None


def job_create(request):
    body, refusal = read_body(request, ("report", "format", "params", "columns", "delivery"), BODY_SHAPE)
    if refusal:
        return refusal
    return answer_new_job(
        lambda: request_report(
            user=request.user,
            slug=body["report"],
            format=body["format"],
            params=body.get("params"),
            columns=body.get("columns"),
            delivery=body.get("delivery", "auto"),
        )
    )


REFUSALS = (NotRegistered, PermissionDenied, RequestInvalid, TooManyJobs, JobConflict)


def refusal_of(exc: Exception) -> JsonResponse:
    """The 4xx answer to a request refused with one of REFUSALS."""
    if isinstance(exc, NotRegistered):
        return error(404, f"No report called {str(exc)[:100]!r}.")
    if isinstance(exc, PermissionDenied):
        return error(403, str(exc) or "Permission denied.")
    if isinstance(exc, RequestInvalid):
        return error(400, "Invalid parameters.", fields=exc.errors)
    if isinstance(exc, TooManyJobs):
        return error(429, str(exc))
    # JobConflict
    return error(409, str(exc))


def answer_new_job(make_job) -> JsonResponse:
    """202 with the new job (201 when it is small enough to download at once from its download_url; 200
    with the job already asked for the same), or the 4xx that says why not."""
    try:
        job = make_job()
    except REFUSALS as exc:
        return refusal_of(exc)
    if getattr(job, "reused", False):
        return JsonResponse(job.as_dict(), status=200)
    return JsonResponse(job.as_dict(), status=201 if job.delivery == Delivery.INSTANT else 202)


def own_job(view):
    """Pass the user's own job; another user's job is a 404, never a 403 (ids are not confirmed)."""

    @wraps(view)
    def wrapper(request, job_id):
        job = ReportJob.objects.for_user(request.user).filter(pk=job_id).first()
        if job is None:
            return error(404, "No such job.")
        return view(request, job)

    return wrapper


@require_GET
@login_required_json
@own_job
def job_detail(request, job):
    return JsonResponse(job.as_dict())


@require_POST
@login_required_json
@own_job
def job_cancel(request, job):
    try:
        cancel_report(job, by=request.user)
    except JobConflict as exc:
        return error(409, str(exc), job=job.as_dict())
    return JsonResponse(job.as_dict())


@require_POST
@login_required_json
@own_job
def job_retry(request, job):
    """A new job with the same report, format and parameters."""
    return answer_new_job(lambda: retry_report(job))


# -- Schedules ------------------------------------------------------------------------------------

SCHEDULE_SHAPE = (
    '{"report": slug, "format": name, "params": {...}, "columns": [...], "frequency": "weekly", '
    '"weekdays": [0], "day_of_month": null, "time": "08:00", "time_zone": "Europe/Berlin"}'
)
MAX_SCHEDULES_LISTED = 100


@require_http_methods(["GET", "POST"])
@login_required_json
def schedule_list(request):
    if request.method == "GET":
        schedules = ReportSchedule.objects.filter(owner=request.user).order_by("created_at")[:MAX_SCHEDULES_LISTED]
        return JsonResponse({"schedules": [schedule.as_dict() for schedule in schedules]})
    body, refusal = read_body(request, SCHEDULE_FIELDS, SCHEDULE_SHAPE)
    if refusal:
        return refusal
    try:
        schedule = save_schedule(request.user, body)
    except REFUSALS as exc:
        return refusal_of(exc)
    return JsonResponse(schedule.as_dict(), status=201)


def own_schedule(view):
    """Pass the user's own schedule; another user's is a 404."""

    @wraps(view)
    def wrapper(request, schedule_id):
        schedule = ReportSchedule.objects.filter(owner=request.user, pk=schedule_id).first()
        if schedule is None:
            return error(404, "No such schedule.")
        return view(request, schedule)

    return wrapper


@require_http_methods(["GET", "DELETE"])
@login_required_json
@own_schedule
def schedule_detail(request, schedule):
    """The schedule; DELETE removes it (its past runs stay, as jobs)."""
    if request.method == "DELETE":
        schedule.delete()
        return JsonResponse({"deleted": True})
    return JsonResponse(schedule.as_dict())


@require_POST
@login_required_json
@own_schedule
def schedule_pause(request, schedule):
    return JsonResponse(set_paused(schedule, True).as_dict())


@require_POST
@login_required_json
@own_schedule
def schedule_resume(request, schedule):
    """Runs again from its next slot on (those passed while paused do not run)."""
    return JsonResponse(set_paused(schedule, False).as_dict())
