from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Reports"

    def ready(self):
        # Every installed app's reports.py registers its reports, as admin.py modules do.
        autodiscover_modules("reports")
        from . import signals  # noqa: F401
