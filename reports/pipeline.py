"""The work of a report, in two kinds of runs: a segment's rows -> writer -> spool file -> segment
object, and the segment objects -> one file in the reports storage.

No more than one chunk of rows is in memory at a time. A segment's run saves its progress (and the
job's, the sum over its segments) at most every REPORTS_PROGRESS_INTERVAL, and notices then that it
must stop: the job was cancelled or failed, or the segment was given to another run. A segment
object is written once complete and recorded on its row only by the run that holds the segment;
the file is stored in one save (or one multipart upload), so nothing is ever seen half-written.
Who runs what, and when, is reports.tasks and reports.batches: nothing here enqueues anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import tempfile
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.storage import FileSystemStorage
from django.utils import timezone

from .assembly import Checksum, read_piece, store_pieces
from .definitions import Report
from .events import ProgressNotifier, job_ended
from .files import (
    delete_file,
    delete_siblings,
    join_spool,
    reports_storage,
    segment_name,
    segment_spool,
    spool_bytes,
    storage_name,
    store,
)
from .models import ReportJob, ReportSegment, SegmentStatus, Status
from .queries import report_frames
from .writers import FORMATS, SegmentInfo, Writer, WriterOptions

logger = logging.getLogger(__name__)
ProgressCallback = Callable[[ReportJob], None]


class Stopped(Exception):
    """The run stops: its job was cancelled or failed, or its segment or join went to another run."""


class SpoolFull(Exception):
    plain = True  # its message is for the owner as it is


def writer_for(job: ReportJob, report: Report, fh: BinaryIO) -> Writer:
    options = WriterOptions(
        escape_formulas=report.escape_formulas,
        # The very object psycopg puts on UTC datetimes, so they need no conversion.
        time_zone=dt.UTC if settings.TIME_ZONE == "UTC" else zoneinfo.ZoneInfo(settings.TIME_ZONE),
        title=report.get_title(),
        extra={"delimiter": report.csv_delimiter, "filters": report.describe_params(job.params)},
    )
    return FORMATS[job.format].writer_class(fh, report.get_column_specs(), options)


def written_batches(job: ReportJob, report: Report, writer: Writer, after, upper, chunk_size: int) -> Iterator[int]:
    """Write the rows `after < pk <= upper` a batch at a time; yield the rows written after each."""
    queryset = report.get_report_queryset(job.params, job.owner)
    for frame in report_frames(report, queryset, after, upper, chunk_size):
        writer.write_batch(frame)
        yield frame.height


def write_segment(segment: ReportSegment, *, lease, chunk_size: int | None = None,
                  on_progress: ProgressCallback | None = None) -> None:  # fmt: skip
    """Write the segment's rows into its segment object and record it done. Raises Stopped."""
    job = segment.job
    report = job.bound_report()
    spool = segment_spool(segment)
    spool.parent.mkdir(parents=True, exist_ok=True)
    notifier = ProgressNotifier()
    cap, used = settings.REPORTS_SPOOL_MAX_MB * 1024 * 1024, spool_bytes()
    mine = ReportSegment.objects.filter(pk=segment.pk, status=SegmentStatus.RUNNING, attempts=segment.attempts)

    def progress(done: int, written: int) -> None:
        if lease.lost:
            raise Stopped
        if cap and used + written > cap:
            raise SpoolFull(f"This worker's spool folder would pass its cap of {settings.REPORTS_SPOOL_MAX_MB:,} MB "
                            "(REPORTS_SPOOL_MAX_MB).")  # fmt: skip
        if notifier.due(done, segment.rows_planned):
            if not mine.update(rows_done=done) or not job.sum_progress():
                raise Stopped
            notifier.push(job)
            if on_progress:
                on_progress(job)

    try:
        with spool.open("wb") as fh:
            writer = writer_for(job, report, fh)
            writer.open_segment()
            done = 0
            # Closed at once when progress() raises: the read in progress is cancelled then.
            chunk_size = chunk_size or settings.REPORTS_CHUNK_SIZE
            rows = written_batches(job, report, writer, segment.after, segment.upper, chunk_size)
            with contextlib.closing(rows):
                for count in rows:
                    done += count
                    progress(done, fh.tell())
            meta = writer.close_segment()
        checksum = Checksum.of_file(spool)
        name, size = store(spool, segment_name(segment))
        if not mine.update(status=SegmentStatus.DONE, file=name, bytes=size, checksum=checksum, meta=meta,
                           rows_done=done, finished_at=timezone.now(), error=""):  # fmt: skip
            delete_file(name)  # the segment went to another run meanwhile: its object is theirs to write
            raise Stopped
        job.sum_progress()
    finally:
        spool.unlink(missing_ok=True)


def join(job: ReportJob, *, lease) -> None:
    """Put the job's done segments together into its file, store it and end the job. Raises Stopped."""
    report = job.bound_report()
    segments = list(job.segments.order_by("index"))
    if any(segment.status != SegmentStatus.DONE for segment in segments):
        raise Stopped
    infos = [SegmentInfo(s.file, s.bytes, s.rows_done, s.meta) for s in segments]
    pieces = writer_for(job, report, io.BytesIO()).assemble(infos)
    checksums = {s.file: s.checksum for s in segments}
    name, size = store_pieces(pieces, storage_name(job), spool=join_spool(job), checksums=checksums)
    rows = sum(segment.rows_done for segment in segments)
    if lease.lost or not job.transition(Status.SUCCEEDED, file=name, file_size=size, rows_done=rows, rows_total=rows,
                                        held_by=""):  # fmt: skip
        delete_file(name)  # cancelled, or another run joined them meanwhile
        raise Stopped
    discard_segment_files(job)
    delete_siblings(name)  # a file an earlier join stored before it died
    job_ended(job)


def write_instant(job: ReportJob) -> BinaryIO:
    """A small job's whole file, written by this process into a temporary file (returned at its end)
    and the job ended: one segment and the join of a background run, so the same bytes, never stored.
    Its rows are those up to the last key when it was asked for (upper_key).
    Raises PermissionDenied (the owner may no longer run it) and ParamsInvalid."""
    report = job.bound_report()
    if not report.has_permission(job.owner):
        raise PermissionDenied(f"You may no longer run the {report.get_title()!r} report: it needs "
                               f"{report.describe_permission()}.")  # fmt: skip
    output = tempfile.TemporaryFile()  # noqa: SIM115 (returned open: the response streams it and closes it)
    with tempfile.TemporaryDirectory() as folder:
        segment = Path(folder) / "segment"
        with segment.open("wb") as fh:
            writer = writer_for(job, report, fh)
            writer.open_segment()
            rows = sum(written_batches(job, report, writer, None, job.upper_key, settings.REPORTS_CHUNK_SIZE))
            meta = writer.close_segment()
        info = SegmentInfo(segment.name, segment.stat().st_size, rows, meta)
        storage = FileSystemStorage(location=folder)
        for piece in writer_for(job, report, output).assemble([info]):
            for block in read_piece(storage, piece):
                output.write(block)
    size = output.tell()
    output.seek(0)
    if not job.transition(Status.SUCCEEDED, rows_done=rows, rows_total=rows, file_size=size):
        output.close()
        raise Stopped
    return output


def discard_segment_files(job: ReportJob) -> int:
    """Delete the job's segment objects (once its file is stored, or when it ended without one)."""
    named = ReportSegment.objects.filter(job=job).exclude(file="")
    storage = reports_storage()
    count = 0
    for segment in named:
        storage.delete(segment.file)
        count += 1
    named.update(file="")
    return count
