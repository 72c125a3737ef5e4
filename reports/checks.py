"""`manage.py check` for report declarations: ids reports.E001 to reports.E006 (Report.check)."""

from django.core import checks

from .registry import report_classes


@checks.register("reports")
def check_reports(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    return [message for report_class in report_classes() for message in report_class.check()]
