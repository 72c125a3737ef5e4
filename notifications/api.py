"""Recent notifications for the header list, and marking them seen, over plain HTTP."""

import json

from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from .models import Notification

RECENT = 20


def _login_required_json(view):
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Authentication required: log in first."}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@_login_required_json
def recent(request):
    mine = Notification.objects.for_user(request.user)
    return JsonResponse({"unseen": mine.unseen().count(), "notifications": [n.as_message() for n in mine[:RECENT]]})


@require_POST
@_login_required_json
def mark_seen(request):
    """Body {"ids": [1, 2]} marks those; {} marks them all."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "The body must be JSON."}, status=400)
    ids = body.get("ids") if isinstance(body, dict) else None
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
        return JsonResponse({"error": "'ids' must be a list of integers."}, status=400)
    mine = Notification.objects.for_user(request.user)
    count = (mine.filter(pk__in=ids) if ids is not None else mine).mark_seen()
    return JsonResponse({"seen": count})
