"""The RQ worker for reports (settings.RQ["WORKER_CLASS"]): it tells the rows at once when its
work-horse dies, and clears what killed runs left in its spool folder when it starts and now and then."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connections
from rq import Worker

from . import batches
from .sweeper import clean_spool

logger = logging.getLogger(__name__)


class ReportsWorker(Worker):
    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        """The work-horse died (killed, out of memory): what it ran is queued again at once, or fails."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        try:
            batches.worker_died(self.name)
        except DatabaseError:
            logger.warning("Could not record the death of %s's work-horse; the sweeper will find it by its "
                           "heartbeat.", self.name, exc_info=True)  # fmt: skip
        finally:
            connections.close_all()  # the next work-horse is forked from this process: share no connection

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        self.clean_spool(min_age=0)  # no run of this worker is alive yet; others' files are live by their rows

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        self.clean_spool()

    def clean_spool(self, **options) -> None:
        try:
            clean_spool(**options)
        except DatabaseError:
            logger.warning("Could not clean the spool folder now.", exc_info=True)
        finally:
            connections.close_all()
