"""`manage.py check`: report declarations (reports.E001 to E008, Report.check) and the app's settings
(reports.W001, reports.E101)."""

from django.core import checks
from django.core.files.storage import storages

from . import conf
from .downloads import OFFLOAD_HEADERS
from .files import private_folder
from .registry import report_classes


@checks.register("reports")
def check_reports(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    return [message for report_class in report_classes() for message in report_class.check()]


@checks.register("reports")
def check_settings(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    messages = []
    if "reports" not in storages.backends:
        messages.append(
            checks.Warning(
                f'STORAGES has no "reports" storage: report files are kept in {private_folder()}, on this machine.',
                hint='Name one (a folder every web process and worker shares, or S3) as STORAGES["reports"].',
                id="reports.W001",
            )
        )
    offload = conf.REPORTS_DOWNLOAD_OFFLOAD
    if offload and offload not in OFFLOAD_HEADERS:
        messages.append(
            checks.Error(
                f"REPORTS_DOWNLOAD_OFFLOAD is {offload!r}.",
                hint=f"Leave it empty, or set one of: {', '.join(OFFLOAD_HEADERS)}.",
                id="reports.E101",
            )
        )
    return messages
