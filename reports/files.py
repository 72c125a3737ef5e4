"""Where files live and what they are called: spool files on a worker's disk, segment objects and
finished files in the reports storage.

A spool file is named after the run writing it, `<job>-s<segment>-a<attempt>.part` or
`<job>-join-a<attempt>.part`, so that whatever a killed run leaves behind can be told from a live
run's file by the database rows alone (reports.sweeper.clean_spool).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.utils import timezone
from django.utils.text import slugify

from . import conf
from .writers import FORMATS

SPOOL_NAME = re.compile(
    r"^(?P<job>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-(?:s(?P<segment>\d+)|join)-a(?P<attempt>\d+)\.part$"
)
# A segment object's name in its job's folder (segment_name; a storage may add "_<random>" to a taken name).
SEGMENT_OBJECT = re.compile(r"^\d+-a\d+(?:_[A-Za-z0-9]+)?\.seg$")


def reports_storage() -> Storage:
    """STORAGES["reports"] where the project names one (docs/settings.md), else a private folder of
    the app's own that no URL serves (a system check warns): never the project's default storage,
    which is often MEDIA, served to anyone at /media/."""
    if "reports" in storages.backends:
        return storages["reports"]
    return private_storage()


def private_folder() -> Path:
    """Where report files go without STORAGES["reports"]: beside the spool folder."""
    return spool_dir().parent / "reports"


@functools.cache
def _private_storage(location: str) -> FileSystemStorage:
    return FileSystemStorage(
        location=location, base_url=None, directory_permissions_mode=0o700, file_permissions_mode=0o600
    )


def private_storage() -> FileSystemStorage:
    return _private_storage(str(private_folder()))


def delete_file(name: str) -> None:
    if name:
        reports_storage().delete(name)


def storage_name(job) -> str:
    """A unique, readable key: 2026/11/28/<job uuid>/orders-20261128-101500.csv."""
    created = timezone.localtime(job.created_at)
    stem = slugify(job.report_title) or "report"
    return f"{created:%Y/%m/%d}/{job.id}/{stem}-{created:%Y%m%d-%H%M%S}.{FORMATS[job.format].extension}"


def delete_siblings(name: str) -> int:
    """Delete the other files in `name`'s folder: what earlier runs stored before they died (a job's
    file has a folder of its own)."""
    folder, _, keep = name.rpartition("/")
    try:
        _, names = reports_storage().listdir(folder)
    except FileNotFoundError:
        return 0
    others = [other for other in names if other != keep]
    for other in others:
        reports_storage().delete(f"{folder}/{other}")
    return len(others)


def discard_segment_files(job) -> int:
    """Delete the job's segment objects (once its file is stored, or when it ended without one)."""
    named = job.segments.exclude(file="")
    storage = reports_storage()
    count = 0
    for segment in named:
        storage.delete(segment.file)
        count += 1
    named.update(file="")
    return count


def segment_name(segment) -> str:
    """The segment object of a run: one name per run, so two runs never write the same object."""
    return f"segments/{segment.job_id}/{segment.index}-a{segment.attempts}.seg"


def spool_dir() -> Path:
    return Path(conf.REPORTS_SPOOL_DIR)


def segment_spool(segment) -> Path:
    return spool_dir() / f"{segment.job_id}-s{segment.index}-a{segment.attempts}.part"


def join_spool(job) -> Path:
    return spool_dir() / f"{job.pk}-join-a{job.attempts}.part"


def spool_bytes() -> int:
    """What the spool folder holds now."""
    return sum(p.stat().st_size for p in spool_dir().glob("*") if p.is_file()) if spool_dir().exists() else 0


def store(spool: Path, name: str) -> tuple[str, int]:
    """Put a finished spool file into the reports storage in one save: (its name there, its size)."""
    size = spool.stat().st_size
    with spool.open("rb") as fh:
        return reports_storage().save(name, SpoolFile(fh)), size


class SpoolFile(File):
    """A finished spool file. FileSystemStorage moves a file that has a temporary path instead of
    copying it (one rename, when on the same disk); other storages read it as usual."""

    def temporary_file_path(self) -> str:
        return self.file.name


def download_filename(job) -> str:
    """What the browser saves: the report's title (any script) + when it was asked for."""
    created = timezone.localtime(job.created_at)
    title = "".join(ch for ch in job.report_title if ch.isprintable() and ch not in '\\/:*?"<>|')
    safe_title = title.strip() or "report"
    return f"{safe_title} {created:%Y-%m-%d %H%M%S}.{FORMATS[job.format].extension}"
