"""RQ entry points: they take ids only, load the rows and hand them to the pipeline."""

from .models import ReportJob, ReportPart
from .parallel import join, run_part
from .pipeline import run_job


def generate_report(job_id: str) -> None:
    job = ReportJob.objects.filter(pk=job_id).first()
    if job is not None:  # a job deleted before it ran has nothing to do
        run_job(job, split=True)


def generate_part(part_id: int) -> None:
    part = ReportPart.objects.select_related("job__owner").filter(pk=part_id).first()
    if part is not None:  # replaced by a later attempt's parts, or the job was deleted
        run_part(part)


def join_parts(job_id: str, attempt: int) -> None:
    job = ReportJob.objects.select_related("owner").filter(pk=job_id, attempts=attempt).first()
    if job is not None:  # deleted, or restarted: the later attempt has its own join
        join(job)
