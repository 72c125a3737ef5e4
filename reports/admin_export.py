"""Background export from any ModelAdmin's changelist.

Selected rows are stored as their ids (a page at most); "select all" stores the changelist's query
string (filters and search), which the worker turns back into the changelist's queryset as the user
who asked, through the admin's own filter validation. Never a giant list of ids, never a raw lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.exceptions import PermissionDenied
from django.http import QueryDict
from django.test import RequestFactory
from django.urls import reverse
from django.utils.html import format_html

from .definitions import Column, ParamsInvalid, Report
from .registry import NotRegistered, get_report, register
from .services import TooManyJobs, request_report
from .writers import FORMATS

MAX_IDS = 10_000
MAX_QUERY = 2_000
IGNORED_CHANGELIST_PARAMS = {PAGE_VAR, ERROR_FLAG, IS_POPUP_VAR, TO_FIELD_VAR, "_changelist_filters"}


def admin_report_slug(model) -> str:
    return f"admin-{model._meta.app_label}-{model._meta.model_name}"


class AdminExportReport(Report):
    """A report over one model as its admin shows it. Made by BackgroundExportMixin."""

    formats = ["csv", "xlsx"]
    listed = False  # run from the admin's changelist, not from the report page

    def clean_params(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, Mapping) or set(params) - {"ids", "query"} or len(params) != 1:
            raise ParamsInvalid({"params": ["Give either 'ids' (selected rows) or 'query' (the changelist's)."]})
        if "ids" in params:
            ids = params["ids"]
            if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS:
                raise ParamsInvalid({"ids": [f"Must be a list of 1 to {MAX_IDS:,} ids."]})
            return {"ids": [self.get_model()._meta.pk.to_python(i) for i in ids]}
        query = params["query"]
        if not isinstance(query, str) or len(query) > MAX_QUERY:
            raise ParamsInvalid({"query": [f"Must be a changelist query string under {MAX_QUERY:,} characters."]})
        return {"query": query}

    def get_report_queryset(self, params: Mapping[str, Any], user=None):
        cleaned = self.clean_params(params)
        if "ids" in cleaned:
            return self.get_queryset().filter(pk__in=cleaned["ids"])
        return changelist_queryset(self.get_model(), user, cleaned["query"])

    def describe_params(self, params: Mapping[str, Any]) -> str:
        if "ids" in params:
            return f"{len(params['ids']):,} selected rows"
        return f"admin filters: {params['query'] or 'none'}"


def changelist_queryset(model, user, query: str):
    """The rows the admin changelist shows for this query string to this user."""
    model_admin = admin.site._registry.get(model)
    if model_admin is None or user is None:
        raise PermissionDenied(f"{model._meta.verbose_name} has no admin to export from.")
    request = RequestFactory().get("/", QueryDict(query))
    request.user = user
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied(f"You may not view {model._meta.verbose_name_plural}.")
    changelist = model_admin.get_changelist_instance(request)
    return changelist.get_queryset(request)


def changelist_query(request) -> str:
    params = request.GET.copy()
    for name in IGNORED_CHANGELIST_PARAMS:
        params.pop(name, None)
    return params.urlencode()


def make_export_action(fmt: str):
    def export(modeladmin, request, queryset):
        slug = admin_report_slug(modeladmin.model)
        if request.POST.get("select_across") == "1":
            params = {"query": changelist_query(request)}
        else:
            params = {"ids": [str(pk) for pk in queryset.values_list("pk", flat=True)[: MAX_IDS + 1]]}
        try:
            job = request_report(user=request.user, slug=slug, format=fmt, params=params)
        except (PermissionDenied, ParamsInvalid, TooManyJobs) as exc:
            detail = "; ".join(" ".join(v) for v in exc.errors.values()) if isinstance(exc, ParamsInvalid) else exc
            modeladmin.message_user(request, f"The export could not start: {detail}", messages.ERROR)
            return
        link = reverse("admin:reports_reportjob_change", args=[job.pk])
        modeladmin.message_user(
            request,
            format_html(
                'Exporting {} to {} in the background: <a href="{}">follow the job</a>. '
                "A notification brings the download link when the file is ready.",
                "all matching rows" if "query" in params else f"{len(params['ids']):,} selected rows",
                FORMATS[fmt].label,
                link,
            ),
            messages.SUCCESS,
        )

    export.__name__ = f"export_{fmt}_in_background"
    export.short_description = f"Export to {FORMATS[fmt].label} in the background"
    return export


class BackgroundExportMixin:
    """Add to any ModelAdmin: actions "Export to CSV / Excel in the background" for users who may
    view the model. `export_columns` picks the columns (default: every concrete field)."""

    export_columns: list[str | Column] | None = None
    export_formats: tuple[str, ...] = ("csv", "xlsx")

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        slug = admin_report_slug(model)
        try:
            get_report(slug)
        except NotRegistered:
            register(type(f"{model.__name__}AdminExport", (AdminExportReport,), {
                "slug": slug,
                "title": str(model._meta.verbose_name_plural).capitalize(),
                "model": model,
                "columns": list(self.export_columns or [f.name for f in model._meta.concrete_fields]),
                "formats": list(self.export_formats),
            }))  # fmt: skip

    def get_actions(self, request, action_location=admin.ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location)
        if action_location == admin.ActionLocation.CHANGE_LIST and self.has_view_or_change_permission(request):
            for fmt in self.export_formats:
                action = make_export_action(fmt)
                actions[action.__name__] = (action, action.__name__, action.short_description)
        return actions
