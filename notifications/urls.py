from django.urls import path

from . import api

app_name = "notifications"

urlpatterns = [
    path("api/notifications/", api.recent, name="recent"),
    path("api/notifications/seen/", api.mark_seen, name="seen"),
]
