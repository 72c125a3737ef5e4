"""Settings for the background-reports project, read from the environment (and from a `.env` file
beside manage.py, when there is one) by django-environ. Every variable is listed with its default
in `.env.example` and in docs/settings.md; an empty value counts as unset.
"""

import os
from pathlib import Path

import django
import environ

from reports.conf import DEFAULTS

BASE_DIR = Path(__file__).resolve().parent.parent
# the process's own environment wins over the file
environ.Env.read_env(BASE_DIR / ".env")
env = environ.Env()
# An empty value counts as unset: `DATABASE_URL=` in a copied .env.example means "the default".
env.ENVIRON = {name: value for name, value in os.environ.items() if value.strip()}


def app_env(cast, name: str):
    """A setting of the reports app from the environment; unset, the app's own default (reports.conf)."""
    return cast(name, default=DEFAULTS[name])


# Runtime files (SQLite database, report files, spool files) live here unless told otherwise.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

# on only when asked for: `make run` and the tests say so
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # `runserver` as an ASGI server (websockets too); project.web serves production
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "notifications",
    "reports",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Django's own Content-Security-Policy (SECURE_CSP below) is new in 6.0; on 5.2 the demo sends none.
if django.VERSION >= (6, 0):
    MIDDLEWARE.append("django.middleware.csp.ContentSecurityPolicyMiddleware")

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # A web process and a worker both write: take the write lock up front and wait for it.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
# Under ASGI every request in flight runs in a thread of its own, with a connection of its own: a
# burst of requests would open as many connections as it has requests (PostgreSQL refuses past
# max_connections, 100 by default). The web server (project.web) shares a pool of this many instead;
# a request waits for a free one. Off (0) elsewhere: a work-horse is forked, and a pool is not.
if env.int("DATABASE_POOL_SIZE", default=0) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    pool = {"min_size": 2, "max_size": env.int("DATABASE_POOL_SIZE"), "timeout": 30}
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = pool
    # (the pool keeps them)
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "reports:page"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static")))

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")


# Finished report files. Filesystem by default; S3 (django-storages) when a bucket is named.
def reports_storage_config(environ) -> dict:
    if not environ.get("AWS_STORAGE_BUCKET_NAME"):
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": environ.get("REPORTS_FILE_ROOT", str(VAR_DIR / "reports"))},
        }
    from botocore.config import Config

    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": environ["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": environ.get("AWS_SECRET_ACCESS_KEY") or None,
            # botocore's standard retries, 10 by default (botocore's AWS_MAX_ATTEMPTS sets it): an S3
            # answering 500/503, resetting connections or away for half a minute costs a segment time,
            # not one of its REPORTS_MAX_ATTEMPTS.
            "client_config": Config(
                s3={"addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE") or None},
                signature_version="s3v4",
                retries={"mode": "standard", "max_attempts": int(environ.get("AWS_MAX_ATTEMPTS", 10))},
                connect_timeout=5,
                read_timeout=30,
            ),
            # objects are never public: downloads go through signed URLs
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": int(environ.get("REPORTS_SIGNED_URL_SECONDS", 300)),
            "file_overwrite": False,
        },
    }


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "reports": reports_storage_config(env.ENVIRON),
}

RQ_QUEUES = {
    "reports": {
        "URL": REDIS_URL,
        "DEFAULT_TIMEOUT": app_env(env.int, "REPORTS_JOB_TIMEOUT"),
        "SERIALIZER": "rq.serializers.JSONSerializer",
    },
}
RQ_API_TOKEN = app_env(env.str, "RQ_API_TOKEN")
# `manage.py rqworker` uses it unless told otherwise
RQ = {"WORKER_CLASS": "reports.worker.ReportsWorker"}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

# The reports app. Each is documented in docs/settings.md.
# rows formatted (and in memory) at a time
REPORTS_CHUNK_SIZE = app_env(env.int, "REPORTS_CHUNK_SIZE")
REPORTS_JOB_TIMEOUT = app_env(env.int, "REPORTS_JOB_TIMEOUT")
REPORTS_MAX_ACTIVE_JOBS_PER_USER = app_env(env.int, "REPORTS_MAX_ACTIVE_JOBS_PER_USER")
REPORTS_MAX_JOBS_PER_MINUTE = app_env(env.int, "REPORTS_MAX_JOBS_PER_MINUTE")
REPORTS_MAX_SCHEDULES_PER_USER = app_env(env.int, "REPORTS_MAX_SCHEDULES_PER_USER")
REPORTS_SPOOL_DIR = env.str("REPORTS_SPOOL_DIR", default=str(VAR_DIR / "spool"))
# Segments (reports.runs): every report is cut into key ranges that one worker writes in about
# REPORTS_SEGMENT_SECONDS (or of REPORTS_SEGMENT_ROWS rows, when set), written by any worker; a job
# keeps at most REPORTS_SEGMENTS_IN_FLIGHT of them queued or running (0: as many as there are
# workers). A run's heartbeat is saved every REPORTS_HEARTBEAT_SECONDS; one older than
# REPORTS_STALE_AFTER_SECONDS is taken for dead, and its segment given to another run, up to
# REPORTS_MAX_ATTEMPTS runs of one segment (or of the job's plan or join). 1.5 s, measured (bench/,
# --segment-sizes): segments cost under 3% of a 1M-row report, and a newcomer waits at most about one.
REPORTS_SEGMENT_SECONDS = app_env(env.float, "REPORTS_SEGMENT_SECONDS")
# set: every segment this many rows
REPORTS_SEGMENT_ROWS = app_env(env.int, "REPORTS_SEGMENT_ROWS")
REPORTS_SEGMENTS_IN_FLIGHT = app_env(env.int, "REPORTS_SEGMENTS_IN_FLIGHT")
REPORTS_HEARTBEAT_SECONDS = app_env(env.float, "REPORTS_HEARTBEAT_SECONDS")
REPORTS_STALE_AFTER_SECONDS = app_env(env.int, "REPORTS_STALE_AFTER_SECONDS")
REPORTS_MAX_ATTEMPTS = app_env(env.int, "REPORTS_MAX_ATTEMPTS")
# a worker's spool folder; 0: no cap
REPORTS_SPOOL_MAX_MB = app_env(env.int, "REPORTS_SPOOL_MAX_MB")
REPORTS_PDF_MAX_ROWS = app_env(env.int, "REPORTS_PDF_MAX_ROWS")
# On PostgreSQL a request whose filters match nothing is refused at once (400) when an EXISTS query
# answers within this many milliseconds; 0: never asked (the run then says it found nothing).
REPORTS_EMPTY_CHECK_MS = app_env(env.int, "REPORTS_EMPTY_CHECK_MS")
# A report of at most this many rows is written straight into its download, without the queue
# (unset: what a worker writes in about a second in the format; 0: never).
REPORTS_INSTANT_MAX_ROWS = app_env(env.int, "REPORTS_INSTANT_MAX_ROWS")
# ... and of at most this many bytes (past it, at the write, the job is queued instead)
REPORTS_INSTANT_MAX_BYTES = app_env(env.int, "REPORTS_INSTANT_MAX_BYTES")
# small reports of one user waiting for (or in) their download; past it, a request is queued
REPORTS_INSTANT_PER_USER = app_env(env.int, "REPORTS_INSTANT_PER_USER")
# small reports one web process writes at once; past it, a request (or its download) is queued
REPORTS_INSTANT_WRITES_PER_PROCESS = app_env(env.int, "REPORTS_INSTANT_WRITES_PER_PROCESS")
# Downloads (reports.downloads): at most this many streaming per user (more: 429), a client that takes
# nothing for this many seconds is dropped, and files may be sent by the proxy ("x-accel-redirect" for
# nginx, with the internal location's prefix; "x-sendfile" for Apache or Caddy).
REPORTS_DOWNLOADS_PER_USER = app_env(env.int, "REPORTS_DOWNLOADS_PER_USER")
REPORTS_DOWNLOAD_STALL_SECONDS = app_env(env.float, "REPORTS_DOWNLOAD_STALL_SECONDS")
REPORTS_DOWNLOAD_OFFLOAD = app_env(env.str, "REPORTS_DOWNLOAD_OFFLOAD")
REPORTS_DOWNLOAD_OFFLOAD_PREFIX = app_env(env.str, "REPORTS_DOWNLOAD_OFFLOAD_PREFIX")
# download records
REPORTS_AUDIT_RETENTION_DAYS = app_env(env.int, "REPORTS_AUDIT_RETENTION_DAYS")
REPORTS_RETENTION_HOURS = app_env(env.int, "REPORTS_RETENTION_HOURS")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"rq.worker": {"level": env.str("RQ_LOG_LEVEL", default="INFO")}},
}

# HTTPS. With DEBUG off every default is the strict one (`manage.py check --deploy` is clean); each can
# be relaxed from the environment. Behind a proxy that terminates TLS, name the header it sets
# (DJANGO_SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto), or the SSL redirect would loop.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
if _proxy_header := env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (Django's own): scripts, styles, images and fonts from this site only, no
# inline script or style; the websocket to this site. No page here needs more (the admin included).
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
}
CSRF_FAILURE_VIEW = "reports.api.csrf_failure"
REPORTS_PROGRESS_INTERVAL = app_env(env.float, "REPORTS_PROGRESS_INTERVAL")
# E-mail the owner when a report that ran longer than this many seconds ends (unset: never).
REPORTS_EMAIL_AFTER_SECONDS = app_env(env.int, "REPORTS_EMAIL_AFTER_SECONDS")
# for links in e-mails
REPORTS_SITE_URL = app_env(env.str, "REPORTS_SITE_URL")

# E-mail is sent only when REPORTS_EMAIL_AFTER_SECONDS turns it on; the console prints it while debugging.
DEV_MAIL = "django.core.mail.backends.console.EmailBackend"
MAILERS = {
    "default": {
        "BACKEND": env.str(
            "EMAIL_BACKEND", default=DEV_MAIL if DEBUG else "django.core.mail.backends.smtp.EmailBackend"
        )
    }
}
if MAILERS["default"]["BACKEND"].endswith("smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": env.str("EMAIL_HOST", default="localhost"),
        "port": env.int("EMAIL_PORT", default=25),
        "username": env.str("EMAIL_HOST_USER", default=""),
        "password": env.str("EMAIL_HOST_PASSWORD", default=""),
        "use_tls": env.bool("EMAIL_USE_TLS", default=False),
    }
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="reports@localhost")
