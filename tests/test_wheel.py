"""The two apps as one wheel: built, installed into a fresh virtual environment, and used by a minimal
Django project of its own (its own model and report) to run a report end to end."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SETTINGS = """
SECRET_KEY = "wheel-test-" + "x" * 40
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                  "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
                  "channels", "django_rq", "notifications", "reports", "library"]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware", "django.middleware.csrf.CsrfViewMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware"]
ROOT_URLCONF = "mini.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "OPTIONS": {
    "context_processors": ["django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
                           "django.contrib.messages.context_processors.messages"]}}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
USE_TZ = True
STATIC_URL = "static/"
RQ_QUEUES = {"reports": {"URL": "redis://127.0.0.1:6379/13", "SERIALIZER": "rq.serializers.JSONSerializer"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
ASGI_APPLICATION = "mini.asgi.application"
REPORTS_SPOOL_DIR = "spool"
"""
URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls), path("", include("reports.urls")),
               path("", include("notifications.urls"))]
"""
ASGI = """
import os
from django.core.asgi import get_asgi_application
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mini.settings")
django_asgi_app = get_asgi_application()
from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from notifications.origin import SameOriginValidator
from notifications.routing import websocket_urlpatterns
application = ProtocolTypeRouter({"http": django_asgi_app,
    "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))})
"""
MODELS = """
from django.db import models

class Book(models.Model):
    title = models.CharField(max_length=200)
    pages = models.IntegerField()
"""
REPORTS = """
import reports
from .models import Book

@reports.register
class BooksReport(reports.Report):
    slug = "books"
    model = Book
    columns = ["id", "title", "pages"]
"""
SCRIPT = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "mini.settings"
django.setup()
from django.contrib.auth.models import Permission, User
from django.test import Client
from library.models import Book
user = User.objects.create_user("reader", password="pw-reader-1234")
user.user_permissions.add(Permission.objects.get(codename="view_book"))
Book.objects.bulk_create(Book(title=t, pages=p) for t, p in [("Dune", 412), ("=cmd|' /C calc'!A0", 1), ("Emma", 474)])
client = Client()
client.force_login(User.objects.get(pk=user.pk))
page = client.get("/reports/")
assert page.status_code == 200 and b"Books" in page.content, page.status_code
import mini.asgi  # the websocket route imports
"""


def run(*command, cwd: Path) -> str:
    """Run in a clean environment: nothing of this repository's settings leaks into the other project."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(DJANGO_SETTINGS_MODULE="mini.settings", PYTHONPATH=str(cwd))
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=900)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    # (as written: CRLF stays CRLF)
    return result.stdout.decode()


def test_the_wheel_installs_and_runs_a_report_in_a_project_of_its_own(tmp_path):
    # setuptools writes build/ and *.egg-info beside the sources: not into ours
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for name in ("reports", "notifications"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source), cwd=tmp_path
    )
    wheel = next((tmp_path / "dist").glob("django_background_reports-*.whl"))
    run(sys.executable, "-m", "venv", str(tmp_path / "venv"), cwd=tmp_path)
    python = str(tmp_path / "venv" / "bin" / "python")
    run(python, "-m", "pip", "install", "-q", str(wheel), cwd=tmp_path)
    for path, text in {
        "mini/__init__.py": "",
        "mini/settings.py": SETTINGS,
        "mini/urls.py": URLS,
        "mini/asgi.py": ASGI,
        "library/__init__.py": "",
        "library/models.py": MODELS,
        "library/reports.py": REPORTS,
        "setup_data.py": SCRIPT,
    }.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(textwrap.dedent(text))
    django_admin = [python, "-m", "django"]
    run(*django_admin, "makemigrations", "library", "-v0", cwd=tmp_path)
    run(*django_admin, "migrate", "-v0", cwd=tmp_path)
    run(*django_admin, "check", cwd=tmp_path)
    run(python, "setup_data.py", cwd=tmp_path)
    csv = run(
        *django_admin, "export_report", "books", "--format", "csv", "--user", "reader", "--output", "-", cwd=tmp_path
    )
    assert csv == "Id,Title,Pages\r\n1,Dune,412\r\n2,'=cmd|' /C calc'!A0,1\r\n3,Emma,474\r\n"
    site_packages = next((tmp_path / "venv").glob("lib/python*/site-packages"))
    assert (site_packages / "reports").is_dir() and (site_packages / "notifications").is_dir()
    # the apps only
    assert not any((site_packages / name).exists() for name in ("project", "shop", "tests"))
