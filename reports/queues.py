"""The reports queue and every enqueue. RQ tasks are named by their dotted path (reports.tasks.*), so
this module imports none of the code they run: whoever enqueues needs only this.

Enqueueing is immediate (django-rq's "auto" commit mode): callers that create rows enqueue from
`transaction.on_commit`, so a task never runs before its rows exist. Redis being unreachable is
not an error here: the rows say what should be queued, and the sweeper enqueues it later.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import django_rq
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.cron import CronJob, CronScheduler
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import now as now_utc

from . import conf

logger = logging.getLogger(__name__)
QUEUE_NAME = "reports"
TASKS = "reports.tasks"
# live without being in the queue or started
WAITING_STATES = {"deferred", "scheduled"}


@functools.cache
def reports_queue() -> Queue:
    """The reports queue, one per process: requests reuse its Redis connections."""
    return django_rq.get_queue(QUEUE_NAME, commit_mode="auto")


def redis_connection() -> Redis:
    """The reports queue's Redis connection (also for the web tier's counters, reports.downloads)."""
    return reports_queue().connection


@receiver(setting_changed)
def _forget_queue(setting: str, **kwargs: Any) -> None:
    if setting == "RQ_QUEUES":
        reports_queue.cache_clear()


def enqueue(task: str, *args: Any, rq_job_id: str, at_front: bool = False) -> bool:
    """Put `reports.tasks.<task>(*args)` on the queue under `rq_job_id` (first in line with `at_front`);
    False if Redis is unreachable."""
    try:
        reports_queue().enqueue_call(
            f"{TASKS}.{task}",
            args=args,
            job_id=rq_job_id,
            at_front=at_front,
            timeout=conf.REPORTS_JOB_TIMEOUT,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
        )
    except RedisError as exc:
        logger.warning("Could not enqueue %s (%s): %s. The sweeper will enqueue it again.", rq_job_id, task, exc)
        return False
    return True


def job_heartbeat_seconds() -> int:
    """How often a ReportsWorker tells Redis it still runs its job: well within the stale window."""
    return max(1, min(5, int(conf.REPORTS_STALE_AFTER_SECONDS) // 4))


def is_live(rq_job_id: str) -> bool:
    """Whether a worker will run the RQ job, or runs it now: waiting in the queue itself, started by a
    worker whose heartbeat for it is younger than REPORTS_STALE_AFTER_SECONDS, deferred or scheduled.
    A job a worker took and died with (in its started registry, or in the queue's intermediate list
    between being taken and being started) is not, whatever its status says. Raises RedisError."""
    queue = reports_queue()
    try:
        job = Job.fetch(rq_job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return False
    status = job.get_status()
    if status == "started":
        beat = job.last_heartbeat
        return beat is not None and (now_utc() - beat).total_seconds() < conf.REPORTS_STALE_AFTER_SECONDS
    if status == "queued":
        return queue.connection.lpos(queue.key, rq_job_id) is not None
    return status in WAITING_STATES


def forget(rq_job_id: str) -> None:
    """Take a lost RQ job out of wherever a dead worker left it (the started registry, the queue's
    intermediate list; the failed registry, where RQ puts the job of a work-horse that died), so that
    queueing it again under its id leaves nothing for RQ's own cleanup to fail later. Raises RedisError."""
    queue = reports_queue()
    try:
        job = Job.fetch(rq_job_id, connection=queue.connection, serializer=queue.serializer)
    except NoSuchJobError:
        return
    StartedJobRegistry(queue=queue).remove_executions(job)
    FailedJobRegistry(queue=queue).remove(rq_job_id)
    queue.connection.lrem(queue.intermediate_queue_key, 0, rq_job_id)


def worker_count() -> int:
    """Workers listening on the reports queue now (at least 1: the count is for sharing work)."""
    try:
        return max(1, Worker.count(queue=reports_queue()))
    except RedisError:
        return 1


def cancel(rq_job_id: str) -> None:
    """Take a queued RQ job off the queue (best effort: the rows decide whether it runs)."""
    try:
        rq_job = reports_queue().fetch_job(rq_job_id)
        if rq_job is not None and rq_job.get_status() == "queued":
            rq_job.cancel()
    except RedisError:
        pass


class QueuedCronJob(CronJob):
    """An RQ cron job put on the reports queue the way every task here is: by dotted path, with the
    queue's serializer (JSON; RQ's own CronJob would pickle it for a worker that reads no pickle)."""

    def enqueue(self, connection: Redis) -> Job:
        return reports_queue().enqueue_call(
            self.func_name, args=self.args, kwargs=self.kwargs, timeout=60, result_ttl=600, failure_ttl=7 * 24 * 3600
        )


def cron_scheduler() -> CronScheduler:
    """RQ's cron scheduler with the reports' periodic tasks: the schedules' tick every minute. The
    sweeper process drives it (reports.management.commands.sweep_reports): one process less to run,
    and it outlives a Redis outage, which RQ's own `rqcron` loop does not."""
    cron = CronScheduler(connection=reports_queue().connection)
    cron._cron_jobs.append(QueuedCronJob(QUEUE_NAME, func_name=f"{TASKS}.tick_schedules", interval=60))
    return cron
