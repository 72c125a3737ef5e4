"""Recent notifications for the header list, and marking them seen, over plain HTTP."""

import json

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_POST

from .models import Notification
from .services import MAX_IDS, login_required_json, valid_ids

RECENT = 20


@require_GET
@login_required_json
def recent(request):
    mine = Notification.objects.for_user(request.user)
    return JsonResponse({"unseen": mine.unseen().count(), "notifications": [n.as_message() for n in mine[:RECENT]]})


@require_POST
@login_required_json
def mark_seen(request):
    """Body {"ids": [1, 2]} marks those (at most MAX_IDS); {"all": true} marks them all."""
    shape = 'Send {"ids": [notification ids]} or {"all": true}.'
    try:
        body = json.loads(request.body)
    except RequestDataTooBig:
        return JsonResponse({"error": "The request body is too large."}, status=413)
    except (ValueError, RecursionError):
        return JsonResponse({"error": f"The body must be JSON. {shape}"}, status=400)
    mine = Notification.objects.for_user(request.user)
    if isinstance(body, dict) and set(body) == {"all"} and body["all"] is True:
        return JsonResponse({"seen": mine.mark_seen()})
    ids = body.get("ids") if isinstance(body, dict) and set(body) == {"ids"} else None
    if not valid_ids(ids):
        return JsonResponse({"error": f"'ids' must be a list of 1 to {MAX_IDS} integers. {shape}"}, status=400)
    return JsonResponse({"seen": mine.filter(pk__in=ids).mark_seen()})
