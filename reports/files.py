"""Where finished files live and what they are called."""

from django.core.files.storage import Storage, storages
from django.utils import timezone
from django.utils.text import slugify

from .writers import FORMATS


def reports_storage() -> Storage:
    return storages["reports"]


def delete_file(name: str) -> None:
    if name:
        reports_storage().delete(name)


def storage_name(job) -> str:
    """A unique, readable key: 2026/11/28/<job uuid>/orders-20261128-101500.csv."""
    created = timezone.localtime(job.created_at)
    stem = slugify(job.report_title) or "report"
    return f"{created:%Y/%m/%d}/{job.id}/{stem}-{created:%Y%m%d-%H%M%S}.{FORMATS[job.format].extension}"


def download_filename(job) -> str:
    """What the browser saves: the report's title (any script) + when it was asked for."""
    created = timezone.localtime(job.created_at)
    title = "".join(ch for ch in job.report_title if ch.isprintable() and ch not in '\\/:*?"<>|')
    safe_title = title.strip() or "report"
    return f"{safe_title} {created:%Y-%m-%d %H%M%S}.{FORMATS[job.format].extension}"
