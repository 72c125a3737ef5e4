import shutil
import sys
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from reports.definitions import ParamsInvalid
from reports.files import reports_storage
from reports.models import Status
from reports.registry import NotRegistered, all_reports
from reports.services import request_report
from reports.tasks import run_in_foreground

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Run a report in the foreground with the same pipeline the workers use, and store the file."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The report's slug (see --list).")
        parser.add_argument("--format", default="csv", help="csv, csv_excel, ... (default csv).")
        parser.add_argument("--user", required=True, help="Username the job runs for (permissions apply).")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="A filter value.")
        parser.add_argument("--output", help="Also copy the finished file here ('-' for standard output).")
        parser.add_argument("--chunk-size", type=int, help="Rows per chunk (default: REPORTS_CHUNK_SIZE).")

    def handle(self, *args, slug, format, user, param, output, chunk_size, **options):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"No user called {user!r}.")
        if chunk_size is not None and chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        params = dict(parse_param(p) for p in param)
        try:
            job = request_report(user=owner, slug=slug, format=format, params=params, enqueue=False)
        except NotRegistered:
            slugs = ", ".join(r.slug for r in all_reports())
            raise CommandError(f"No report called {slug!r}. Reports: {slugs}.") from None
        except PermissionDenied as exc:
            raise CommandError(f"{user} may not run this report: {exc}") from None
        except ParamsInvalid as exc:
            lines = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
            raise CommandError(f"Invalid parameters: {lines}") from None

        started = time.monotonic()
        show_bar = self.stderr.isatty() if hasattr(self.stderr, "isatty") else sys.stderr.isatty()
        run_in_foreground(job, chunk_size=chunk_size, on_progress=self.bar(started) if show_bar else None)
        if show_bar:
            self.stderr.write("")
        if job.status == Status.FAILED:
            raise CommandError(f"Report failed: {job.error}")
        if job.status != Status.SUCCEEDED:
            raise CommandError(f"The job ended {job.status}.")
        elapsed = time.monotonic() - started
        self.stderr.write(
            f"{job.rows_done:,} rows, {job.file_size:,} bytes in {elapsed:.1f}s "
            f"({job.rows_done / max(elapsed, 1e-9):,.0f} rows/s). Job {job.pk}, file {job.file.name}"
        )
        if output:
            self.copy_out(job, output)

    def bar(self, started):
        def draw(job):
            total = job.rows_total or 0
            fraction = job.rows_done / total if total else 1.0
            filled = int(BAR_WIDTH * fraction)
            self.stderr.write(
                f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:6.1%} "
                f"{job.rows_done:,}/{total:,} rows {time.monotonic() - started:6.1f}s",
                ending="",
            )
            self.stderr.flush()

        return draw

    def copy_out(self, job, output):
        with reports_storage().open(job.file.name, "rb") as src:
            if output == "-":
                shutil.copyfileobj(src, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with open(output, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def parse_param(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CommandError(f"--param takes NAME=VALUE, got {text!r}.")
    return name, value
