import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()  # first: it sets Django up before anything imports models

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

# Static files are served by the app itself, with DEBUG on or off: one process, nothing else to set up.
application = ProtocolTypeRouter({"http": ASGIStaticFilesHandler(django_asgi_app)})
