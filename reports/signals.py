from django.db.models.signals import post_delete
from django.dispatch import receiver

from .files import delete_file
from .models import ReportJob, ReportSegment


@receiver(post_delete, sender=ReportJob)
def delete_job_file(sender, instance: ReportJob, **kwargs) -> None:
    """A deleted job (admin, queryset delete, user deletion) takes its file with it."""
    delete_file(instance.file.name)


@receiver(post_delete, sender=ReportSegment)
def delete_segment_file(sender, instance: ReportSegment, **kwargs) -> None:
    delete_file(instance.file)
