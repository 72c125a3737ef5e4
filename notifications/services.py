"""notify(): store a notification and push it to the user's open pages."""

from __future__ import annotations

import logging
from functools import wraps

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import JsonResponse

from .models import Notification

logger = logging.getLogger(__name__)
# in this process (the consumer counts them)
_open_sockets = 0


def socket_opened(delta: int) -> None:
    global _open_sockets
    _open_sockets += delta


def open_sockets() -> int:
    """Websockets open in this process now (for metrics)."""
    return _open_sockets


# notification ids a client may mark seen at once
MAX_IDS = 500


def valid_ids(ids) -> bool:
    """A list of notification ids as a client may send them (over HTTP or the websocket)."""
    return (
        isinstance(ids, list)
        and 0 < len(ids) <= MAX_IDS
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in ids)
    )


def login_required_json(view):
    """For JSON views (the reports app's too): 401 with a JSON error for an anonymous request."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Authentication required: log in first."}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def user_group(user_id: int) -> str:
    return f"user.{int(user_id)}"


def notify(
    user, *, type: str, title: str = "", body: str = "", link: str = "", payload: dict | None = None, store: bool = True
) -> Notification | None:
    """Tell a user something. Stored (the truth, replayed on connect) unless store=False, as for
    progress ticks that would flood the table; then pushed at most once over the channel layer."""
    payload = payload or {}
    notification = None
    if store:
        notification = Notification.objects.create(
            user=user, type=type, title=title, body=body, link=link, payload=payload
        )
        message = notification.as_message()
    else:
        message = {**payload, "type": type}
    push(user.pk, message)
    return notification


def push(user_id: int, message: dict) -> bool:
    """Send to every socket the user has open. Delivery may fail (Redis away): the row remains."""
    return push_to_sockets(user_id, {"type": "notification.message", "message": message})


def push_to_sockets(user_id: int, event: dict) -> bool:
    """Hand an event to every socket of the user (its `type` names the consumer's handler)."""
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(user_group(user_id), event)
    except Exception:
        logger.warning("Could not push %s to user %s.", event.get("type"), user_id, exc_info=True)
        return False
    return True
