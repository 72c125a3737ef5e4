"""The RQ worker for reports (settings.RQ["WORKER_CLASS"]): it tells the rows at once when its
work-horse dies, clears what killed runs left in its spool folder when it starts and now and then,
and outlives Redis going away (RQ's own worker quits when Redis fails it anywhere but in waiting for
a job, where it backs off until Redis is back: here every other call logs and goes on, so that the
wait is RQ's; the rows say what to do once Redis is back)."""

from __future__ import annotations

import contextlib
import logging

from django.db import DatabaseError, connections
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Worker

from . import queues, runs
from .sweeper import clean_spool

logger = logging.getLogger(__name__)


class ReportsWorker(Worker):
    def __init__(self, *args, **kwargs):
        # RQ's heartbeat for the job a work-horse runs, every few seconds instead of 30: a queue entry
        # whose heartbeat is older than the stale window is taken for lost (reports.queues.is_live).
        kwargs.setdefault("job_monitoring_interval", queues.job_heartbeat_seconds())
        super().__init__(*args, **kwargs)

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        """The work-horse died (killed, out of memory): what it ran is queued again at once, or fails."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        self.horse_killed = True
        try:
            runs.worker_died(self.name)
        except DatabaseError:
            logger.warning(
                "Could not record the death of %s's work-horse; the sweeper will find it by its heartbeat.",
                self.name,
                exc_info=True,
            )
        finally:
            # the next work-horse is forked from this process: share no connection
            connections.close_all()

    def set_state(self, *args, **kwargs):
        # Redis away: RQ's own wait for a job, which starts by saying the worker is idle, backs off
        # until it is back.
        try:
            super().set_state(*args, **kwargs)
        except RedisConnectionError as exc:
            self.log.warning("Worker %s: could not record its state in Redis (%s); going on.", self.name, exc)

    def execute_job(self, job, queue):
        self.horse_killed = False
        try:
            super().execute_job(job, queue)
        # e.g. the work-horse ended while Redis was away
        except RedisConnectionError as exc:
            self.log.warning("Worker %s: Redis went away while ending job %s (%s); going on.", self.name, job.id, exc)
        if self.horse_killed:
            self.requeue_entry(job.id)

    def requeue_entry(self, rq_job_id: str) -> None:
        """After RQ has recorded the killed work-horse's job as failed: its row, if the run never claimed
        it, is queued again now rather than after the stale window."""
        try:
            runs.entry_died(rq_job_id)
        except (DatabaseError, RedisConnectionError):
            message = "Could not queue again what %s's work-horse died with; the sweeper will."
            logger.warning(message, self.name, exc_info=True)
        finally:
            connections.close_all()

    def heartbeat(self, *args, **kwargs):
        try:
            super().heartbeat(*args, **kwargs)
        except RedisConnectionError as exc:
            self.log.warning("Worker %s: no heartbeat to Redis (%s); going on.", self.name, exc)

    def check_for_suspension(self, burst):
        # Redis away: waiting for the next job notices it, and waits for it with a backoff.
        with contextlib.suppress(RedisConnectionError):
            super().check_for_suspension(burst)

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        # no run of this worker is alive yet; others' files are live by their rows
        self.clean_spool(min_age=0)

    def run_maintenance_tasks(self):
        try:
            super().run_maintenance_tasks()
        except RedisConnectionError as exc:
            self.log.warning("Worker %s: maintenance skipped, Redis is away (%s).", self.name, exc)
        self.clean_spool()

    def clean_spool(self, **options) -> None:
        try:
            clean_spool(**options)
        except DatabaseError:
            logger.warning("Could not clean the spool folder now.", exc_info=True)
        finally:
            connections.close_all()
