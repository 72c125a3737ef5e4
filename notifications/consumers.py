"""The websocket: authenticate, join the user's own group, replay what they have not seen, forward."""

import asyncio
import json
import time
from collections import Counter
from importlib import import_module
from types import SimpleNamespace

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user
from django.utils import timezone

from .models import Notification
from .services import MAX_IDS, socket_opened, user_group, valid_ids

REPLAY_LIMIT = 50
MAX_CLIENT_MESSAGE = 4096
# the page does not reconnect: the user must log in again
NOT_AUTHENTICATED = SESSION_ENDED = 4401
SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
CLIENT_MESSAGES_PER_SECOND = 5
CLIENT_MESSAGES_BURST = 20
# Sockets of one user in this process: at most so many open, opened at most so fast (60 in a burst,
# then one a second); past either, the socket is closed with TOO_MANY and the page tries again later.
MAX_SOCKETS_PER_USER = 20
OPENS_PER_SECOND, OPENS_BURST = 1.0, 60
TOO_MANY = 4429


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


class UserSockets:
    """How many sockets each user has open in this process, and how fast they open them."""

    def __init__(self):
        self.open: Counter[int] = Counter()
        self.opening: dict[int, TokenBucket] = {}

    def admit(self, user_id: int) -> bool:
        bucket = self.opening.setdefault(user_id, TokenBucket(OPENS_PER_SECOND, OPENS_BURST))
        if self.open[user_id] >= MAX_SOCKETS_PER_USER or not bucket.take():
            return False
        self.open[user_id] += 1
        return True

    def closed(self, user_id: int) -> None:
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]


USER_SOCKETS = UserSockets()


class NotificationConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_AUTHENTICATED)
            return
        if not USER_SOCKETS.admit(user.pk):
            # (so that the page sees the code and waits before it tries again)
            await self.accept()
            await self.close(code=TOO_MANY)
            return
        self.admitted = True
        self.user_id = user.pk
        self.bucket = TokenBucket(CLIENT_MESSAGES_PER_SECOND, CLIENT_MESSAGES_BURST)
        self.warned_at = float("-inf")
        self.session_key = self.scope["session"].session_key
        # from the session, never from anything the client sends
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        socket_opened(+1)
        self.counted = True
        self.expiry = None
        await self.watch_session_expiry()
        for message in await self.unseen_messages():
            await self.send_json({**message, "replay": True})

    async def disconnect(self, code):
        if getattr(self, "admitted", False):
            USER_SOCKETS.closed(self.user_id)
        if getattr(self, "counted", False):
            socket_opened(-1)
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if getattr(self, "expiry", None):
            self.expiry.cancel()

    # The socket lives as long as its session: it closes when the user logs out (that session), when
    # the user changes their password, is deactivated or deleted (notifications.signals), and when the
    # session expires (a timer set at its expiry date, checked again then).
    async def session_ended(self, event):
        if event.get("session_key") == self.session_key:
            await self.close(code=SESSION_ENDED)

    async def session_check(self, event):
        if not await self.session_valid():
            await self.close(code=SESSION_ENDED)

    async def watch_session_expiry(self) -> None:
        seconds = await self.seconds_to_expiry()
        if seconds is None:
            await self.close(code=SESSION_ENDED)
            return
        loop = asyncio.get_running_loop()
        self.expiry = loop.call_later(seconds + 0.5, lambda: loop.create_task(self.expiry_reached()))

    async def expiry_reached(self) -> None:
        # extended meanwhile: a new timer; ended: closed
        await self.watch_session_expiry()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # dropped; said at most once a second, so flooding gets little back
        if not self.bucket.take():
            if time.monotonic() - self.warned_at >= 1:
                self.warned_at = time.monotonic()
                await self.send_json({"type": "error", "error": "Too many messages: slow down."})
            return
        try:
            if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
                raise ValueError
            content = json.loads(text_data)
        # not JSON, or nested deeper than the parser goes
        except (ValueError, RecursionError):
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
    def seconds_to_expiry(self) -> float | None:
        """Seconds until this socket's session expires; None when it is no longer valid."""
        if not self.session_is_valid():
            return None
        store = SessionStore(self.session_key)
        age = store.get_expiry_age()
        # A database session's row holds its real expiry: one saved with the default age (no expiry of
        # its own in its data) would otherwise count SESSION_COOKIE_AGE from now, at every check.
        if hasattr(store, "get_model_class"):
            rows = store.get_model_class().objects.filter(session_key=self.session_key)
            expires = rows.values_list("expire_date", flat=True).first()
            if expires is not None:
                age = min(age, (expires - timezone.now()).total_seconds())
        return max(0.0, age)

    @database_sync_to_async
    def session_valid(self) -> bool:
        return self.session_is_valid()

    def session_is_valid(self) -> bool:
        """What the AuthenticationMiddleware would decide for a request with this session: it exists
        and has not expired, and its user is the same, still active, with the same password."""
        user = get_user(SimpleNamespace(session=SessionStore(self.session_key)))
        return user.is_authenticated and user.pk == self.user_id

    @database_sync_to_async
    def unseen_messages(self) -> list[dict]:
        unseen = Notification.objects.filter(user_id=self.user_id).unseen()[:REPLAY_LIMIT]
        # oldest first, as they happened
        return [n.as_message() for n in reversed(unseen)]

    @database_sync_to_async
    def mark_seen(self, ids) -> int:
        notifications = Notification.objects.filter(user_id=self.user_id)
        if ids is not None:
            notifications = notifications.filter(pk__in=ids)
        return notifications.mark_seen()
