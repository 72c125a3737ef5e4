"""Test settings: PostgreSQL and a Redis database of their own, runtime files in a temporary folder.

Worker processes started by the tests inherit this environment, so they share the folder and Redis.
"""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/reports")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# The test run's own folder (its worker processes inherit it), removed when the run ends (conftest).
CREATED_VAR_DIR = None if "VAR_DIR" in os.environ else tempfile.mkdtemp(prefix="reports-tests-")
os.environ.setdefault("VAR_DIR", CREATED_VAR_DIR or "")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# As in production (DEBUG off), with a key of the tests' own and cookies that plain HTTP carries.
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-" + "k" * 40)
os.environ.setdefault("DJANGO_SECURE_COOKIES", "false")
# the tests' servers speak plain HTTP
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
# Most tests ask for reports of empty or unrelated tables: the request-time "nothing matches" check is
# on only where a test turns it on (tests/test_api.py), so that the runs' own empty results are seen.
os.environ.setdefault("REPORTS_EMPTY_CHECK_MS", "0")
# Likewise small reports go through the queue unless a test asks for the instant download (tests/test_instant.py).
os.environ.setdefault("REPORTS_INSTANT_MAX_ROWS", "0")

from project.settings import *  # noqa: E402,F403
from project.settings import INSTALLED_APPS  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
