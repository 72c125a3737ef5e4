import logging
import random
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from redis.exceptions import RedisError

from reports.queues import cron_scheduler
from reports.sweeper import sweep

MAX_BACKOFF = 60
logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Give the segments of dead workers to others, enqueue what Redis lost, delete files past their retention "
        "and what killed runs left behind, queue the schedules' tick (with --every, keep doing it; it never stops "
        "on a lost connection)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=float, metavar="SECONDS", help="Repeat forever with this pause.")

    def handle(self, *args, every, **options):
        if every is not None and every <= 0:
            raise CommandError("--every must be a positive number of seconds.")
        failures = 0
        cron = cron_scheduler()
        while True:
            counts = sweep()
            counts["ticks_queued"] = queue_cron_jobs(cron)
            close_old_connections()
            self.stdout.write(", ".join(f"{name}: {'failed' if n < 0 else n}" for name, n in counts.items()))
            if every is None:
                return
            # A step that failed (Redis or the database away) is tried again sooner than a full period
            # would, backing off up to MAX_BACKOFF seconds, with jitter so that sweepers do not march together.
            failures = failures + 1 if min(counts.values()) < 0 else 0
            pause = min(every * 2 ** max(failures - 1, 0), max(every, MAX_BACKOFF)) if failures else every
            time.sleep(pause * random.uniform(0.8, 1.2))


def queue_cron_jobs(cron) -> int:
    """Put on the queue what RQ's cron scheduler says is due (the schedules' tick); -1 if Redis is away."""
    try:
        return len(cron.enqueue_jobs())
    except RedisError:
        logger.warning("Could not queue the periodic tasks; trying again next time.", exc_info=True)
        return -1
