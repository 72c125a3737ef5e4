"""SQLite (what `make run` uses by default) writes the very files PostgreSQL does: there the rows
come by keyset queries and are made batches in Python, and the same writers take them."""

import io
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from reports.models import ReportJob, Status
from reports.tasks import run_in_foreground
from shop import demo
from tests.helpers import ROOT, child_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
FORMATS = ["csv", "csv_excel", "json", "ndjson", "xlsx", "parquet"]


def export_on_sqlite(tmp_path, slug: str, fmt: str, env: dict) -> bytes:
    out = tmp_path / f"{slug}.{fmt}"
    subprocess.run(
        [sys.executable, "manage.py", "export_report", slug, "--format", fmt, "--user", "demo", "--output", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


def test_sqlite_and_postgresql_write_the_same_files(tmp_path, alice, settings):
    env = child_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VAR_DIR=tmp_path / "var",
        REPORTS_SEGMENT_ROWS=300,
        REPORTS_CHUNK_SIZE=128,
    )
    for command in (["migrate", "-v0"], ["seed_demo", "--orders", "1000"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    demo.seed(1000)
    settings.REPORTS_SEGMENT_ROWS = 300
    # order-totals: columns computed by the database (a decimal, a boolean) come out alike too.
    for slug, fmt in [*(("orders", fmt) for fmt in FORMATS), ("order-totals", "csv"), ("order-totals", "parquet")]:
        job = ReportJob.objects.create(owner=alice, report=slug, format=fmt)
        assert run_in_foreground(job) and job.status == Status.SUCCEEDED, job.error
        with job.file.open("rb") as fh:
            on_postgresql = fh.read()
        on_sqlite = export_on_sqlite(tmp_path, slug, fmt, env)
        # the same rows and types (row groups follow the batches)
        if fmt == "parquet":
            assert pq.read_table(io.BytesIO(on_sqlite)).equals(pq.read_table(io.BytesIO(on_postgresql)))
        else:
            assert on_sqlite == on_postgresql, (slug, fmt)
