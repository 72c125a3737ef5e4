"""Chunks of a report's queryset -> a format writer -> a spool file -> the reports storage.

No more than one chunk of rows is in memory at a time. The row is the truth: progress and the
checkpoint are saved after a chunk (at most every REPORTS_PROGRESS_INTERVAL, and after the last),
and a cancel (the row leaving `running`) is noticed then. The file enters the storage in one
`save`, so a partial file is never seen. Big reports may be split across workers: reports.parallel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import zoneinfo
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.db import connections
from django.db.models import Count, F, Max, QuerySet
from django.utils import timezone

from . import fastpath
from .definitions import ParamsInvalid, Report, check_rows
from .events import ProgressNotifier, job_ended
from .files import delete_file, reports_storage, storage_name
from .models import ReportJob, Status
from .queries import key_range, own_connection
from .registry import get_report
from .writers import FORMATS, Writer, WriterOptions

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[ReportJob], None]


class JobCancelled(Exception):
    pass


def run_job(job: ReportJob, *, chunk_size: int | None = None, on_progress: ProgressCallback | None = None,
            split: bool = False) -> bool:  # fmt: skip
    """Generate the file of a queued job. Returns False when the job was no longer queued.

    With split=True (in a worker), a big report in a splittable format is handed to part jobs that
    several workers run at once (reports.parallel); this returns as soon as they are enqueued.
    """
    if not job.transition(Status.RUNNING, attempts=F("attempts") + 1, error=""):
        logger.info("Report job %s is %s, not starting it.", job.pk, job.status)
        return False
    job.refresh_from_db()
    notifier = ProgressNotifier()

    def progress(job: ReportJob) -> None:
        notifier.push(job)
        if on_progress:
            on_progress(job)

    def generate(spool: Path) -> bool:
        check_permission(job)
        source = Source.of(job)
        # Rows inserted after this moment are left out whole, never half-included.
        bounds = source.queryset.aggregate(total=Count("pk"), upper=Max("pk"))
        check_rows(job.format, bounds["total"])  # the rows may have grown since it was asked for
        upper = bounds["upper"]
        _save_progress(job, rows_done=0, rows_total=bounds["total"], checkpoint={"upper": upper, "last": None})
        progress(job)
        if split:
            from .parallel import start_parts

            if start_parts(job, source, bounds["total"], upper):
                return False  # the join job will end it

        def chunk_done(last, done: int) -> None:
            if notifier.due(done, job.rows_total):
                _save_progress(job, rows_done=done, checkpoint={"upper": upper, "last": last})
                progress(job)

        done = write_file(source, spool, None, upper, chunk_size or settings.REPORTS_CHUNK_SIZE, chunk_done)
        store_result(job, spool, done)
        return True

    run_guarded(job, generate)
    return True


def run_guarded(job: ReportJob, work: Callable[[Path], bool]) -> None:
    """Run `work(spool path)` for the job: tell the owner when it ended the job (returned True) or
    failed; a cancel needs no word (whoever cancelled told the owner). The spool file never stays."""
    spool = spool_path(job)
    try:
        ended = work(spool)
    except JobCancelled:
        logger.info("Report job %s was cancelled at row %s.", job.pk, job.rows_done)
        job.refresh_from_db()
        return
    except BaseException as exc:  # a job timeout arrives as an exception too
        if job.transition(Status.FAILED, error=describe_error(exc)):
            job_ended(job)
        raise
    finally:
        spool.unlink(missing_ok=True)
    if ended:
        job_ended(job)


@dataclass(frozen=True)
class Source:
    """Where a job's rows come from and how they are written."""

    report: Report
    queryset: QuerySet
    format: str
    params: dict

    @classmethod
    def of(cls, job: ReportJob) -> Source:
        report = get_report(job.report)
        return cls(report, report.get_report_queryset(job.params, job.owner), job.format, job.params)

    def writer(self, fh: BinaryIO) -> Writer:
        report = self.report
        options = WriterOptions(
            escape_formulas=report.escape_formulas,
            # The very object psycopg puts on UTC datetimes, so they need no conversion.
            time_zone=dt.UTC if settings.TIME_ZONE == "UTC" else zoneinfo.ZoneInfo(settings.TIME_ZONE),
            title=report.get_title(),
            extra={"delimiter": report.csv_delimiter, "filters": report.describe_params(self.params)},
        )
        return FORMATS[self.format].writer_class(fh, report.get_column_specs(), options)

    def chunks(self, fh: BinaryIO, writer: Writer, after, upper, chunk_size: int) -> Iterator[tuple[object, int]]:
        """Write the rows `after < pk <= upper` in chunks; yield (last key or None, rows) after each."""
        report, queryset = self.report, self.queryset
        if fastpath.eligible(report, self.format, queryset.db):
            batch = chunk_size * settings.REPORTS_COPY_CHUNK_FACTOR
            return fastpath.write_copy_chunks(fh, report, queryset, after, upper, batch, report.csv_delimiter)
        return write_row_chunks(writer, queryset, report.get_fetch_fields(), report.get_row_maker(), after, upper,
                                chunk_size)  # fmt: skip


def write_file(source: Source, path: Path, after, upper, chunk_size: int, chunk_done: Callable[[object, int], None],
               *, part: bool = False) -> int:  # fmt: skip
    """Write the rows `after < pk <= upper` into `path`, calling chunk_done(last key, rows so far)
    after each chunk: a whole file, or with part=True the rows alone (a part of a split report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    with path.open("wb") as fh:
        writer = source.writer(fh)
        writer.open_part() if part else writer.open()
        # Closed at once when chunk_done raises (a cancel): a COPY in progress is cancelled then.
        with contextlib.closing(source.chunks(fh, writer, after, upper, chunk_size)) as chunks:
            for last, count in chunks:
                done += count
                chunk_done(last, done)
        writer.close_part() if part else writer.close()
    return done


def store(spool: Path, name: str) -> tuple[str, int]:
    """Put a finished spool file into the reports storage in one save: (its name there, its size)."""
    size = spool.stat().st_size
    with spool.open("rb") as fh:
        return reports_storage().save(name, SpoolFile(fh)), size


def store_result(job: ReportJob, spool: Path, rows: int) -> None:
    name, size = store(spool, storage_name(job))
    if not job.transition(Status.SUCCEEDED, file=name, file_size=size, rows_done=rows, rows_total=rows):
        delete_file(name)  # cancelled while the file was being stored
        raise JobCancelled


def write_row_chunks(writer, queryset: QuerySet, fields: list[str], make_row, after, upper, chunk_size: int
                     ) -> Iterator[tuple[object, int]]:  # fmt: skip
    """Write each chunk through the writer; yield (last key or None, rows written) after each."""
    for last, rows in iter_chunks(queryset, fields, after, upper, chunk_size):
        writer.write_rows(map(make_row, rows))
        yield last, len(rows)


class SpoolFile(File):
    """A finished spool file. FileSystemStorage moves a file that has a temporary path instead of
    copying it (one rename, when on the same disk); other storages read it as usual."""

    def temporary_file_path(self) -> str:
        return self.file.name


def iter_chunks(queryset: QuerySet, fields: list[str], after, upper, chunk_size: int
                ) -> Iterator[tuple[object, Sequence]]:  # fmt: skip
    """(last key or None, rows) for the rows `after < pk <= upper`, `chunk_size` rows at a time.

    On PostgreSQL, one query read through a server-side cursor on a connection of its own (in a
    transaction there, which the cursor needs): one plan and one snapshot, and 30% faster than a
    query per chunk. Elsewhere, and where server-side cursors are off (transaction pooling), one
    query per keyset chunk `pk > last`, so no read holds a lock or a transaction between chunks.
    """
    if upper is None:
        return
    rows = key_range(queryset, after, upper)
    connection = connections[queryset.db]
    if connection.vendor == "postgresql" and not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        with own_connection(queryset.db) as reader:
            reader.set_autocommit(False)  # a server-side cursor without WITH HOLD, streamed
            values = rows.using(reader.alias).values_list(*fields).iterator(chunk_size=chunk_size)
            for chunk in itertools.batched(values, chunk_size):
                yield None, chunk
        yield upper, ()
        return
    keyed = rows.values_list("pk", *fields)
    last = after
    while True:
        chunk = list((keyed if last is None else keyed.filter(pk__gt=last))[:chunk_size])
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


def spool_path(job: ReportJob, suffix: str = "") -> Path:
    """The local file a job's attempt (or, with a suffix, one of its parts) is written to."""
    return Path(settings.REPORTS_SPOOL_DIR) / f"{job.pk}-{job.attempts}{suffix}.part"


def check_permission(job: ReportJob) -> None:
    """The owner may still run the report (checked when asked for, and again when it starts)."""
    report = get_report(job.report)
    if not report.has_permission(job.owner):
        raise PermissionDenied(f"{job.owner} may no longer run the {report.get_title()!r} report: it needs "
                               f"{report.describe_permission()}.")  # fmt: skip


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ParamsInvalid):
        return " ".join(message for messages in exc.errors.values() for message in messages)
    if isinstance(exc, PermissionDenied):
        return str(exc)
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
