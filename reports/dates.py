"""Relative dates in date filters ("today", "last month"): what they mean at a moment, in a time zone.

A request may give them (resolved when it is asked for, in the site's time zone); a schedule keeps
them, resolved when each of its runs starts, in its own time zone (reports.schedules).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django import forms

from .definitions import Report

RELATIVE_DATES = ("today", "yesterday", "last 7 days", "this month", "last month")


def period(word: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last day a relative date stands for. "last 7 days" are the seven whole days
    before today; "this month" runs from its first day to today."""
    if word == "today":
        return today, today
    if word == "yesterday":
        return today - dt.timedelta(days=1), today - dt.timedelta(days=1)
    if word == "last 7 days":
        return today - dt.timedelta(days=7), today - dt.timedelta(days=1)
    first = today.replace(day=1)
    if word == "this month":
        return first, today
    last = first - dt.timedelta(days=1)
    # last month
    return last.replace(day=1), last


def resolve_relative_dates(report: Report, params: Any, now: dt.datetime, zone: dt.tzinfo) -> Any:
    """`params` with each relative value of a date filter replaced by the date it means now in `zone`:
    a lower bound (gte, gt) takes the period's first day, an upper bound (lte, lt) its last (for a
    `lt` filter, the day after), any other lookup its first. Other values are left for the report's
    own validation to judge."""
    if not isinstance(params, Mapping):
        return params
    fields = report.get_params_form_class().base_fields
    filters = {f.name: f for f in report.get_filters()}
    today = now.astimezone(zone).date()
    resolved = dict(params)
    for name, value in params.items():
        field = fields.get(name)
        if not isinstance(value, str) or value.strip().lower() not in RELATIVE_DATES:
            continue
        if not isinstance(field, forms.DateField | forms.DateTimeField):
            continue
        first, last = period(value.strip().lower(), today)
        lookup = filters[name].lookup.rpartition("__")[2]
        day = {"lte": last, "lt": last + dt.timedelta(days=1)}.get(lookup, first)
        if isinstance(field, forms.DateTimeField):
            resolved[name] = dt.datetime.combine(day, dt.time(), tzinfo=zone).isoformat()
        else:
            resolved[name] = day.isoformat()
    return resolved
