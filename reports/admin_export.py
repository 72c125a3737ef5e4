"""Background export from any ModelAdmin's changelist: the mixin and its actions (web code).

Selected rows are stored as their ids (a page at most); "select all" stores the changelist's query
string (filters and search). The report that a worker runs from them is reports.admin_reports.
"""

from __future__ import annotations

import re

import django
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IS_POPUP_VAR, TO_FIELD_VAR
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from .admin_reports import MAX_IDS, admin_report_slug
from .definitions import Column, RequestInvalid, resolve_field
from .registry import get_report
from .services import TooManyJobs, request_report
from .writers import FORMATS

IGNORED_CHANGELIST_PARAMS = {PAGE_VAR, ERROR_FLAG, IS_POPUP_VAR, TO_FIELD_VAR, "_changelist_filters"}


def changelist_query(request) -> str:
    params = request.GET.copy()
    for name in IGNORED_CHANGELIST_PARAMS:
        params.pop(name, None)
    return params.urlencode()


def make_export_action(fmt: str):
    def export(modeladmin, request, queryset):
        slug = admin_report_slug(modeladmin.model)
        across = request.POST.get("select_across") == "1"
        # first the page that asks which columns, in what order
        if request.POST.get("export_columns") != "yes":
            return columns_page(modeladmin, request, queryset, fmt, export.__name__, across)
        if across:
            params = {"query": changelist_query(request)}
        else:
            params = {"ids": [str(pk) for pk in queryset.values_list("pk", flat=True)[: MAX_IDS + 1]]}
        try:
            job = request_report(
                user=request.user,
                slug=slug,
                format=fmt,
                params=params,
                columns=request.POST.getlist("columns"),
                delivery="background",
            )
        except (PermissionDenied, RequestInvalid, TooManyJobs) as exc:
            detail = "; ".join(" ".join(v) for v in exc.errors.values()) if isinstance(exc, RequestInvalid) else exc
            modeladmin.message_user(request, f"The export could not start: {detail}", messages.ERROR)
            return
        link = reverse("admin:reports_reportjob_change", args=[job.pk])
        doing = "Already exporting" if getattr(job, "reused", False) else "Exporting"
        modeladmin.message_user(
            request,
            format_html(
                '{} {} to {} in the background: <a href="{}">follow the job</a>. '
                "A notification brings the download link when the file is ready.",
                doing,
                "all matching rows" if "query" in params else f"{len(params['ids']):,} selected rows",
                FORMATS[fmt].label,
                link,
            ),
            messages.SUCCESS,
        )

    export.__name__ = f"export_{fmt}_in_background"
    export.short_description = f"Export to {FORMATS[fmt].label} in the background"
    return export


def columns_page(modeladmin, request, queryset, fmt: str, action: str, across: bool) -> TemplateResponse:
    """The action's intermediate page: tick and order the columns, then export (the same request again,
    with the choice)."""
    report = get_report(admin_report_slug(modeladmin.model))
    opts = modeladmin.model._meta
    return TemplateResponse(
        request,
        "admin/reports/export_columns.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": f"Export {opts.verbose_name_plural} to {FORMATS[fmt].label}",
            "opts": opts,
            "action": action,
            "format_label": FORMATS[fmt].label,
            "columns": report.layout().column_specs(),
            "storage_key": f"reports.columns.{report.slug}",
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": across,
            "count": queryset.count(),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        },
    )


# A field whose name has one of these words is never exported unless `export_columns` names it.
SECRET_WORDS = {"password", "passwd", "pwd", "secret", "token", "hash", "salt", "otp", "apikey", "credentials"}


def looks_secret(path: str) -> bool:
    words = re.split(r"_+", path.lower())
    return any(word in SECRET_WORDS for word in words) or any(
        f"{a}_{b}" in path.lower() for a, b in (("api", "key"), ("private", "key"), ("secret", "key"))
    )


def is_field_path(model, path: str) -> bool:
    try:
        resolve_field(model, path)
    except FieldDoesNotExist:
        return False
    return True


def flat_fields(fields) -> list[str]:
    """The names in a ModelAdmin's `fields`, where a tuple puts several on one line."""
    return [name for entry in fields for name in (entry if isinstance(entry, list | tuple) else [entry])]


class BackgroundExportMixin:
    """Add to any ModelAdmin: actions "Export to CSV / Excel in the background" for users who may
    view the model. `export_columns` picks the columns; by default they are the model fields the
    admin shows (get_export_columns)."""

    # reports.admin_reports.register_admin_exports makes its report
    background_export = True
    export_columns: list[str | Column] | None = None
    export_formats: tuple[str, ...] = ("csv", "xlsx")

    def get_export_columns(self) -> list[str | Column]:
        """`export_columns` as declared; else the model fields of `list_display`, else those of the
        change form (`fields`, `fieldsets`, or every editable field, less `exclude`), never one named
        like a secret (SECRET_WORDS): an export shows no more than the admin does."""
        if self.export_columns is not None:
            return list(self.export_columns)
        return [name for name in self.shown_fields() if not looks_secret(name)]

    def shown_fields(self) -> list[str]:
        listed = [name for name in self.list_display if isinstance(name, str) and is_field_path(self.model, name)]
        if listed:
            return listed
        if self.fields:
            form = flat_fields(self.fields)
        elif self.fieldsets:
            form = [name for _, options in self.fieldsets for name in flat_fields(options.get("fields", ()))]
        else:
            form = [f.name for f in self.model._meta.concrete_fields if f.editable]
        excluded = set(self.exclude or ())
        return [name for name in form if name not in excluded and is_field_path(self.model, name)]

    # Django 6.1 asks for the actions of a place; before, there were the changelist's only.
    if django.VERSION >= (6, 1):

        def get_actions(self, request, action_location=admin.ActionLocation.CHANGE_LIST):
            actions = super().get_actions(request, action_location)
            if action_location != admin.ActionLocation.CHANGE_LIST:
                return actions
            return self.with_export_actions(request, actions)

    else:

        def get_actions(self, request):
            return self.with_export_actions(request, super().get_actions(request))

    def with_export_actions(self, request, actions: dict) -> dict:
        if self.has_view_or_change_permission(request):
            for fmt in self.export_formats:
                action = make_export_action(fmt)
                actions[action.__name__] = (action, action.__name__, action.short_description)
        return actions
