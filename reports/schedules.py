"""Reports on a schedule: a saved request (report, format, columns, filters) run at its slots.

A schedule's slots are times of day in its owner's time zone: every day, on chosen weekdays, or on a
day of the month (its last day when the month is shorter). A local time that a DST change skips
runs an hour later; one it repeats runs once, at its first occurrence.

RQ's cron scheduler puts `reports.tasks.tick_schedules` on the queue every minute (reports.queues;
the sweeper process hosts it); the tick starts each due schedule's run. A slot runs once however
many ticks see it: the schedule row is taken with SELECT ... FOR UPDATE SKIP LOCKED and moved to
its next slot in the same transaction, and a job's (schedule, slot) is unique. Slots missed while
nothing ran (every process down) run once, as the latest of them, when the tick comes back.

Each run is an ordinary job of the owner, asked for as the owner would (same permission, limits and
validation, at run time): a run that cannot start (the permission was lost, a column or filter no
longer exists, too many reports running) is recorded as a failed job, which notifies its owner.
Date filters may hold relative values ("last month", reports.dates), resolved in the schedule's time
zone when each run starts.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import zoneinfo

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import conf
from .definitions import RequestInvalid
from .endings import end_job
from .events import describe_error
from .models import Frequency, ReportJob, ReportSchedule, Status
from .registry import NotRegistered
from .services import TooManyJobs, request_report, validate_request

logger = logging.getLogger(__name__)

# -- Slots ----------------------------------------------------------------------------------------


def zone_of(schedule: ReportSchedule) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(schedule.time_zone)


def is_run_day(schedule: ReportSchedule, day: dt.date) -> bool:
    if schedule.frequency == Frequency.WEEKLY:
        return day.weekday() in schedule.weekdays
    if schedule.frequency == Frequency.MONTHLY:
        return day.day == min(schedule.day_of_month, calendar.monthrange(day.year, day.month)[1])
    return True


def next_slot(schedule: ReportSchedule, after: dt.datetime) -> dt.datetime:
    """The schedule's first slot after `after`, in UTC."""
    zone = zone_of(schedule)
    day = after.astimezone(zone).date()
    # every schedule has a slot within a month: this is a year
    for offset in range(32 * 12):
        candidate = day + dt.timedelta(days=offset)
        if not is_run_day(schedule, candidate):
            continue
        # A wall time a DST change skips maps one hour on (fold 0); a repeated one to its first occurrence.
        slot = dt.datetime.combine(candidate, schedule.time, tzinfo=zone).astimezone(dt.UTC)
        if slot > after:
            return slot
    raise ValueError(f"Schedule {schedule.pk} has no slot within a year.")


def latest_slot(schedule: ReportSchedule, now: dt.datetime) -> dt.datetime:
    """The last slot at or before `now`, from the schedule's next_run_at on: missed slots run once."""
    slot = schedule.next_run_at
    while (following := next_slot(schedule, slot)) <= now:
        slot = following
    return slot


# -- Runs -----------------------------------------------------------------------------------------


def run_due(now: dt.datetime | None = None) -> int:
    """Start a run of every schedule whose slot has come (the minute's tick); the number started."""
    now = now or timezone.now()
    started = 0
    for pk in list(ReportSchedule.objects.filter(paused=False, next_run_at__lte=now).values_list("pk", flat=True)):
        try:
            started += run_schedule(pk, now)
        # this one is tried again at the next tick (its slot was not moved); the others go on
        except Exception:
            logger.exception("Schedule %s: its run could not be started.", pk)
    return started


def run_schedule(pk: int, now: dt.datetime) -> int:
    """Start the schedule's run for its latest slot up to `now` and move it to its next slot: 1, or 0
    when another tick has it (or had it)."""
    with transaction.atomic():
        schedule = (
            ReportSchedule.objects.select_for_update(skip_locked=True)
            .select_related("owner")
            .filter(pk=pk, paused=False, next_run_at__lte=now)
            .first()
        )
        if schedule is None:
            return 0
        # deactivated without the signal (a queryset update): nothing runs
        if not schedule.owner.is_active:
            pause_for_owner(schedule)
            return 0
        slot = latest_slot(schedule, now)
        schedule.next_run_at = next_slot(schedule, now)
        schedule.save(update_fields=["next_run_at"])
        try:
            with transaction.atomic():
                start_run(schedule, slot, now)
        # this slot's run exists already
        except IntegrityError:
            return 0
    return 1


def start_run(schedule: ReportSchedule, slot: dt.datetime, now: dt.datetime) -> ReportJob:
    """The run of one slot: a job of the owner, or a failed one saying why it could not start."""
    fields = {"schedule": schedule, "slot": slot}
    try:
        return request_report(
            user=schedule.owner,
            slug=schedule.report,
            format=schedule.format,
            params=schedule.params,
            columns=schedule.columns or None,
            delivery="background",
            dates_at=(now, zone_of(schedule)),
            **fields,
        )
    except (NotRegistered, PermissionDenied, RequestInvalid, TooManyJobs) as exc:
        error = f"The scheduled run could not start: {describe_error(exc)}"
        # Its row records the slot as run; it ends at once, as every job ends.
        job = ReportJob.objects.create(
            owner=schedule.owner,
            report=schedule.report,
            format=schedule.format,
            params=schedule.params,
            columns=schedule.columns,
            **fields,
        )
        end_job(job, Status.FAILED, error=error, finished_at=now)
        logger.warning("Schedule %s, slot %s: %s", schedule.pk, slot.isoformat(), error)
        return job


# -- Saving, pausing ------------------------------------------------------------------------------

SCHEDULE_FIELDS = (
    "report",
    "format",
    "params",
    "columns",
    "frequency",
    "weekdays",
    "day_of_month",
    "time",
    "time_zone",
)


def save_schedule(user, data: dict) -> ReportSchedule:
    """A new schedule of `user` from the API's fields, checked as a request would be now (report,
    permission, format, columns, filters with relative dates resolved) and as a schedule. Raises
    NotRegistered, PermissionDenied and RequestInvalid."""
    errors: dict[str, list[str]] = {}
    frequency = data.get("frequency")
    if frequency not in Frequency.values:
        errors["frequency"] = [f"Choose one of: {', '.join(Frequency.values)}."]
    weekdays = data.get("weekdays") or []
    if frequency == Frequency.WEEKLY and not (
        isinstance(weekdays, list)
        and weekdays
        and len(weekdays) <= 7
        and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in weekdays)
    ):
        errors["weekdays"] = ["A weekly schedule needs its days: a list of 0 (Monday) to 6 (Sunday)."]
    day = data.get("day_of_month")
    if frequency == Frequency.MONTHLY and not (isinstance(day, int) and not isinstance(day, bool) and 1 <= day <= 31):
        errors["day_of_month"] = ["A monthly schedule needs its day: 1 to 31 (a shorter month runs on its last day)."]
    try:
        at = dt.time.fromisoformat(data.get("time") or "")
        if at.tzinfo is not None or at.second or at.microsecond:
            raise ValueError
    except (TypeError, ValueError):
        errors["time"] = ['A time of day as "HH:MM", e.g. "08:00".']
        at = None
    zone_name = data.get("time_zone")
    if not isinstance(zone_name, str) or zone_name not in zoneinfo.available_timezones():
        errors["time_zone"] = ['An IANA time zone name, e.g. "Europe/Berlin".']
    if errors:
        raise RequestInvalid(errors)
    # As a request now would be: the same checks and messages, nothing recorded.
    zone = zoneinfo.ZoneInfo(zone_name)
    now = timezone.now()
    columns, _, _ = validate_request(
        user=user,
        slug=data["report"],
        format=data["format"],
        params=data.get("params"),
        columns=data.get("columns"),
        dates_at=(now, zone),
    )
    schedule = ReportSchedule(
        owner=user,
        report=data["report"],
        format=data["format"],
        columns=columns,
        params={k: v for k, v in (data.get("params") or {}).items() if v not in (None, "")},
        frequency=frequency,
        weekdays=sorted(set(weekdays)) if frequency == Frequency.WEEKLY else [],
        day_of_month=day if frequency == Frequency.MONTHLY else None,
        time=at,
        time_zone=zone_name,
    )
    schedule.next_run_at = next_slot(schedule, now)
    with transaction.atomic():
        # Serialise this user's saves, so that requests at once cannot all slip under the limit.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        limit = conf.REPORTS_MAX_SCHEDULES_PER_USER
        if ReportSchedule.objects.filter(owner=user).count() >= limit:
            raise RequestInvalid({"__all__": [f"You have {limit} schedules already; delete one first."]})
        schedule.save()
    return schedule


def set_paused(schedule: ReportSchedule, paused: bool, because: str = "") -> ReportSchedule:
    """Pause (no slot runs) or resume (from the next slot on: slots passed while paused do not run)."""
    schedule.paused = paused
    schedule.paused_because = because if paused else ""
    schedule.next_run_at = None if paused else next_slot(schedule, timezone.now())
    schedule.save(update_fields=["paused", "paused_because", "next_run_at"])
    return schedule


OWNER_INACTIVE = "Its owner's account was deactivated."


def pause_for_owner(schedule: ReportSchedule) -> None:
    """A deactivated owner's schedule pauses, saying why: none of its slots runs, fails or sends mail."""
    logger.info("Schedule %s paused: %s", schedule.pk, OWNER_INACTIVE)
    set_paused(schedule, True, OWNER_INACTIVE)
