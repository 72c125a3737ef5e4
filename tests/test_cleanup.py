"""Nothing left behind by a crash: killed runs' spool files and segment objects are removed, a live
run's file never is, and a worker's spool folder has a cap."""

import contextlib
import datetime as dt
import os
import time
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from reports.files import reports_storage, spool_dir
from reports.models import ReportJob, ReportSegment, SegmentStatus, Status
from reports.sweeper import clean_spool, clean_storage
from reports.tasks import run_in_foreground
from shop import demo
from tests.helpers import (
    KILL_ENV,
    csrf_client,
    downloaded,
    ended,
    kill,
    post_job,
    record,
    reference,
    rq_worker_name,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def spool_file(segment: ReportSegment) -> Path:
    return spool_dir() / f"{segment.job_id}-s{segment.index}-a{segment.attempts}.part"


def stored_for(jobs) -> list[str]:
    """Every file in the storage that belongs to one of the jobs (its file, its segment objects)."""
    root = Path(reports_storage().path(""))
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and any(j in str(p) for j in jobs))


def writing(jobs, names: dict[str, int]) -> tuple[int, int] | None:
    """(Which worker, the size of its spool file) for a worker of `names` (RQ name: number) writing a
    segment of the jobs whose spool file holds bytes already (an XLSX segment holds none until a
    megabyte of its sheet is deflated); None while none is. Any of them: which one has work left is
    the jobs' business."""
    running = ReportSegment.objects.filter(job_id__in=jobs, worker__in=names, status="running", rows_done__gt=0)
    for segment in running:
        # (it may end meanwhile)
        with contextlib.suppress(FileNotFoundError):
            if size := spool_file(segment).stat().st_size:
                return names[segment.worker], size
    return None


KILLS = ["horse", "worker", "horse", "worker"]
# the kills may all hit one segment: it must not fail
ENV = {**KILL_ENV, "REPORTS_MAX_ATTEMPTS": len(KILLS) + 1}


@pytest.mark.slow
def test_killed_runs_leave_nothing_once_the_jobs_end(alice, start_worker, start_sweeper):
    demo.seed(40_000)
    client = csrf_client(alice)
    jobs = [post_job(client, {"report": "paced-orders", "format": fmt})[1]["id"] for fmt in ("csv", "xlsx")]
    workers = [start_worker(**ENV) for _ in range(2)]
    start_sweeper(**ENV)
    left = []
    for fault in KILLS:
        names = {rq_worker_name(worker): number for number, worker in enumerate(workers)}
        number, size = wait_for(lambda names=names: writing(jobs, names), message="a worker writing a segment")
        kill(workers[number], fault)
        left.append(size)
        if fault == "worker":
            # what a supervisor does
            workers[number] = start_worker(**ENV)
        time.sleep(0.5)
    for job in jobs:
        assert (row := ended(job)).status == Status.SUCCEEDED, row.error
    wait_for(lambda: not list(spool_dir().glob("*")), timeout=30, message="the spool folder to be emptied")
    finals = [ReportJob.objects.get(pk=job).file.name for job in jobs]
    wait_for(lambda: stored_for(jobs) == sorted(finals), timeout=30, message="only the files to stay")
    record(case="leftovers", kills=4, spool_bytes_left_by_killed_runs=sum(left), spool_bytes_after_cleanup=0)
    assert all(size > 0 for size in left)


def test_the_cleanup_never_removes_a_live_runs_file(alice, settings, start_worker):
    demo.seed(20_000)
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "paced-orders", "format": "csv"})
    start_worker(REPORTS_SEGMENT_ROWS=5000, REPORTS_CHUNK_SIZE=500, PACED_SECONDS=0.05)
    writing = ReportSegment.objects.filter(job_id=job["id"], status="running", rows_done__gt=0, index__gt=0)
    segment = wait_for(writing.first, message="a segment being written")
    live = spool_file(segment)
    # a run not running
    dead = spool_dir() / f"{job['id']}-s{segment.index}-a{segment.attempts + 5}.part"
    # not named as runs name theirs
    strays = [spool_dir() / "left-by-hand.part", spool_dir() / "notes.txt"]
    for path in (dead, *strays):
        path.write_bytes(b"x" * 1000)
    removed, size = clean_spool(min_age=0)
    assert live.exists() and not dead.exists() and all(path.exists() for path in strays)
    assert (removed, size) == (1, 1000)
    for path in strays:
        path.unlink()
    assert ended(job["id"]).status == Status.SUCCEEDED
    assert downloaded(client, job["id"]) == reference(alice, "paced-orders", "csv", settings, REPORTS_SEGMENT_ROWS=5000)


def test_young_files_are_left_to_the_run_that_may_still_be_starting():
    spool_dir().mkdir(parents=True, exist_ok=True)
    young = spool_dir() / "00000000-0000-0000-0000-000000000000-s0-a1.part"
    young.write_bytes(b"x")
    # younger than REPORTS_STALE_AFTER_SECONDS
    assert clean_spool() == (0, 0) and young.exists()
    old = time.time() - 3600
    os.utime(young, (old, old))
    assert clean_spool() == (1, 1) and not young.exists()


def test_segment_objects_nobody_will_read_are_removed(alice, settings):
    storage = reports_storage()
    ended_job = ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.CANCELLED)
    running = ReportJob.objects.create(owner=alice, report="orders", format="csv", status=Status.RUNNING)
    recorded = ReportSegment.objects.create(job=running, index=0, status=SegmentStatus.DONE, file="x", attempts=2)
    names = {
        "ended": storage.save(f"segments/{ended_job.pk}/0-a1.seg", ContentFile(b"1")),
        "deleted job": storage.save("segments/00000000-0000-0000-0000-000000000000/0-a1.seg", ContentFile(b"1")),
        "superseded": storage.save(f"segments/{running.pk}/0-a1.seg", ContentFile(b"1")),
        "recorded": storage.save(f"segments/{running.pk}/0-a2.seg", ContentFile(b"1")),
        "just stored": storage.save(f"segments/{running.pk}/1-a1.seg", ContentFile(b"1")),
    }
    ReportSegment.objects.filter(pk=recorded.pk).update(file=names["recorded"])

    # (other tests' leftovers may be in the storage too: only these are looked at)
    def kept():
        return [n for n, name in names.items() if storage.exists(name)]

    clean_storage(timezone.now() + dt.timedelta(seconds=settings.REPORTS_STALE_AFTER_SECONDS / 2))
    # the ended job's, the deleted job's go at once
    assert kept() == ["superseded", "recorded", "just stored"]
    clean_storage(timezone.now() + dt.timedelta(hours=1))
    # the superseded run's and the unrecorded one's, once old
    assert kept() == ["recorded"]


def test_a_report_that_would_fill_the_spool_folder_fails_with_a_clear_message(alice, settings):
    demo.seed(20_000)
    settings.REPORTS_SPOOL_MAX_MB = 1
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv")
    run_in_foreground(job)
    assert job.status == Status.FAILED and not job.file
    assert job.error == "This worker's spool folder would pass its cap of 1 MB (REPORTS_SPOOL_MAX_MB)."
    assert not any(spool_dir().iterdir())
