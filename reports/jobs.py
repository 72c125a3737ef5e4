"""RQ entry points: they take ids only, load the row and hand it to the pipeline."""

from .models import ReportJob
from .pipeline import run_job


def generate_report(job_id: str) -> None:
    job = ReportJob.objects.filter(pk=job_id).first()
    if job is not None:  # a job deleted before it ran has nothing to do
        run_job(job)
