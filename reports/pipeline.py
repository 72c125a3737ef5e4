"""Keyset chunks of a report's queryset -> a format writer -> a spool file -> the reports storage.

No more than one chunk of rows is in memory at a time. The row is the truth: progress and the
checkpoint are saved after every chunk, and a cancel (the row leaving `running`) is noticed at
the next chunk boundary. The file enters the storage in one `save`, so a partial file is never seen.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db.models import Count, F, Max, QuerySet
from django.utils import timezone

from . import fastpath
from .events import ProgressNotifier, job_ended
from .files import delete_file, reports_storage, storage_name
from .models import ReportJob, Status
from .registry import get_report
from .writers import FORMATS, WriterOptions

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[ReportJob], None]


class JobCancelled(Exception):
    pass


def run_job(job: ReportJob, *, chunk_size: int | None = None, on_progress: ProgressCallback | None = None) -> bool:
    """Generate the file of a queued job. Returns False when the job was no longer queued."""
    if not job.transition(Status.RUNNING, attempts=F("attempts") + 1, error=""):
        logger.info("Report job %s is %s, not starting it.", job.pk, job.status)
        return False
    job.refresh_from_db()
    spool = spool_path(job)
    notifier = ProgressNotifier()

    def progress(job: ReportJob) -> None:
        notifier(job)
        if on_progress:
            on_progress(job)

    try:
        _generate(job, spool, chunk_size or settings.REPORTS_CHUNK_SIZE, progress)
    except JobCancelled:
        logger.info("Report job %s was cancelled at row %s.", job.pk, job.rows_done)
        job.refresh_from_db()
        return True  # whoever cancelled it told the owner
    except BaseException as exc:  # a job timeout arrives as an exception too
        if job.transition(Status.FAILED, error=describe_error(exc)):
            job_ended(job)
        raise
    finally:
        spool.unlink(missing_ok=True)
    job_ended(job)
    return True


def _generate(job: ReportJob, spool: Path, chunk_size: int, on_progress: ProgressCallback) -> None:
    report = get_report(job.report)
    fmt = FORMATS[job.format]
    queryset = report.get_report_queryset(job.params, job.owner)
    # Rows inserted after this moment are left out whole, never half-included.
    bounds = queryset.aggregate(total=Count("pk"), upper=Max("pk"))
    upper = bounds["upper"]
    _save_progress(job, rows_done=0, rows_total=bounds["total"], checkpoint={"upper": upper, "last": None})
    on_progress(job)

    options = WriterOptions(
        escape_formulas=report.escape_formulas,
        # The very object psycopg puts on UTC datetimes, so they need no conversion.
        time_zone=dt.UTC if settings.TIME_ZONE == "UTC" else zoneinfo.ZoneInfo(settings.TIME_ZONE),
        title=report.get_title(),
        extra={"delimiter": report.csv_delimiter, "filters": report.describe_params(job.params)},
    )
    spool.parent.mkdir(parents=True, exist_ok=True)
    with spool.open("wb") as fh:
        writer = fmt.writer_class(fh, report.get_column_specs(), options)
        writer.open()
        if fastpath.eligible(report, job.format, queryset.db):
            copy_chunk = chunk_size * settings.REPORTS_COPY_CHUNK_FACTOR
            chunks = fastpath.write_copy_chunks(fh, report, queryset, upper, copy_chunk, report.csv_delimiter)
        else:
            chunks = write_row_chunks(writer, queryset, report.get_fetch_fields(), report.get_row_maker(), upper,
                                      chunk_size)  # fmt: skip
        done = 0
        for last, count in chunks:
            done += count
            _save_progress(job, rows_done=done, checkpoint={"upper": upper, "last": last})
            on_progress(job)
        writer.close()

    storage = reports_storage()
    size = spool.stat().st_size
    with spool.open("rb") as fh:
        name = storage.save(storage_name(job), SpoolFile(fh))
    if not job.transition(Status.SUCCEEDED, file=name, file_size=size, rows_done=done, rows_total=done):
        delete_file(name)  # cancelled while the file was being stored
        raise JobCancelled


def write_row_chunks(writer, queryset: QuerySet, fields: list[str], make_row, upper, chunk_size: int
                     ) -> Iterator[tuple[object, int]]:  # fmt: skip
    """Write each keyset chunk through the writer; yield (last key, rows written) after each."""
    for last, rows in iter_chunks(queryset, fields, upper, chunk_size):
        writer.write_rows(map(make_row, rows))
        yield last, len(rows)


class SpoolFile(File):
    """A finished spool file. FileSystemStorage moves a file that has a temporary path instead of
    copying it (one rename, when on the same disk); other storages read it as usual."""

    def temporary_file_path(self) -> str:
        return self.file.name


def iter_chunks(queryset: QuerySet, fields: list[str], upper, chunk_size: int) -> Iterator[tuple[object, list]]:
    """(last key, rows) for each keyset chunk `upper >= pk > last`, rows without the key."""
    if upper is None:
        return
    base = queryset.filter(pk__lte=upper).order_by("pk").values_list("pk", *fields)
    last = None
    while True:
        page = base if last is None else base.filter(pk__gt=last)
        chunk = list(page[:chunk_size])
        if not chunk:
            return
        last = chunk[-1][0]
        yield last, [row[1:] for row in chunk]
        if len(chunk) < chunk_size:
            return


def _save_progress(job: ReportJob, **fields) -> None:
    """Save progress if the job is still running; otherwise it was cancelled (or swept): stop."""
    fields["updated_at"] = timezone.now()
    if not ReportJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(**fields):
        raise JobCancelled
    for name, value in fields.items():
        setattr(job, name, value)


def spool_path(job: ReportJob) -> Path:
    return Path(settings.REPORTS_SPOOL_DIR) / f"{job.pk}-{job.attempts}.part"


def describe_error(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
