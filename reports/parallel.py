"""Parallel batches: a big report split into key ranges that several workers write at once.

The job's own RQ job (reports.pipeline.run_job) finds the range bounds, records a ReportPart per
range and enqueues a part job for each, then a join job that depends on all of them (allow_failure:
it runs even when a part failed for good). A part job writes its rows, exactly as the format writes
them between header and footer, into a part file in the reports storage (so workers may be on other
machines), and after each chunk saves its count on its part row and the sum on the job row: the job's
progress is the sum over its parts, and a cancel (the job leaving `running`) stops every part at its
next chunk. RQ retries a part that raised, alone, up to REPORTS_PART_RETRIES times. The join writes
the header, appends the parts in order and the footer, and stores the file in one save, as a single
job would: the file appears only then, byte for byte the single job's. Part files are deleted with
their rows' files (after the join, or when the job is deleted or restarted).
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone
from rq import Retry
from rq.job import Dependency

from . import fastpath
from .events import ProgressNotifier
from .files import delete_file, reports_storage
from .models import ReportJob, ReportPart, Status
from .pipeline import JobCancelled, Source, describe_error, run_guarded, spool_path, store, store_result, write_file
from .writers import FORMATS

logger = logging.getLogger(__name__)


def part_count(source: Source, total: int) -> int:
    """How many parts a report of `total` rows is split into (1: not split)."""
    parts = settings.REPORTS_PARALLEL_PARTS
    if parts < 2 or total < settings.REPORTS_PARALLEL_MIN_ROWS:
        return 1
    if not FORMATS[source.format].writer_class.splittable:
        return 1
    if not settings.REPORTS_PARALLEL_COPY and fastpath.eligible(source.report, source.format, source.queryset.db):
        return 1  # bound by PostgreSQL, not the worker: parts only load the database more (see README)
    if not isinstance(source.report.get_model()._meta.pk, models.IntegerField):  # auto fields too
        return 1  # the bounds are stored as JSON
    return parts


def key_ranges(source: Source, total: int, upper, parts: int) -> list[tuple[object, object, int]]:
    """(after, last, rows) of `parts` ranges of about equal rows, `after < pk <= last`."""
    keys = source.queryset.filter(pk__lte=upper).order_by("pk").values_list("pk", flat=True)
    cuts = [total * i // parts for i in range(parts + 1)]
    bounds = [None]
    for cut in cuts[1:-1]:
        key = keys[cut - 1 : cut].first()  # OFFSET over the keys
        bounds.append(upper if key is None else key)  # rows deleted meanwhile: the rest is empty
    bounds.append(upper)
    return [(bounds[i], bounds[i + 1], cuts[i + 1] - cuts[i]) for i in range(parts)]


def start_parts(job: ReportJob, source: Source, total: int, upper) -> bool:
    """Split the job into parts and enqueue them and their join, if it is big enough to split."""
    parts = part_count(source, total)
    if parts < 2:
        return False
    job.parts.all().delete()  # an earlier attempt's (their files go with them: reports.signals)
    rows = ReportPart.objects.bulk_create(
        ReportPart(job=job, index=i, after=after, upper=last, rows_total=count)
        for i, (after, last, count) in enumerate(key_ranges(source, total, upper, parts))
    )
    from .jobs import generate_part, join_parts
    from .services import reports_queue

    queue = reports_queue()
    options = {"job_timeout": settings.REPORTS_JOB_TIMEOUT, "result_ttl": 3600, "failure_ttl": 7 * 24 * 3600}
    part_jobs = [
        queue.enqueue(
            generate_part,
            part.pk,
            job_id=part.rq_job_id,
            retry=Retry(max=settings.REPORTS_PART_RETRIES) if settings.REPORTS_PART_RETRIES else None,
            **options,
        )
        for part in rows
    ]
    queue.enqueue(join_parts, str(job.pk), job.attempts, job_id=job.rq_join_id,
                  depends_on=Dependency(jobs=part_jobs, allow_failure=True), **options)  # fmt: skip
    logger.info("Report job %s split into %s parts.", job.pk, parts)
    return True


def run_part(part: ReportPart) -> None:
    """Write one part's rows into its part file in the storage."""
    job = part.job
    if job.status != Status.RUNNING or part.status == Status.SUCCEEDED:
        return  # cancelled, failed or restarted meanwhile; or done before a retry of the RQ job
    part.attempts += 1
    ReportPart.objects.filter(pk=part.pk).update(status=Status.RUNNING, rows_done=0, attempts=part.attempts,
                                                 error="")  # fmt: skip
    spool = spool_path(job, f"-part{part.index}-{part.attempts}")
    notifier = ProgressNotifier()

    def chunk_done(last, done: int) -> None:
        if not notifier.due(done, part.rows_total):
            return
        if not ReportPart.objects.filter(pk=part.pk).update(rows_done=done) or not sum_progress(job):
            raise JobCancelled  # the part was replaced, or the job left `running`
        notifier.push(job)

    try:
        sum_progress(job)  # a retried part starts again from 0
        source = Source.of(job)
        done = write_file(source, spool, part.after, part.upper, settings.REPORTS_CHUNK_SIZE, chunk_done, part=True)
        name, _ = store(spool, f"parts/{job.pk}/{job.attempts}-{part.index}-{part.attempts}.part")
        updated = ReportPart.objects.filter(pk=part.pk, status=Status.RUNNING).update(
            status=Status.SUCCEEDED, file=name, rows_done=done
        )
        if not updated:
            delete_file(name)  # the part was replaced meanwhile
    except JobCancelled:
        ReportPart.objects.filter(pk=part.pk).update(status=Status.CANCELLED)
    except BaseException as exc:
        ReportPart.objects.filter(pk=part.pk).update(status=Status.FAILED, error=describe_error(exc))
        raise
    finally:
        spool.unlink(missing_ok=True)


def sum_progress(job: ReportJob) -> bool:
    """Save the sum of the parts' rows on the job, if it is still running; refresh the instance."""
    rows = ReportPart.objects.filter(job=OuterRef("pk")).values("job").annotate(rows=Sum("rows_done")).values("rows")
    if not ReportJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(rows_done=Subquery(rows),
                                                                              updated_at=timezone.now()):  # fmt: skip
        return False
    job.refresh_from_db(fields=["rows_done", "status", "updated_at"])
    return True


def join(job: ReportJob) -> None:
    """Put the parts together into the job's file once every part ended, or fail the job."""
    parts = list(job.parts.all())

    def generate(spool: Path) -> bool:
        if job.status != Status.RUNNING:
            return False  # cancelled: whoever did it told the owner
        unfinished = [p for p in parts if p.status != Status.SUCCEEDED]
        if unfinished:
            part = unfinished[0]
            reason = part.error or "its worker stopped"  # (RQ gave up on it while it was running)
            error = f"Part {part.index + 1} of {len(parts)} failed: {reason}"
            return job.transition(Status.FAILED, error=error)
        source = Source.of(job)
        storage = reports_storage()
        spool.parent.mkdir(parents=True, exist_ok=True)
        with spool.open("wb") as fh:
            writer = source.writer(fh)
            writer.open()
            for part in parts:
                with storage.open(part.file, "rb") as part_file:
                    writer.append_part(part_file)
            writer.close()
        discard_part_files(parts)  # before the file appears: whoever sees it sees the parts gone
        store_result(job, spool, sum(p.rows_done for p in parts))
        return True

    try:
        run_guarded(job, generate)
    finally:
        discard_part_files(parts)


def discard_part_files(parts: list[ReportPart]) -> None:
    for part in parts:
        if part.file:
            delete_file(part.file)
            ReportPart.objects.filter(pk=part.pk).update(file="")
            part.file = ""
