"""The websocket's origin check: the page that opens a socket must be this very site.

Channels' AllowedHostsOriginValidator compares only the host name of the Origin header with
ALLOWED_HOSTS, so `http://127.0.0.1:1` passes for a site on `http://127.0.0.1:8000`. Here the Origin
must equal the site the request was made to (scheme, host and port: what a browser sends for a page
of this site), with that host in ALLOWED_HOSTS; or be listed exactly in CSRF_TRUSTED_ORIGINS (a page
on another origin, or a proxy that terminates TLS without passing the scheme on).
"""

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def origin_allowed(scope) -> bool:
    origin, host = header(scope, b"origin"), header(scope, b"host")
    if not origin or not host:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    domain, _ = split_domain_port(host)
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS) and origin == f"{scheme}://{host}"


class SameOriginValidator:
    """ASGI middleware: refuse a websocket whose Origin is not exactly this site's."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
