from django.apps import AppConfig
from django.contrib import admin
from django.utils.module_loading import autodiscover_modules


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Reports"

    def ready(self):
        # Every installed app's reports.py registers its reports, as admin.py modules do.
        autodiscover_modules("reports")
        from . import checks, signals  # noqa: F401  (they register themselves)
        from .admin_reports import register_admin_exports

        # (imports admin modules once; a no-op when the admin app did it already)
        admin.autodiscover()
        register_admin_exports(admin.site)
