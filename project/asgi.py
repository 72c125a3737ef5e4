import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# first: it sets Django up before anything imports models
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from notifications.origin import SameOriginValidator  # noqa: E402
from notifications.routing import websocket_urlpatterns  # noqa: E402
from reports.downloads import StalledClients  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Static files are served by the app itself, with DEBUG on or off: nothing else to set up. A
        # client that stops reading a response is dropped (reports.downloads).
        "http": StalledClients(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
