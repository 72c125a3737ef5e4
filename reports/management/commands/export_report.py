import os
import shutil
import sys
import time

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from reports.definitions import RequestInvalid
from reports.events import NOTHING_MATCHED
from reports.files import reports_storage
from reports.models import Status
from reports.registry import NotRegistered, all_reports
from reports.services import request_report
from reports.tasks import run_in_foreground

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Run a report in the foreground with the same pipeline the workers use, and store the file."

    def add_arguments(self, parser):
        parser.add_argument("slug", nargs="?", help="The report's slug (see --list).")
        parser.add_argument(
            "--list", dest="listing", action="store_true", help="List the reports (those --user may run, if given)."
        )
        parser.add_argument("--format", default="csv", help="csv, csv_excel, ... (default csv).")
        parser.add_argument("--user", help="Username the job runs for (permissions apply).")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="A filter value.")
        parser.add_argument("--columns", metavar="A,B,...", help="Some of the report's columns, in this order.")
        parser.add_argument("--output", help="Also copy the finished file here ('-' for standard output).")
        parser.add_argument(
            "--chunk-size", type=int, dest="batch_rows", help="Rows read at a time (default: REPORTS_CHUNK_SIZE)."
        )

    def handle(self, *args, slug, listing, format, user, param, columns, output, batch_rows, **options):
        owner = get_user_model().objects.filter(username=user).first() if user else None
        if user and owner is None:
            raise CommandError(f"No user called {user!r}.")
        if listing:
            return self.list_reports(owner)
        if not (slug and user):
            raise CommandError("Name a report and a user: export_report SLUG --user USERNAME (--list shows reports).")
        if batch_rows is not None and batch_rows < 1:
            raise CommandError("--chunk-size must be at least 1.")
        params = dict(parse_param(p) for p in param)
        try:
            job = request_report(
                user=owner,
                slug=slug,
                format=format,
                params=params,
                enqueue=False,
                columns=columns.split(",") if columns else None,
            )
        except NotRegistered:
            slugs = ", ".join(r.slug for r in all_reports())
            raise CommandError(f"No report called {slug!r}. Reports: {slugs}.") from None
        except PermissionDenied as exc:
            raise CommandError(f"{user}: {exc}") from None
        except RequestInvalid as exc:
            lines = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
            raise CommandError(f"Invalid parameters: {lines}") from None

        started = time.monotonic()
        show_bar = self.stderr.isatty() if hasattr(self.stderr, "isatty") else sys.stderr.isatty()
        run_in_foreground(job, batch_rows=batch_rows, on_progress=self.bar(started) if show_bar else None)
        if show_bar:
            self.say("")
        if job.status == Status.FAILED:
            raise CommandError(f"Report failed: {job.error}")
        if job.status != Status.SUCCEEDED:
            raise CommandError(f"The job ended {job.status}.")
        elapsed = time.monotonic() - started
        rows = NOTHING_MATCHED if not job.rows_done else f"{job.rows_done:,} rows"
        self.say(
            f"{rows}, {job.file_size:,} bytes in {elapsed:.1f}s ({job.rows_done / max(elapsed, 1e-9):,.0f} "
            f"rows/s). Job {job.pk}, file {location(job.file.name)}",
            style=self.style.SUCCESS,
        )
        if output:
            self.copy_out(job, output)

    def say(self, text: str, style=str, ending: str | None = None) -> None:
        """On standard error (standard output may carry the file), in plain text: Django would paint it red."""
        self.stderr.write(text, style_func=style, ending=ending)

    def list_reports(self, owner) -> None:
        for report in (r for r in all_reports() if r.listed and (owner is None or r.has_permission(owner))):
            filters = ", ".join(f.name for f in report.get_filters()) or "none"
            columns = ", ".join(c.name for c in report.get_columns())
            self.stdout.write(
                f"{report.slug}\t{report.get_title()}\tformats: {', '.join(report.get_formats())}"
                f"\tfilters: {filters}\tcolumns: {columns}"
            )

    def bar(self, started):
        def draw(job):
            total = job.rows_total or 0
            fraction = job.rows_done / total if total else 1.0
            filled = int(BAR_WIDTH * fraction)
            self.say(
                f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:6.1%} "
                f"{job.rows_done:,}/{total:,} rows {time.monotonic() - started:6.1f}s",
                ending="",
            )
            self.stderr.flush()

        return draw

    def copy_out(self, job, output):
        with reports_storage().open(job.file.name, "rb") as src:
            if output == "-":
                try:
                    shutil.copyfileobj(src, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                # `| head`: the reader has what it wanted. Python's own advice:
                except BrokenPipeError:
                    # no error at exit
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    # 128 + SIGPIPE, as a shell reports it
                    raise SystemExit(141) from None
            else:
                with open(output, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def location(name: str) -> str:
    """Where the file is: its path on disk, or its name in the reports storage (S3)."""
    try:
        return reports_storage().path(name)
    except NotImplementedError:
        return f"{name} in the reports storage"


def parse_param(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CommandError(f"--param takes NAME=VALUE, got {text!r}.")
    return name, value
