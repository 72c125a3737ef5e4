"""The reports app's settings and their defaults (docs/settings.md). A project sets any of them in
its settings module; the app reads them as `conf.REPORTS_…`, which falls back on these, so it runs
with none set."""

from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS = {
    "REPORTS_CHUNK_SIZE": 25_000,
    "REPORTS_JOB_TIMEOUT": 6 * 3600,
    "REPORTS_MAX_ACTIVE_JOBS_PER_USER": 5,
    "REPORTS_MAX_JOBS_PER_MINUTE": 30,
    "REPORTS_MAX_SCHEDULES_PER_USER": 20,
    "REPORTS_SPOOL_DIR": str(Path.cwd() / "var" / "spool"),
    "REPORTS_SEGMENT_SECONDS": 1.5,
    "REPORTS_SEGMENT_ROWS": 0,
    "REPORTS_SEGMENTS_IN_FLIGHT": 0,
    "REPORTS_HEARTBEAT_SECONDS": 5.0,
    "REPORTS_STALE_AFTER_SECONDS": 20,
    "REPORTS_MAX_ATTEMPTS": 3,
    "REPORTS_SPOOL_MAX_MB": 10_240,
    "REPORTS_PDF_MAX_ROWS": 5000,
    "REPORTS_EMPTY_CHECK_MS": 200,
    "REPORTS_INSTANT_MAX_ROWS": None,
    "REPORTS_INSTANT_MAX_BYTES": 64 * 1024 * 1024,
    "REPORTS_INSTANT_PER_USER": 3,
    "REPORTS_INSTANT_WRITES_PER_PROCESS": 4,
    "REPORTS_DOWNLOADS_PER_USER": 4,
    "REPORTS_DOWNLOAD_STALL_SECONDS": 30,
    "REPORTS_DOWNLOAD_OFFLOAD": "",
    "REPORTS_DOWNLOAD_OFFLOAD_PREFIX": "/protected-reports/",
    "REPORTS_AUDIT_RETENTION_DAYS": 365,
    "REPORTS_RETENTION_HOURS": 7 * 24,
    "REPORTS_PROGRESS_INTERVAL": 1.0,
    "REPORTS_EMAIL_AFTER_SECONDS": None,
    "REPORTS_SITE_URL": "http://127.0.0.1:8000",
    "RQ_API_TOKEN": "",
}


def __getattr__(name: str) -> Any:
    """`conf.REPORTS_…`: the project's setting where it has one, else the default, read at each use
    (nothing is written onto django.conf.settings; an override in a test is seen at once)."""
    if name in DEFAULTS:
        return getattr(settings, name, DEFAULTS[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
