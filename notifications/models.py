from django.conf import settings
from django.db import models
from django.utils import timezone


class NotificationQuerySet(models.QuerySet):
    def for_user(self, user):
        return self.filter(user=user)

    def unseen(self):
        return self.filter(seen_at__isnull=True)

    def mark_seen(self) -> int:
        return self.unseen().update(seen_at=timezone.now())


class Notification(models.Model):
    """What a user was told. The row is the truth; the websocket push is only delivery."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    type = models.CharField(max_length=50)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "seen_at"])]

    def __str__(self) -> str:
        return f"{self.type} for {self.user_id}: {self.title}"

    def as_message(self) -> dict:
        """The websocket message: the event's own payload (e.g. `job`) plus the notification."""
        return {
            **self.payload,
            "type": self.type,
            "notification": {
                "id": self.pk,
                "title": self.title,
                "body": self.body,
                "link": self.link,
                "created_at": self.created_at.isoformat(),
                "seen": self.seen_at is not None,
            },
        }
