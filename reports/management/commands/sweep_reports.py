import time

from django.core.management.base import BaseCommand, CommandError

from reports.sweeper import expire_files, sweep


class Command(BaseCommand):
    help = (
        "Put right report jobs whose queue entry or worker was lost, and delete files past their retention "
        "(with --every, keep doing it)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--every", type=int, metavar="SECONDS", help="Repeat forever with this pause.")

    def handle(self, *args, every, **options):
        if every is not None and every < 1:
            raise CommandError("--every must be at least 1 second.")
        while True:
            counts = {**sweep(), "expired": expire_files()}
            self.stdout.write(", ".join(f"{name}: {n}" for name, n in counts.items()))
            if every is None:
                return
            time.sleep(every)
