"""Segments through real RQ worker processes (PostgreSQL, Redis, `manage.py rqworker`): any number of
workers writes the bytes one process writes, progress is the sum over segments, a cancel stops them
all, and a report survives the death of any worker at any moment, losing at most the segment that
worker was writing (the kill matrix)."""

import csv
import hashlib
import io
import json
import random
import re
import time
import zlib
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.db.models import F
from django.utils import timezone

from notifications.models import Notification
from reports import runs, tasks
from reports.files import reports_storage
from reports.models import ReportJob, ReportSegment, SegmentStatus, Status
from reports.writers.base import formula_risk
from shop import demo
from shop.models import Order
from tests.helpers import (
    JOBS_URL,
    KILL_ENV,
    PLAIN_ERROR,
    QUICK,
    csrf_client,
    downloaded,
    ended,
    kill,
    list_stored_files,
    post_job,
    record,
    reference,
    reports_spool,
    rq_worker_name,
    sheet_xml,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def assert_nothing_left(job_id) -> None:
    """No spool file and no segment object of the job anywhere: only its file, if it has one."""
    wait_for(lambda: not list(reports_spool().glob(f"{job_id}-*")), timeout=10, message="the spool files to go")
    job = ReportJob.objects.get(pk=job_id)
    only_the_file = [Path(job.file.name).name] if job.file else []
    # (The job's row moves first; its segment objects are deleted right after.)
    wait_for(
        lambda: [Path(p).name for p in list_stored_files(job_id)] == only_the_file,
        timeout=10,
        message="only the job's file to stay",
    )
    assert not ReportSegment.objects.filter(job_id=job_id).exclude(file="").exists()


@pytest.fixture
def orders():
    demo.seed(20_000)


@pytest.mark.parametrize("fmt", ["csv", "csv_excel", "json", "ndjson", "xlsx", "parquet"])
def test_two_workers_write_the_bytes_one_process_writes(orders, alice, settings, start_worker, fmt):
    client = csrf_client(alice)
    # the segments follow the filtered rows, not the table
    params = {"created_from": "2024-02-01"}
    env = {"REPORTS_SEGMENT_ROWS": 1500, "REPORTS_CHUNK_SIZE": 500}
    status, job = post_job(client, {"report": "orders", "format": fmt, "params": params})
    assert status == 202
    for _ in range(2):
        start_worker(**env)
    job = ended(job["id"])
    assert job.status == Status.SUCCEEDED, job.error
    expected = Order.objects.filter(created_at__date__gte="2024-02-01").count()
    segments = list(job.segments.all())
    assert job.rows_done == job.rows_total == expected == sum(s.rows_done for s in segments)
    # both took part
    assert len(segments) == -(-expected // 1500) and len({s.worker for s in segments}) == 2
    assert downloaded(client, job.pk) == reference(alice, "orders", fmt, settings, params, REPORTS_SEGMENT_ROWS=1500)
    assert_nothing_left(job.pk)


def test_progress_is_the_sum_over_segments_and_moves(orders, alice, start_worker):
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "paced-orders", "format": "json"})
    for _ in range(2):
        start_worker(
            REPORTS_SEGMENT_ROWS=2000, REPORTS_CHUNK_SIZE=250, REPORTS_PROGRESS_INTERVAL=0.1, PACED_SECONDS=0.02
        )
    seen = [0]
    while (row := ReportJob.objects.get(pk=job["id"])).status in ("queued", "running"):
        # no segment failed here: progress only grows
        assert row.rows_done >= seen[-1]
        seen.append(row.rows_done)
        time.sleep(0.05)
    assert row.status == Status.SUCCEEDED and row.rows_done == 20_000
    assert len({n for n in seen if 0 < n < 20_000}) >= 5
    assert row.rows_done == sum(s.rows_done for s in row.segments.all())


def test_cancel_stops_every_segment_and_leaves_nothing(orders, alice, start_worker):
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "slow-orders", "format": "json"})
    for _ in range(2):
        start_worker(REPORTS_SEGMENT_ROWS=1000, REPORTS_CHUNK_SIZE=100, SLOW_REPORT_SECONDS_PER_ROW=0.002)
    running = ReportSegment.objects.filter(job_id=job["id"], status=SegmentStatus.RUNNING, rows_done__gt=0)
    wait_for(lambda: running.count() == 2, message="two segments to be writing")

    response = client.post(f"{JOBS_URL}{job['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    # the runs stopped and removed their spool files
    assert_nothing_left(job["id"])
    # nothing more is queued or written
    time.sleep(1)
    row = ReportJob.objects.get(pk=job["id"])
    assert row.status == Status.CANCELLED and not row.file and 200 <= row.rows_done < 20_000
    statuses = list(row.segments.values_list("status", flat=True))
    assert set(statuses) <= {"done", "cancelled"} and statuses.count("cancelled") >= 18
    # her own cancel: nothing to keep
    assert not Notification.objects.filter(user=alice).exists()


def test_a_segment_that_raises_is_retried_alone(orders, alice, settings, start_worker):
    # in segment 4 of 10
    target = Order.objects.order_by("pk").values_list("pk", flat=True)[9_050]
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "flaky-orders", "format": "csv"})
    for _ in range(2):
        start_worker(REPORTS_SEGMENT_ROWS=2000, FLAKY_ORDER_ID=target)
    job = ended(job["id"])
    assert job.status == Status.SUCCEEDED, job.error
    attempts = {s.index: (s.attempts, s.last_failure) for s in job.segments.all()}
    assert attempts.pop(4) == (2, "raised") and set(attempts.values()) == {(1, "")}
    assert downloaded(client, job.pk) == reference(alice, "flaky-orders", "csv", settings, REPORTS_SEGMENT_ROWS=2000)


def test_a_segment_that_keeps_raising_fails_the_job(orders, alice, start_worker):
    target = Order.objects.order_by("pk").values_list("pk", flat=True)[9_050]
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "flaky-orders", "format": "csv"})
    for _ in range(2):
        start_worker(REPORTS_SEGMENT_ROWS=2000, FLAKY_ORDER_ID=target, FLAKY_MODE="always")
    job = ended(job["id"])
    # The owner reads a plain message with a reference; staff read what happened, under the same reference.
    reference = re.fullmatch(PLAIN_ERROR, job.error)[1]
    assert job.status == Status.FAILED
    assert job.error_detail == f"[{reference}] RuntimeError: Flaky on purpose at order {target}"
    assert str(target) not in json.dumps(csrf_client(alice).get(f"{JOBS_URL}{job.pk}/").json())
    assert job.segments.get(index=4).error.endswith(f"RuntimeError: Flaky on purpose at order {target}")
    assert job.segments.get(index=4).attempts == 3
    assert_nothing_left(job.pk)
    assert list(Notification.objects.filter(user=alice).values_list("type", flat=True)) == ["report.failed"]


@pytest.mark.parametrize("recorded", ["crc32", "sha256 (earlier versions)"])
@pytest.mark.parametrize("change", [None, "a byte", "cut short"])
def test_the_join_takes_only_segment_objects_that_are_what_was_written(orders, alice, settings, recorded, change):
    """Each segment object is checked against the size and checksum its run recorded; one changed
    meanwhile fails the job and stores nothing. Checksums recorded by earlier versions (SHA-256) hold."""
    expected = reference(alice, "orders", "csv", settings, REPORTS_SEGMENT_ROWS=6000)
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv")
    assert runs.start(job) and tasks.plan(job)
    while segment := runs.claim_next(job):
        assert tasks.write(segment, again=False)
    segment = job.segments.get(index=1)
    storage = reports_storage()
    with storage.open(segment.file, "rb") as fh:
        data = fh.read()
    assert segment.checksum == f"crc32:{zlib.crc32(data):08x}" and segment.file_size == len(data)
    if recorded != "crc32":
        ReportSegment.objects.filter(pk=segment.pk).update(checksum=hashlib.sha256(data).hexdigest())
    if change:
        changed = data[:-1] if change == "cut short" else data[:100] + bytes([data[100] ^ 1]) + data[101:]
        storage.delete(segment.file)
        assert storage.save(segment.file, ContentFile(changed)) == segment.file
    assert runs.claim_join(job)
    tasks.join(job, again=False)
    job.refresh_from_db()
    if change is None:
        assert job.status == Status.SUCCEEDED and job.file.read() == expected
    else:
        assert job.status == Status.FAILED and not job.file
        assert re.fullmatch(PLAIN_ERROR, job.error) and job.error_detail.endswith(
            f"SegmentCorrupt: The segment object {segment.file} is not what was written (size or checksum)."
        )
        assert not list_stored_files(job.pk)


def test_a_poison_segment_fails_the_job_within_seconds_of_its_last_death(orders, alice, start_worker):
    """The work-horse dies on every run of one segment (as an out-of-memory kill would)."""
    target = Order.objects.order_by("pk").values_list("pk", flat=True)[5_000]
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "deadly-orders", "format": "csv"})
    started = time.monotonic()
    start_worker(REPORTS_SEGMENT_ROWS=2000, DEADLY_ORDER_ID=target)
    job = ended(job["id"], timeout=60)
    failed_after = time.monotonic() - started
    assert job.status == Status.FAILED
    assert job.error == "The worker died 3 times while writing this report — it may need more memory."
    segment = job.segments.get(index=2)
    assert (segment.attempts, segment.last_failure, segment.status) == (3, "died", SegmentStatus.FAILED)
    # RQ sees each death at once; the row follows at once
    assert failed_after < 10, failed_after
    record(case="poison", seconds_to_failed=round(failed_after, 2))


def test_rows_are_read_once_whatever_changes_meanwhile(orders, alice, start_worker):
    """The snapshot rule: every row with a key up to the one captured at the start appears once, with
    the values its segment read; rows added later are left out whole."""
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "paced-orders", "format": "csv"})
    for _ in range(2):
        start_worker(REPORTS_SEGMENT_ROWS=2000, REPORTS_CHUNK_SIZE=500, PACED_SECONDS=0.05)
    upper = wait_for(lambda: ReportJob.objects.get(pk=job["id"]).upper_key, message="the plan")
    keys = list(Order.objects.filter(pk__lte=upper).order_by("pk").values_list("pk", flat=True))
    changed = random.Random(7).sample(keys, 300)
    before = dict(Order.objects.filter(pk__in=changed).values_list("pk", "note"))
    Order.objects.filter(pk__in=changed).update(note="changed while the report ran")
    template = Order.objects.first()
    # new orders: keys above the captured one
    Order.objects.bulk_create(
        Order(
            number=f"NEW-{i}",
            customer_id=template.customer_id,
            status="paid",
            country="PT",
            amount=1,
            quantity=1,
            created_at=template.created_at,
        )
        for i in range(200)
    )
    assert Order.objects.filter(pk__gt=upper).count() == 200
    job = ended(job["id"])
    assert job.status == Status.SUCCEEDED, job.error
    rows = list(csv.reader(io.StringIO(downloaded(client, job.pk).decode(), newline="")))[1:]
    # each once, in order, none added later
    assert [int(row[0]) for row in rows] == keys
    notes = {int(row[0]): row[9] for row in rows}
    as_written = lambda v: ("'" + v if formula_risk(v) else v) if v else ""  # noqa: E731
    assert all(notes[k] in ("changed while the report ran", as_written(before[k])) for k in changed)
    # the later segments read the change
    assert "changed while the report ran" in {notes[k] for k in changed}


def test_another_users_small_report_starts_at_once_beside_a_big_one(orders, alice, make_user, start_worker):
    """Both workers busy on a big report with more of its segments queued (as with several big reports
    at once): a small report asked for meanwhile starts as soon as one segment ends, ahead of them."""
    big = csrf_client(alice)
    _, big_job = post_job(big, {"report": "paced-orders", "format": "json"})
    for _ in range(2):
        start_worker(REPORTS_SEGMENT_ROWS=1000, REPORTS_CHUNK_SIZE=500, PACED_SECONDS=0.1, REPORTS_SEGMENTS_IN_FLIGHT=6)
    big_segments = ReportSegment.objects.filter(job_id=big_job["id"])
    wait_for(
        lambda: (
            big_segments.filter(status="running").count() == 2 and big_segments.filter(status="queued").count() == 4
        ),
        message="both workers on the big report, four of its segments queued",
    )
    small = csrf_client(make_user("bob"))
    delays, ended_meanwhile = [], []
    for _ in range(3):
        _, job = post_job(small, {"report": "orders", "format": "csv", "params": {"created_to": "2024-01-05"}})
        row = ended(job["id"], timeout=30)
        assert row.status == Status.SUCCEEDED
        delays.append((row.started_at - row.created_at).total_seconds())
        ended_meanwhile.append(
            big_segments.filter(finished_at__gt=row.created_at, finished_at__lte=row.started_at).count()
        )
    # the big one was still going
    assert ReportJob.objects.get(pk=big_job["id"]).status == Status.RUNNING
    record(case="small beside big", start_delays=[round(d, 3) for d in delays], segments_waited=ended_meanwhile)
    # Last in line it would wait for the four queued segments to be taken and one more to end (5).
    assert max(ended_meanwhile) <= 2, ended_meanwhile


# -- The kill matrix -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["horse", "worker", "term"])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_kill_matrix(alice, settings, start_worker, start_sweeper, fault, fmt):
    """Kill a worker at a random moment (its work-horse; the whole worker; SIGTERM then SIGKILL after a
    grace): the job ends with the undisturbed run's bytes, and redoes at most the killed segment."""
    demo.seed(40_000)
    expected = reference(alice, "paced-orders", fmt, settings, REPORTS_SEGMENT_ROWS=4000)
    rng = random.Random(f"{fmt}-{fault}")
    client = csrf_client(alice)
    start_sweeper(**KILL_ENV)
    for run in range(2):
        _, job = post_job(client, {"report": "paced-orders", "format": fmt})
        workers = [start_worker(**KILL_ENV) for _ in range(2)]
        victim = workers[0]
        segment = victim_segment(job["id"], rq_worker_name(victim), rng.uniform(0.15, 0.6) * 40_000)
        killed_at = time.monotonic()
        kill(victim, fault)
        recovery = None
        # the segment is claimed again: at once for a work-horse, by the sweeper for a worker
        if fault != "term":
            taken = ReportSegment.objects.filter(pk=segment.pk, attempts__gt=segment.attempts)
            wait_for(taken.exists, timeout=60, message="the killed segment to be taken over")
            recovery = time.monotonic() - killed_at
        # what a supervisor does
        start_worker(**KILL_ENV)
        row = ended(job["id"])
        assert row.status == Status.SUCCEEDED, row.error
        downloaded_bytes = downloaded(client, row.pk)
        if fmt == "xlsx":
            assert sheet_xml(downloaded_bytes) == sheet_xml(expected)
        assert downloaded_bytes == expected
        redone = sum(s.attempts - 1 for s in row.segments.all())
        assert redone <= (0 if fault == "term" else 1)
        record(
            case="kill",
            fmt=fmt,
            fault=fault,
            run=run,
            recovery=recovery and round(recovery, 2),
            segments_redone=redone,
            rows=row.rows_done,
        )
        for worker in workers[1:]:
            worker.terminate()


def victim_segment(job_id, worker_name: str, after_rows: float) -> ReportSegment:
    """Once the job has written `after_rows` rows, a segment the worker `worker_name` is writing, with
    at least half of it still to write (four batches: 0.16 s at the pace of KILL_ENV)."""

    def writing():
        if ReportJob.objects.get(pk=job_id).rows_done < after_rows:
            return None
        running = ReportSegment.objects.filter(job_id=job_id, worker=worker_name, status="running")
        return running.filter(rows_done__gt=0, rows_done__lte=F("rows_planned") / 2).first()

    return wait_for(writing, timeout=60, message="the victim writing a segment")


def queued_entry(alice, settings, redis_queue, entry: str):
    """A job asked for over 8,000 orders, and the queue entry of its own run ("job") or, once planned in
    segments of 2,000, of its second segment ("segment"): (client, job JSON, the entry's id, the bytes
    an undisturbed run writes)."""
    demo.seed(8_000)
    expected = reference(alice, "orders", "csv", settings, REPORTS_SEGMENT_ROWS=2000)
    client = csrf_client(alice)
    _, job = post_job(client, {"report": "orders", "format": "csv"})
    row = ReportJob.objects.get(pk=job["id"])
    if entry == "job":
        return client, job, row.rq_job_id, expected
    row.transition(Status.RUNNING, attempts=1)
    runs.cut_into_segments(ReportJob.objects.get(pk=row.pk))
    redis_queue.empty()
    segment = row.segments.get(index=1)
    ReportSegment.objects.filter(pk=segment.pk).update(status=SegmentStatus.QUEUED, queued_at=timezone.now())
    assert runs.enqueue_segment(segment)
    return client, job, segment.rq_job_id, expected


def take_and_die(queue, rq_job_id: str, stage: str) -> None:
    """What a worker killed after RQ handed it a queue entry, and before its task claimed the row,
    leaves behind: the entry off the queue, in the queue's intermediate list ("taken"), or started in
    the worker's registry with its heartbeat of then ("started")."""
    from rq import Worker

    dying = Worker([queue], connection=queue.connection, serializer=queue.serializer, name="dying-worker")
    dying.register_birth()
    job, _ = dying.dequeue_job_and_maintain_ttl(timeout=5)
    assert job.id == rq_job_id and queue.count == 0
    if stage == "started":
        dying.prepare_execution(job)
        dying.prepare_job_execution(job)
        assert job.get_status() == "started" and rq_job_id in queue.started_job_registry.get_job_ids()
    else:
        assert rq_job_id.encode() in queue.connection.lrange(queue.intermediate_queue_key, 0, -1)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["taken", "started"])
@pytest.mark.parametrize("entry", ["job", "segment"])
def test_a_queue_entry_taken_by_a_worker_that_died_before_claiming_it_is_queued_again(
    alice, settings, redis_queue, start_worker, start_sweeper, entry, stage
):
    """The window the kill matrix missed: RQ handed the entry to a worker that died before the row was
    claimed. Its registry still says "started"; its heartbeat says dead. The sweeper queues it again
    within the stale window and a sweep, and the report ends as an undisturbed run would."""
    client, job, stranded, expected = queued_entry(alice, settings, redis_queue, entry)
    take_and_die(redis_queue, stranded, stage)
    died_at = time.monotonic()
    start_sweeper(**QUICK)
    start_worker(**QUICK, REPORTS_SEGMENT_ROWS=2000)
    done = ended(job["id"], timeout=60)
    recovery = time.monotonic() - died_at
    assert done.status == Status.SUCCEEDED, done.error
    assert downloaded(client, done.pk) == expected
    assert stranded not in redis_queue.started_job_registry.get_job_ids()
    assert not redis_queue.failed_job_registry.get_job_ids()
    record(case="entry taken, worker died before the claim", entry=entry, stage=stage, recovery=round(recovery, 2))
    assert recovery < QUICK["REPORTS_STALE_AFTER_SECONDS"] + 10


@pytest.mark.parametrize("entry", ["job", "segment"])
def test_a_work_horse_that_dies_before_claiming_its_row_has_it_queued_again_at_once(
    alice, settings, redis_queue, start_worker, entry
):
    """RQ records the dead work-horse's job as failed; the worker then queues the unclaimed row again
    under the same id (out of the failed registry), without waiting for the stale window."""
    from rq.job import Job

    client, job, rq_job_id, expected = queued_entry(alice, settings, redis_queue, entry)
    take_and_die(redis_queue, rq_job_id, "started")
    failed = Job.fetch(rq_job_id, connection=redis_queue.connection, serializer=redis_queue.serializer)
    failed.set_status("failed")
    redis_queue.failed_job_registry.add(failed, ttl=600)
    # what ReportsWorker.execute_job does once RQ has recorded the death
    runs.entry_died(rq_job_id)
    assert redis_queue.job_ids == [rq_job_id] and not redis_queue.failed_job_registry.get_job_ids()
    assert rq_job_id not in redis_queue.started_job_registry.get_job_ids()
    # no sweeper: only the worker can finish it
    start_worker(REPORTS_SEGMENT_ROWS=2000)
    done = ended(job["id"], timeout=60)
    assert done.status == Status.SUCCEEDED and downloaded(client, done.pk) == expected


def test_a_job_whose_planning_run_died_is_planned_again_never_joined_empty(alice, redis_queue, start_worker):
    """Found by the random kills: a job left running, unplanned and held by nobody was "joined" with no
    segment at all, and succeeded with a file of no rows."""
    demo.seed(3_000)
    job = ReportJob.objects.create(owner=alice, report="orders", format="csv")
    # its planning run took it and died, before the plan
    assert job.transition(Status.RUNNING, attempts=1)
    redis_queue.empty()
    assert not runs.claim_join(job)
    runs.dispatch(job)
    # its own run again, not a join
    assert redis_queue.job_ids == [job.rq_job_id]
    start_worker()
    done = ended(job.pk, timeout=60)
    assert done.status == Status.SUCCEEDED and done.rows_done == 3_000 and done.segments.count() >= 1
