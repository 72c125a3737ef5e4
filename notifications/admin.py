from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["title", "type", "user", "created_at", "seen_at"]
    list_filter = ["type", ("seen_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["title", "body", "user__username"]
    list_select_related = ["user"]
    readonly_fields = ["user", "type", "title", "body", "link", "payload", "created_at", "seen_at"]

    def has_add_permission(self, request):
        return False
