"""Reports over a model as its ModelAdmin shows it: what the admin's export action runs.

The rows are read through the ModelAdmin, as the user who asked: selected rows by id from its
`get_queryset(request)`, "select all" from its changelist with the stored query string (filters and
search, validated by the admin's own lookup rules). Who may run one is what the admin demands: an
active staff user for whom the ModelAdmin's view (or change) permission holds, checked when the
export is asked for and again when a worker starts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from django.contrib.admin import ModelAdmin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import FieldError, PermissionDenied, SuspiciousOperation, ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, QueryDict

from .definitions import Report, RequestInvalid
from .registry import is_registered, register

MAX_IDS = 10_000
MAX_QUERY = 2_000
# ids quoted in an error message
SHOWN = 5


def admin_report_slug(model) -> str:
    return f"admin-{model._meta.app_label}-{model._meta.model_name}"


def admin_request(user, query: str = "") -> HttpRequest:
    """A GET request to the changelist as `user`, for the ModelAdmin's per-request hooks (a run has
    no request of its own: it may be a worker's, hours later)."""
    request = HttpRequest()
    request.method = "GET"
    request.GET = QueryDict(query)
    request.META = {"QUERY_STRING": query, "SERVER_NAME": "localhost", "SERVER_PORT": "80"}
    request.user = user
    return request


class AdminExportReport(Report):
    """A report over one model as its admin shows it; made by `register_admin_exports`."""

    formats = ["csv", "xlsx"]
    # run from the admin's changelist, not from the report page
    listed = False
    model_admin: ClassVar[ModelAdmin]

    def has_permission(self, user) -> bool:
        if not (user and user.is_active and user.is_staff):
            return False
        return self.model_admin.has_view_or_change_permission(admin_request(user))

    def describe_permission(self) -> str:
        return f"staff access and the {self.get_permission()!r} permission"

    def admin_queryset(self, user):
        return self.model_admin.get_queryset(admin_request(user))

    def clean_params(self, params: Any, user=None) -> dict[str, Any]:
        if not isinstance(params, Mapping) or set(params) - {"ids", "query"} or len(params) != 1:
            raise RequestInvalid({"params": ["Give either 'ids' (selected rows) or 'query' (the changelist's)."]})
        if "ids" in params:
            return {"ids": self.clean_ids(params["ids"])}
        query = params["query"]
        if not isinstance(query, str) or len(query) > MAX_QUERY:
            raise RequestInvalid({"query": [f"Must be a changelist query string under {MAX_QUERY:,} characters."]})
        return {"query": query}

    def clean_ids(self, ids: Any) -> list:
        if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS:
            raise RequestInvalid({"ids": [f"Must be a list of 1 to {MAX_IDS:,} ids."]})
        pk = self.get_model()._meta.pk
        keys, wrong = [], []
        for value in ids:
            try:
                if isinstance(value, bool) or not isinstance(value, str | int):
                    raise ValidationError("not a key")
                keys.append(pk.clean(value, None))
            except ValidationError:
                wrong.append(value)
        if wrong:
            raise RequestInvalid({"ids": [f"Not ids of {self.plural()}: {preview(wrong)}."]})
        return list(dict.fromkeys(keys))

    def check_request(self, cleaned: dict[str, Any], user) -> None:
        """At request time: every id is a row this user sees in the admin; the changelist query is one
        the admin accepts."""
        if "ids" in cleaned:
            ids = cleaned["ids"]
            found = set(self.admin_queryset(user).filter(pk__in=ids).values_list("pk", flat=True))
            missing = [key for key in ids if key not in found]
            if missing:
                raise RequestInvalid({"ids": [f"No such {self.plural()} (or not yours to see): {preview(missing)}."]})
            return
        try:
            changelist_queryset(self.model_admin, user, cleaned["query"]).exists()
        except (
            IncorrectLookupParameters,
            SuspiciousOperation,
            FieldError,
            ValidationError,
            ValueError,
            DatabaseError,
        ) as exc:
            raise RequestInvalid({"query": [f"The admin does not accept these filters: {str(exc)[:200]}"]}) from None

    def get_report_queryset(self, params: Mapping[str, Any], user=None):
        cleaned = self.clean_params(params, user)
        if "ids" in cleaned:
            return self.admin_queryset(user).filter(pk__in=cleaned["ids"])
        return changelist_queryset(self.model_admin, user, cleaned["query"])

    def describe_params(self, params: Mapping[str, Any]) -> str:
        if "ids" in params:
            return f"{len(params['ids']):,} selected rows"
        return f"admin filters: {params['query'] or 'none'}"

    def plural(self) -> str:
        return str(self.get_model()._meta.verbose_name_plural)


def changelist_queryset(model_admin: ModelAdmin, user, query: str):
    """The rows the admin changelist shows for this query string to this user."""
    request = admin_request(user, query)
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied(f"You may not view {model_admin.model._meta.verbose_name_plural}.")
    return model_admin.get_changelist_instance(request).get_queryset(request)


def preview(values: list) -> str:
    shown = ", ".join(repr(v)[:40] for v in values[:SHOWN])
    return shown + (f" and {len(values) - SHOWN:,} more" if len(values) > SHOWN else "")


def register_admin_exports(site) -> None:
    """A report for every ModelAdmin of `site` that offers the background export action."""
    for model, model_admin in site._registry.items():
        slug = admin_report_slug(model)
        if not getattr(model_admin, "background_export", False) or is_registered(slug):
            continue
        register(
            type(
                f"{model.__name__}AdminExport",
                (AdminExportReport,),
                {
                    "slug": slug,
                    "title": str(model._meta.verbose_name_plural).capitalize(),
                    "model": model,
                    "model_admin": model_admin,
                    "columns": model_admin.get_export_columns(),
                    "formats": list(model_admin.export_formats),
                },
            )
        )
