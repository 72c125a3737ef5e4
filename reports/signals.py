from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .files import delete_file
from .models import ReportJob, ReportSchedule, ReportSegment
from .schedules import pause_for_owner


@receiver(post_delete, sender=ReportJob)
def delete_job_file(sender, instance: ReportJob, **kwargs) -> None:
    """A deleted job (admin, queryset delete, user deletion) takes its file with it."""
    delete_file(instance.file.name)


@receiver(post_delete, sender=ReportSegment)
def delete_segment_file(sender, instance: ReportSegment, **kwargs) -> None:
    delete_file(instance.file)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def pause_schedules_of_inactive_owner(sender, instance, **kwargs) -> None:
    """A deactivated user's schedules pause at once (reports.schedules.pause_for_owner); the tick also
    refuses to run one whose owner is inactive, however they were deactivated."""
    if instance.is_active:
        return
    for schedule in ReportSchedule.objects.filter(owner=instance, paused=False):
        pause_for_owner(schedule)
