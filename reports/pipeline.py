"""The work of a report, in two kinds of runs: a segment's rows -> writer -> spool file -> segment
object, and the segment objects -> one file in the reports storage.

No more than one batch of rows is in memory at a time. A segment's run saves its progress (and the
job's, the sum over its segments) at most every REPORTS_PROGRESS_INTERVAL, and notices then that it
must stop: the job was cancelled or failed, or the segment was given to another run. A segment
object is written once complete and recorded on its row only by the run that holds the segment;
the file is stored in one save (or one multipart upload), so nothing is ever seen half-written.
Who runs what, and when, is reports.tasks and reports.runs: nothing here enqueues anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import tempfile
import threading
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.files.storage import FileSystemStorage
from django.utils import timezone

from . import conf
from .assembly import Checksum, read_piece, store_pieces
from .definitions import Layout, RequestInvalid, instant_max_rows
from .endings import SILENT, end_job
from .events import ProgressNotifier
from .files import (
    delete_file,
    delete_siblings,
    join_spool,
    segment_name,
    segment_spool,
    spool_bytes,
    storage_name,
    store,
)
from .models import ReportJob, ReportSegment, SegmentStatus, Status
from .queries import report_batches
from .writers import FORMATS, Piece, SegmentInfo, Writer, WriterOptions

logger = logging.getLogger(__name__)
ProgressCallback = Callable[[ReportJob], None]


class Stopped(Exception):
    """The run stops: its job was cancelled or failed, or its segment or join went to another run."""


class SpoolFull(Exception):
    # its message is for the owner as it is
    plain = True


def writer_for(job: ReportJob, layout: Layout, fh: BinaryIO) -> Writer:
    report = layout.report
    options = WriterOptions(
        escape_formulas=report.escape_formulas,
        # The very object psycopg puts on UTC datetimes, so they need no conversion.
        time_zone=dt.UTC if settings.TIME_ZONE == "UTC" else zoneinfo.ZoneInfo(settings.TIME_ZONE),
        title=report.get_title(),
        extra={"delimiter": report.csv_delimiter, "filters": report.describe_params(job.params)},
    )
    return FORMATS[job.format].writer_class(fh, layout.column_specs(), options)


def written_batches(job: ReportJob, layout: Layout, writer: Writer, after, upper_key, batch_rows: int) -> Iterator[int]:
    """Write the rows `after < pk <= upper_key` a batch at a time; yield the rows written after each."""
    queryset = layout.report.get_report_queryset(job.params, job.owner)
    for frame in report_batches(layout, queryset, after, upper_key, batch_rows):
        writer.write_batch(frame)
        yield frame.height


def write_segment(
    segment: ReportSegment, *, lease, batch_rows: int | None = None, on_progress: ProgressCallback | None = None
) -> None:
    """Write the segment's rows into its segment object and record it done. Raises Stopped."""
    job = segment.job
    layout = job.layout()
    spool = segment_spool(segment)
    spool.parent.mkdir(parents=True, exist_ok=True)
    notifier = ProgressNotifier()
    cap, used = conf.REPORTS_SPOOL_MAX_MB * 1024 * 1024, spool_bytes()
    mine = ReportSegment.objects.filter(pk=segment.pk, status=SegmentStatus.RUNNING, attempts=segment.attempts)

    def progress(done: int, written: int) -> None:
        if lease.lost:
            raise Stopped
        if cap and used + written > cap:
            raise SpoolFull(
                f"This worker's spool folder would pass its cap of {conf.REPORTS_SPOOL_MAX_MB:,} MB "
                "(REPORTS_SPOOL_MAX_MB)."
            )
        if notifier.due(done, segment.rows_planned):
            if not mine.update(rows_done=done) or not job.sum_progress():
                raise Stopped
            notifier.push(job)
            if on_progress:
                on_progress(job)

    try:
        with spool.open("wb") as fh:
            writer = writer_for(job, layout, fh)
            writer.open_segment()
            done = 0
            # Closed at once when progress() raises: the read in progress is cancelled then.
            batch_rows = batch_rows or conf.REPORTS_CHUNK_SIZE
            rows = written_batches(job, layout, writer, segment.after, segment.upper_key, batch_rows)
            with contextlib.closing(rows):
                for count in rows:
                    done += count
                    progress(done, fh.tell())
            meta = writer.close_segment()
        checksum = Checksum.of_file(spool)
        name, size = store(spool, segment_name(segment))
        if not mine.update(
            status=SegmentStatus.DONE,
            file=name,
            file_size=size,
            checksum=checksum,
            meta=meta,
            rows_done=done,
            finished_at=timezone.now(),
            error="",
        ):
            # the segment went to another run meanwhile: its object is theirs to write
            delete_file(name)
            raise Stopped
        job.sum_progress()
    finally:
        spool.unlink(missing_ok=True)


def join_segments(job: ReportJob, *, lease) -> None:
    """Put the job's done segments together into its file, store it and end the job. Raises Stopped."""
    layout = job.layout()
    segments = list(job.segments.order_by("index"))
    if any(segment.status != SegmentStatus.DONE for segment in segments):
        raise Stopped
    infos = [SegmentInfo(s.file, s.file_size, s.rows_done, s.meta) for s in segments]
    pieces = writer_for(job, layout, io.BytesIO()).assemble(infos)
    checksums = {s.file: s.checksum for s in segments}
    name, size = store_pieces(pieces, storage_name(job), spool=join_spool(job), checksums=checksums)
    rows = sum(segment.rows_done for segment in segments)
    if lease.lost or not end_job(
        job, Status.SUCCEEDED, file=name, file_size=size, rows_done=rows, rows_total=rows, held_by=""
    ):
        # cancelled, or another run joined them meanwhile
        delete_file(name)
        raise Stopped
    # a file an earlier join stored before it died
    delete_siblings(name)


class NotInstant(Exception):
    """An instant job that its download may not write: its rows, read now, are more than it may write
    (in rows or bytes), or this process is writing REPORTS_INSTANT_WRITES_PER_PROCESS already."""


class InstantWrites:
    """The instant files this process is writing now: each holds a database connection (two on
    PostgreSQL) and a thread while it does."""

    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0

    def has_room(self) -> bool:
        return self.count < conf.REPORTS_INSTANT_WRITES_PER_PROCESS

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self.lock:
            if not self.has_room():
                raise NotInstant(f"this server is writing {self.count} small reports already")
            self.count += 1
        try:
            yield
        finally:
            with self.lock:
                self.count -= 1


INSTANT_WRITES = InstantWrites()


class InstantFile:
    """A small job's file as its download sends it: its one segment, written into a folder of its own,
    then the join's pieces read from there a block at a time. The folder goes when it is closed."""

    def __init__(self, folder: tempfile.TemporaryDirectory, pieces: list[Piece]):
        self.folder = folder
        self.pieces = pieces
        self.size = sum(len(p) if isinstance(p, bytes) else p.end - p.start for p in pieces)

    def blocks(self) -> Iterator[bytes]:
        try:
            storage = FileSystemStorage(location=self.folder.name)
            for piece in self.pieces:
                yield from read_piece(storage, piece)
        finally:
            self.close()

    def close(self) -> None:
        self.folder.cleanup()


def write_instant(job: ReportJob) -> InstantFile:
    """A small job's file, written by this process, and the job ended: one segment and the join of a
    background run, so the same bytes, never stored. Its rows are those up to the last key when it was
    asked for (upper_key), at most instant_max_rows() of them and REPORTS_INSTANT_MAX_BYTES of segment,
    counted as they are written: more raises NotInstant before any more is read.
    Raises PermissionDenied (the owner may no longer run it), RequestInvalid and Stopped."""
    layout = job.layout()
    report = layout.report
    if not report.has_permission(job.owner):
        raise PermissionDenied(
            f"You may no longer run the {report.get_title()!r} report: it needs {report.describe_permission()}."
        )
    if job.format not in report.get_formats():
        raise RequestInvalid({"format": [f"The report is no longer offered as {job.format}."]})
    folder = tempfile.TemporaryDirectory()  # noqa: SIM115 (the InstantFile returned removes it)
    try:
        with INSTANT_WRITES.slot():
            segment = Path(folder.name) / "segment"
            with segment.open("wb") as fh:
                writer = writer_for(job, layout, fh)
                writer.open_segment()
                rows = write_at_most(job, layout, writer, fh, instant_max_rows(job.format))
                meta = writer.close_segment()
        info = SegmentInfo(segment.name, segment.stat().st_size, rows, meta)
        file = InstantFile(folder, list(writer_for(job, layout, io.BytesIO()).assemble([info])))
    except BaseException:
        folder.cleanup()
        raise
    if not end_job(job, Status.SUCCEEDED, tell=SILENT, rows_done=rows, rows_total=rows, file_size=file.size):
        file.close()
        raise Stopped
    return file


def write_at_most(job: ReportJob, layout: Layout, writer: Writer, fh: BinaryIO, limit: int) -> int:
    """Write the instant job's rows, refusing (NotInstant) a batch that would pass `limit` rows or a segment
    past REPORTS_INSTANT_MAX_BYTES: the rows written."""
    max_bytes, rows = conf.REPORTS_INSTANT_MAX_BYTES, 0
    queryset = layout.report.get_report_queryset(job.params, job.owner)
    batch_rows = min(conf.REPORTS_CHUNK_SIZE, limit + 1)
    with contextlib.closing(report_batches(layout, queryset, None, job.upper_key, batch_rows)) as frames:
        for frame in frames:
            if rows + frame.height > limit:
                raise NotInstant(f"more than {limit:,} rows")
            writer.write_batch(frame)
            rows += frame.height
            if max_bytes and fh.tell() > max_bytes:
                raise NotInstant(f"more than {max_bytes:,} bytes")
    return rows
