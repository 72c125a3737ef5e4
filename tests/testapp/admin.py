from django.contrib import admin

from reports.admin_export import BackgroundExportMixin

from .models import Invoice


@admin.register(Invoice)
class InvoiceAdmin(BackgroundExportMixin, admin.ModelAdmin):
    list_display = ["number", "account", "amount", "reference", "created_at"]
