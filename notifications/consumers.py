"""The websocket: authenticate, join the user's own group, replay what they have not seen, forward."""

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .models import Notification
from .services import MAX_IDS, user_group, valid_ids

REPLAY_LIMIT = 50
MAX_CLIENT_MESSAGE = 4096
NOT_AUTHENTICATED = 4401
CLIENT_MESSAGES_PER_SECOND = 5
CLIENT_MESSAGES_BURST = 20


class TokenBucket:
    """At most `rate` messages a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_AUTHENTICATED)
            return
        self.user_id = user.pk
        self.bucket = TokenBucket(CLIENT_MESSAGES_PER_SECOND, CLIENT_MESSAGES_BURST)
        self.warned_at = float("-inf")
        self.group = user_group(user.pk)  # from the session, never from anything the client sends
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for message in await self.unseen_messages():
            await self.send_json({**message, "replay": True})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if not self.bucket.take():  # dropped; said at most once a second, so flooding gets little back
            if time.monotonic() - self.warned_at >= 1:
                self.warned_at = time.monotonic()
                await self.send_json({"type": "error", "error": "Too many messages: slow down."})
            return
        try:
            if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
                raise ValueError
            content = json.loads(text_data)
        except ValueError:
            await self.send_json({"type": "error", "error": "Send JSON text messages under 4 KB."})
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        action = content.get("action") if isinstance(content, dict) else None
        if action == "seen":
            ids = content.get("ids")
            if not valid_ids(ids):
                await self.send_json({"type": "error", "error": f"'ids' must be a list of 1 to {MAX_IDS} integers."})
                return
            await self.send_json({"type": "seen", "count": await self.mark_seen(ids)})
        elif action == "seen_all":
            await self.send_json({"type": "seen", "count": await self.mark_seen(None)})
        else:
            await self.send_json({"type": "error", "error": "Unknown action; use 'seen' or 'seen_all'."})

    async def notification_message(self, event):
        await self.send_json(event["message"])

    @database_sync_to_async
    def unseen_messages(self) -> list[dict]:
        unseen = Notification.objects.filter(user_id=self.user_id).unseen()[:REPLAY_LIMIT]
        return [n.as_message() for n in reversed(unseen)]  # oldest first, as they happened

    @database_sync_to_async
    def mark_seen(self, ids) -> int:
        notifications = Notification.objects.filter(user_id=self.user_id)
        if ids is not None:
            notifications = notifications.filter(pk__in=ids)
        return notifications.mark_seen()
