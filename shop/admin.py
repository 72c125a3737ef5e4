from django.contrib import admin

from reports.admin_export import BackgroundExportMixin

from .models import Customer, Order


@admin.register(Customer)
class CustomerAdmin(BackgroundExportMixin, admin.ModelAdmin):
    list_display = ["name", "email", "country", "city", "is_active", "credit_limit", "created_at"]
    list_filter = ["country", "is_active"]
    search_fields = ["name", "email"]


@admin.register(Order)
class OrderAdmin(BackgroundExportMixin, admin.ModelAdmin):
    list_display = ["number", "customer", "status", "country", "amount", "is_gift", "created_at"]
    list_filter = ["status", "country", "is_gift"]
    search_fields = ["number", "customer__name"]
    list_select_related = ["customer"]
    date_hierarchy = "created_at"
    export_columns = [
        "id",
        "number",
        "customer__name",
        "status",
        "country",
        "amount",
        "discount",
        "quantity",
        "is_gift",
        "note",
        "created_at",
        "shipped_at",
    ]
