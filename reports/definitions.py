"""Declarative report definitions: plain class attributes with `get_*` hooks.

A report names its model (or queryset), its columns, the filters a user may pass and the formats
it offers. Requests can only ever fill in those declared filters: the ORM lookups are written by
the report's author, never taken from the request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import polars as pl
from django import forms
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, FieldError, ImproperlyConfigured
from django.db import models

from . import conf
from .writers import FORMATS, ColumnSpec
from .writers.base import frame_from_rows

FIELD_KINDS: list[tuple[type[models.Field], str]] = [
    (models.BooleanField, "boolean"),
    (models.DateTimeField, "datetime"),
    (models.DateField, "date"),
    (models.TimeField, "time"),
    (models.DecimalField, "decimal"),
    (models.FloatField, "float"),
    (models.IntegerField, "integer"),
    (models.AutoField, "integer"),
    (models.BigAutoField, "integer"),
]


def resolve_field(model: type[models.Model], path: str) -> models.Field:
    """The model field at the end of a `customer__country` path; raises FieldDoesNotExist."""
    *relations, last = path.split("__")
    for name in relations:
        field = model._meta.get_field(name)
        if not field.is_relation or field.related_model is None:
            raise FieldDoesNotExist(f"{model.__name__}.{name} is not a relation.")
        model = field.related_model
    field = model._meta.get_field(last)
    # a foreign key column exports its key
    if field.is_relation:
        field = field.target_field
    return field


def field_spec(name: str, label: str, field: models.Field, kind: str = "") -> ColumnSpec:
    """A column of this field (or expression output), of its kind unless one is given."""
    decimal = isinstance(field, models.DecimalField)
    return ColumnSpec(
        name,
        label,
        kind or field_kind(field),
        precision=field.max_digits if decimal else None,
        scale=field.decimal_places if decimal else None,
    )


def field_kind(field: models.Field) -> str:
    for field_class, kind in FIELD_KINDS:
        if isinstance(field, field_class):
            return kind
    return "text"


class Column:
    """One column: a field path (`customer__name`); a database expression (`expression=F("amount") -
    F("cost")`), computed by the database and as fast as a field; or a value computed in Python by
    the report's `value_<name>(row)` method from the field paths listed in `fields` (the slow way:
    rows are made Python objects for it)."""

    def __init__(self, name: str, label: str = "", *, kind: str = "", fields: Iterable[str] = (), expression=None):
        self.name = name
        self.label = label
        self.kind = kind
        self.fields = tuple(fields)
        self.expression = expression

    def __repr__(self) -> str:
        return f"Column({self.name!r})"


class Filter:
    """A filter the requester may fill in. `field` and `lookup` are chosen by the report's author."""

    def __init__(
        self,
        field: str,
        lookup: str = "exact",
        *,
        name: str = "",
        label: str = "",
        form_field: forms.Field | None = None,
    ):
        self.field = field
        self.lookup = lookup
        self.name = name or field.replace("__", "_")
        self.label = label
        self.form_field = form_field

    def get_form_field(self, model: type[models.Model]) -> forms.Field:
        if self.form_field is not None:
            form_field = self.form_field
        else:
            model_field = resolve_field(model, self.field)
            form_field = model_field.formfield(required=False)
            if form_field is None:
                raise ImproperlyConfigured(f"Filter {self.name!r}: give it a form_field.")
        form_field.required = False
        form_field.label = self.label or form_field.label or self.name.replace("_", " ").capitalize()
        return form_field

    def bound(self) -> str:
        """'low' for a lower bound (gt, gte), 'high' for an upper one (lt, lte), '' otherwise."""
        last = self.lookup.rpartition("__")[2]
        return {"gt": "low", "gte": "low", "lt": "high", "lte": "high"}.get(last, "")

    def range_key(self) -> tuple[str, str]:
        """Filters with the same key bound the same values: the field and any transform (`date__`)."""
        return self.field, self.lookup.rpartition("__")[0]

    def apply(self, queryset: models.QuerySet, value: Any) -> models.QuerySet:
        return queryset.filter(**{f"{self.field}__{self.lookup}": value})


def row_cap(format: str) -> int | None:
    """Formats laid out as a whole (PDF) hold every row until the end: they are refused above a cap."""
    return conf.REPORTS_PDF_MAX_ROWS if FORMATS[format].writer_class.laid_out_whole else None


def check_rows(format: str, rows: int) -> None:
    """Refuse a run of `rows` rows in a format capped below that (when asked for, and again at the start)."""
    cap = row_cap(format)
    if cap is not None and rows > cap:
        raise RequestInvalid(
            {
                "format": [
                    f"{FORMATS[format].label} is limited to {cap:,} rows and this report has {rows:,}. "
                    "Narrow the filters, or choose CSV or XLSX, which have no limit."
                ]
            }
        )


def instant_max_rows(format: str) -> int:
    """The most rows of a report in `format` that its download writes at once: REPORTS_INSTANT_MAX_ROWS
    if set (0: never), else what one worker writes in about a second in that format (its measured
    speed), and never above the format's cap."""
    limit = conf.REPORTS_INSTANT_MAX_ROWS
    if limit is None:
        limit = FORMATS[format].writer_class.rows_per_second
    return min(limit, row_cap(format) or limit)


# a filter's value, as text
MAX_VALUE_CHARS = 1_000


class RequestInvalid(Exception):
    """A request that cannot be run as asked (its format, columns, filters, a format's row cap, or
    filters that match nothing), with a dict of field -> list of messages, ready for a 400 answer."""

    # an answer names at most this many fields, however many were sent
    MAX_FIELDS = 20

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def for_fields(cls, names: Iterable, message: str) -> RequestInvalid:
        """The same message for each of `names`, bounded in number and length."""
        names = [str(n) for n in names]
        errors = {name[:100]: [message] for name in names[: cls.MAX_FIELDS]}
        if len(names) > cls.MAX_FIELDS:
            errors["params"] = [f"And {len(names) - cls.MAX_FIELDS:,} more like these."]
        return cls(errors)


# The name before 0.2.0, for report code that raises it.
ParamsInvalid = RequestInvalid


def as_text(value: str | int | float | bool) -> str:
    """A JSON scalar as the text a form field parses: true/false for booleans, digits for numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def json_safe(value: Any) -> Any:
    """A cleaned form value as it is stored in the job's params (and parsed again by the form)."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return json_safe(value.pk)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


class Report:
    """A report: what an author declares in an app's `reports.py` (with `@reports.register`), and the
    hooks that decide how it runs. Every run makes its own instance (`registry.get_report`).

    Attributes (class-level, all optional but `slug` and `model` or `queryset`):

    - `slug`: its name in the API and URLs; `title`, `description`: what users read.
    - `model` or `queryset`: the rows; one row per instance, in primary-key order.
    - `columns`: field paths (`"customer__name"`) or `Column`s (a label, a kind, a database
      `expression`, or `fields` for a `value_<name>(row)` method); default: none.
    - `filters`: the `Filter`s a requester may fill in, and no other lookup.
    - `formats`: the formats offered (default: every one); `csv_delimiter` for CSV.
    - `permission`: the permission a requester needs (default: the model's view permission).
    - `escape_formulas`: text that a spreadsheet would run is escaped (default: on).
    - `listed`: shown on the report page and in `GET /api/reports/` (admin exports are not).

    Hooks, each overridable: `get_queryset()`, `get_report_queryset(params, user)` (the rows of one
    run: the place for per-user rows), `get_columns()`, `get_filters()`, `get_formats()`,
    `get_permission()`, `has_permission(user)`, `get_title()`, `check_request(cleaned, user)` (refuse
    a request: raise RequestInvalid), and `value_<column>(row)` for columns computed in Python.
    Declarations are checked by `manage.py check` (`Report.check`: reports.E001 to E008).
    A report holds what its author declares and no state of a run: what a run reads and writes is
    its `layout(columns)`, a Layout.
    """

    slug: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    model: ClassVar[type[models.Model] | None] = None
    queryset: ClassVar[models.QuerySet | None] = None
    columns: ClassVar[list[str | Column]] = []
    filters: ClassVar[list[Filter]] = []
    # None: every format there is
    formats: ClassVar[list[str] | None] = None
    # None: the model's view permission
    permission: ClassVar[str | None] = None
    # the report's author may switch it off; never the requester
    escape_formulas: ClassVar[bool] = True
    csv_delimiter: ClassVar[str] = ","
    # shown on the report page and in GET /api/reports/
    listed: ClassVar[bool] = True

    # -- hooks -------------------------------------------------------------------------------
    def get_model(self) -> type[models.Model]:
        if self.model is not None:
            return self.model
        if self.queryset is not None:
            return self.queryset.model
        raise ImproperlyConfigured(f"Report {self.slug!r} needs a model or a queryset.")

    def get_queryset(self) -> models.QuerySet:
        if self.queryset is not None:
            return self.queryset.all()
        return self.get_model()._default_manager.all()

    def get_title(self) -> str:
        return self.title or self.slug.replace("-", " ").replace("_", " ").capitalize()

    def get_formats(self) -> list[str]:
        return list(self.formats) if self.formats is not None else list(FORMATS)

    def get_permission(self) -> str:
        if self.permission is not None:
            return self.permission
        meta = self.get_model()._meta
        return f"{meta.app_label}.view_{meta.model_name}"

    def has_permission(self, user) -> bool:
        return bool(user and user.is_active and user.has_perm(self.get_permission()))

    def describe_permission(self) -> str:
        """What a user needs to run this report, in words, for the refusal."""
        return f"the {self.get_permission()!r} permission"

    def get_columns(self) -> list[Column]:
        return [c if isinstance(c, Column) else Column(c) for c in self.columns]

    def get_filters(self) -> list[Filter]:
        return list(self.filters)

    # -- columns -----------------------------------------------------------------------------
    def clean_columns(self, columns: Any) -> list[str]:
        """The columns a request asks for: some of the declared ones, in the order given. [] means all
        of them as declared (also when they are asked for in that order). Raises RequestInvalid."""
        if columns is None:
            return []
        declared = [c.name for c in self.get_columns()]
        if not isinstance(columns, list) or not columns:
            raise RequestInvalid({"columns": ["Must be a non-empty list of column names."]})
        # Checked first, so that what follows is linear in a list no longer than the declaration.
        if len(columns) > len(declared):
            raise RequestInvalid(
                {"columns": [f"At most {len(declared)} names: the report has {len(declared)} columns."]}
            )
        if not all(isinstance(c, str) for c in columns):
            raise RequestInvalid({"columns": ["Must be a non-empty list of column names."]})
        known = set(declared)
        unknown = [c for c in columns if c not in known]
        if unknown:
            shown = ", ".join(repr(c[:60]) for c in unknown[:5]) + (
                f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
            )
            plural = "s" if len(unknown) > 1 else ""
            raise RequestInvalid(
                {"columns": [f"Unknown column{plural} {shown}. This report's columns: {', '.join(declared)}."]}
            )
        twice = sorted(name for name, count in Counter(columns).items() if count > 1)
        if twice:
            raise RequestInvalid({"columns": [f"Each column at most once: {', '.join(twice)} given more than once."]})
        return [] if columns == declared else list(columns)

    def layout(self, names: list[str] | None = None) -> Layout:
        """What a run of this report reads and writes: the columns `names` in their order (checked by
        clean_columns; none or [] for all, as declared)."""
        chosen = self.clean_columns(names or None)
        columns = self.get_columns()
        if chosen:
            by_name = {c.name: c for c in columns}
            columns = [by_name[name] for name in chosen]
        return Layout(self, tuple(columns))

    def is_computed(self, column: Column) -> bool:
        return callable(getattr(self, f"value_{column.name}", None))

    def output_field(self, column: Column) -> models.Field:
        """The model field a column reads, or the one its database expression gives."""
        if column.expression is None:
            return resolve_field(self.get_model(), column.name)
        queryset = self.get_model()._default_manager.annotate(**{column.name: column.expression})
        return queryset.query.annotations[column.name].output_field

    # -- params ------------------------------------------------------------------------------
    def get_params_form_class(self) -> type[forms.Form]:
        model = self.get_model()
        form_fields = {f.name: f.get_form_field(model) for f in self.get_filters()}
        return type(f"{type(self).__name__}ParamsForm", (forms.Form,), form_fields)

    def clean_params(self, params: Any, user=None) -> dict[str, Any]:
        """Validated, typed filter values; raises RequestInvalid with per-field messages (a bounded
        number of them, whatever was sent). `user` is who asks, for reports whose checks need it."""
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise RequestInvalid({"params": ["Must be an object of filter names to values."]})
        allowed = {f.name for f in self.get_filters()}
        unknown = [k for k in params if k not in allowed]
        if unknown:
            hint = f"Allowed: {', '.join(sorted(allowed))}." if allowed else "This report takes no filters."
            raise RequestInvalid.for_fields(unknown, f"Unknown filter. {hint}")
        bad_types = [k for k, v in params.items() if v is not None and not isinstance(v, str | int | float | bool)]
        if bad_types:
            raise RequestInvalid.for_fields(bad_types, "Must be a single value (text, number or boolean).")
        too_long = [k for k, v in params.items() if isinstance(v, str) and len(v) > MAX_VALUE_CHARS]
        if too_long:
            raise RequestInvalid.for_fields(too_long, f"At most {MAX_VALUE_CHARS:,} characters.")
        # Form fields parse text: a JSON number or boolean is read as the text it stands for.
        data = {k: as_text(v) for k, v in params.items() if v is not None}
        form = self.get_params_form_class()(data=data)
        try:
            valid = form.is_valid()
        # a form field's own parsing gave up
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise RequestInvalid({"params": [f"Invalid value: {str(exc)[:200]}"]}) from None
        if not valid:
            raise RequestInvalid({k: [str(m) for m in v] for k, v in form.errors.items()})
        cleaned = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        self.check_params(cleaned)
        return cleaned

    def check_params(self, cleaned: dict[str, Any]) -> None:
        """Checks across filters: a range given the wrong way round (a `gte` filter and an `lte` one on
        the same field, the first above the second) is refused."""
        filters = [f for f in self.get_filters() if f.name in cleaned]
        for low, high in itertools.permutations(filters, 2):
            if low.range_key() != high.range_key() or (low.bound(), high.bound()) != ("low", "high"):
                continue
            # values that do not compare say nothing
            with contextlib.suppress(TypeError):
                if cleaned[low.name] > cleaned[high.name]:
                    label = self.get_params_form_class().base_fields[low.name].label
                    raise RequestInvalid({high.name: [f"Must not be before {label} ({cleaned[low.name]})."]})

    def check_request(self, cleaned: dict[str, Any], user) -> None:
        """Checks that need the database or the user, made once when a run is asked for (not again by
        the worker); raise RequestInvalid. None by default."""

    def serialize_params(self, cleaned: Mapping[str, Any]) -> dict[str, Any]:
        return {k: json_safe(v) for k, v in cleaned.items()}

    def filter_queryset(self, queryset: models.QuerySet, cleaned: Mapping[str, Any]) -> models.QuerySet:
        for report_filter in self.get_filters():
            if report_filter.name in cleaned:
                queryset = report_filter.apply(queryset, cleaned[report_filter.name])
        return queryset

    def describe_params(self, params: Mapping[str, Any]) -> str:
        """The filters of a run in words, for a file's heading: "Status: paid, Minimum amount: 10"."""
        form = self.get_params_form_class()()
        return ", ".join(f"{form.fields[k].label}: {v}" for k, v in params.items() if k in form.fields)

    def get_report_queryset(self, params: Mapping[str, Any], user=None) -> models.QuerySet:
        """The rows of a run with the given stored (JSON) params, for the user who asked (its columns'
        database expressions are the layout's to add: Layout.annotate)."""
        return self.filter_queryset(self.get_queryset(), self.clean_params(params, user))

    # -- the declaration's check (reports.checks, run by `manage.py check`) -----------------------
    @classmethod
    def check(cls) -> list[checks.CheckMessage]:
        """Mistakes in the declaration, as Django system check messages (reports.E001 ...)."""
        report, name = cls(), f"{cls.__module__}.{cls.__qualname__}"

        def error(code: int, message: str, hint: str = "") -> checks.Error:
            return checks.Error(f"Report {cls.slug!r}: {message}", hint=hint or None, obj=name, id=f"reports.E00{code}")

        try:
            report.get_model()
        except ImproperlyConfigured:
            return [error(1, "it has no model and no queryset.", "Set `model` or `queryset`.")]
        errors = []
        if isinstance(report.get_model()._meta.pk, models.CompositePrimaryKey):
            errors.append(
                error(
                    8,
                    f"{report.get_model().__name__} has a composite primary key.",
                    "A report cuts its rows into ranges of one key: give the model a single-field primary "
                    "key (an id, a UUID, a text key), or report over a view with one.",
                )
            )
        if not report.get_columns():
            errors.append(error(2, "it declares no columns."))
        try:
            layout = report.layout()
            layout.column_specs()
            # Computed columns' fields too; database expressions as a run annotates them.
            layout.annotate(report.get_queryset()).values_list(*layout.fetch_fields())
        except (FieldDoesNotExist, FieldError) as exc:
            errors.append(
                error(
                    3,
                    f"a column is not a field: {exc}",
                    "Columns are field paths like 'customer__name', or computed by a value_<name>() method.",
                )
            )
        except ValueError as exc:
            errors.append(error(4, str(exc)))
        unknown = sorted(set(report.get_formats()) - set(FORMATS))
        if unknown:
            errors.append(error(5, f"unknown formats {unknown}.", f"Formats: {', '.join(FORMATS)}."))
        try:
            report.get_params_form_class()
        except (FieldDoesNotExist, ImproperlyConfigured) as exc:
            errors.append(error(6, f"a filter is wrong: {exc}"))
        if len(cls.csv_delimiter.encode()) != 1 or cls.csv_delimiter in '"\r\n':
            errors.append(
                error(
                    7,
                    f"csv_delimiter {cls.csv_delimiter!r} is not one ASCII character.",
                    "A comma, a semicolon, a tab or the like; not a quote or a line break.",
                )
            )
        return errors


@dataclasses.dataclass(frozen=True)
class Layout:
    """What one run of a report reads and writes: `columns` (the chosen ones in their order, or all
    as declared), and from them the fields fetched, the specs the writers take and how a fetched
    batch becomes the report's columns. Made by Report.layout(); nothing in it changes in a run."""

    report: Report
    columns: tuple[Column, ...]

    def column_specs(self) -> list[ColumnSpec]:
        report, model = self.report, self.report.get_model()
        specs = []
        for column in self.columns:
            if report.is_computed(column):
                specs.append(ColumnSpec(column.name, column.label or _humanize(column.name), column.kind or "text"))
                continue
            field = report.output_field(column)
            label = column.label or (
                _humanize(column.name) if column.expression is not None else _label_for(model, column.name)
            )
            specs.append(field_spec(column.name, label, field, column.kind))
        return specs

    def fetch_specs(self) -> list[ColumnSpec]:
        """What is read from the database, in fetch_fields() order, typed as writers take it."""
        report = self.report
        by_name = {c.name: c for c in self.columns if not report.is_computed(c)}
        model = report.get_model()
        return [
            field_spec(
                path,
                path,
                report.output_field(by_name[path]) if path in by_name else resolve_field(model, path),
                by_name[path].kind if path in by_name else "",
            )
            for path in self.fetch_fields()
        ]

    def annotate(self, queryset: models.QuerySet) -> models.QuerySet:
        """The rows with the database expressions of these columns."""
        expressions = {c.name: c.expression for c in self.columns if c.expression is not None}
        return queryset.annotate(**expressions) if expressions else queryset

    def fetch_fields(self) -> list[str]:
        """The field paths read from the database, in order, without repeats."""
        fields: list[str] = []
        for column in self.columns:
            for path in column.fields if self.report.is_computed(column) else (column.name,):
                if path not in fields:
                    fields.append(path)
        return fields

    def has_computed_columns(self) -> bool:
        return any(self.report.is_computed(c) for c in self.columns)

    def frame_maker(self) -> Callable[[pl.DataFrame], pl.DataFrame]:
        """A function from a fetched batch (a column per fetch field) to the report's columns. With
        Python-computed columns, the batch is made rows of Python values (decimals as Decimal) for
        their value_<name>(row) methods: the slow way."""
        columns = self.columns
        if not self.has_computed_columns():
            return lambda frame: frame.select([c.name for c in columns])
        report = self.report
        getters = [
            getattr(report, f"value_{c.name}") if report.is_computed(c) else _item_getter(c.name) for c in columns
        ]
        decimals = [s.name for s in self.fetch_specs() if s.kind == "decimal"]
        specs = self.column_specs()

        def make_frame(frame: pl.DataFrame) -> pl.DataFrame:
            rows = []
            for row in frame.iter_rows(named=True):
                for name in decimals:
                    row[name] = None if row[name] is None else decimal.Decimal(row[name])
                rows.append(tuple(get(row) for get in getters))
            return frame_from_rows(specs, rows)

        return make_frame


def _humanize(name: str) -> str:
    return name.replace("__", " ").replace("_", " ").capitalize()


def _label_for(model: type[models.Model], path: str) -> str:
    if "__" in path:
        return _humanize(path)
    return str(model._meta.get_field(path).verbose_name).capitalize()


def _item_getter(name: str) -> Callable[[dict], Any]:
    return lambda row: row[name]
