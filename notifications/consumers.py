"""The websocket: authenticate, join the user's own group, replay what they have not seen, forward."""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .models import Notification
from .services import user_group

REPLAY_LIMIT = 50
MAX_CLIENT_MESSAGE = 4096
NOT_AUTHENTICATED = 4401


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_AUTHENTICATED)
            return
        self.user_id = user.pk
        self.group = user_group(user.pk)  # from the session, never from anything the client sends
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        for message in await self.unseen_messages():
            await self.send_json({**message, "replay": True})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
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
            if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > 500:
                await self.send_json({"type": "error", "error": "'ids' must be a list of up to 500 integers."})
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
