"""Settings for the background-reports project, driven by environment variables.

Every variable is listed with its default in `.env.example`.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime files (SQLite database, report files, spool files) live here unless told otherwise.
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)  # on only when asked for: `make run` and the tests say so
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # A web process and a worker both write: take the write lock up front and wait for it.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}

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
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "static"))

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


# Finished report files. Filesystem by default; S3 (django-storages) when a bucket is named.
def reports_storage_config(environ) -> dict:
    if not environ.get("AWS_STORAGE_BUCKET_NAME"):
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": environ.get("REPORTS_FILE_ROOT", str(VAR_DIR / "reports"))},
        }
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": environ["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE") or None,
            "signature_version": "s3v4",
            "default_acl": "private",  # objects are never public: downloads go through signed URLs
            "querystring_auth": True,
            "querystring_expire": int(environ.get("REPORTS_SIGNED_URL_SECONDS", 300)),
            "file_overwrite": False,
        },
    }


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "reports": reports_storage_config(os.environ),
}

RQ_QUEUES = {
    "reports": {
        "URL": REDIS_URL,
        "DEFAULT_TIMEOUT": env_int("REPORTS_JOB_TIMEOUT", 6 * 3600),
        "SERIALIZER": "rq.serializers.JSONSerializer",
    },
}
RQ_API_TOKEN = os.environ.get("RQ_API_TOKEN", "")
RQ = {"WORKER_CLASS": "reports.worker.ReportsWorker"}  # `manage.py rqworker` uses it unless told otherwise

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

# The reports app. Each is documented in README.md ("Settings").
REPORTS_CHUNK_SIZE = env_int("REPORTS_CHUNK_SIZE", 2000)
REPORTS_JOB_TIMEOUT = env_int("REPORTS_JOB_TIMEOUT", 6 * 3600)
REPORTS_MAX_ACTIVE_JOBS_PER_USER = env_int("REPORTS_MAX_ACTIVE_JOBS_PER_USER", 5)
REPORTS_MAX_JOBS_PER_MINUTE = env_int("REPORTS_MAX_JOBS_PER_MINUTE", 30)
REPORTS_SPOOL_DIR = os.environ.get("REPORTS_SPOOL_DIR", str(VAR_DIR / "spool"))
REPORTS_CSV_COPY = env_bool("REPORTS_CSV_COPY", True)  # CSV via PostgreSQL COPY when a report allows it
REPORTS_COPY_CHUNK_FACTOR = env_int("REPORTS_COPY_CHUNK_FACTOR", 5)  # COPY path: progress every this many chunks
# Segments (reports.batches): every report is cut into key ranges of about this many rows, written by
# any worker; a job keeps at most REPORTS_SEGMENTS_IN_FLIGHT of them queued or running (0: as many
# as there are workers). A run's heartbeat is saved every REPORTS_HEARTBEAT_SECONDS; one older than
# REPORTS_STALE_AFTER_SECONDS is taken for dead, and its segment given to another run, up to
# REPORTS_MAX_ATTEMPTS runs of one segment (or of the job's plan or join).
REPORTS_SEGMENT_ROWS = env_int("REPORTS_SEGMENT_ROWS", 100_000)
REPORTS_SEGMENTS_IN_FLIGHT = env_int("REPORTS_SEGMENTS_IN_FLIGHT", 0)
REPORTS_HEARTBEAT_SECONDS = float(os.environ.get("REPORTS_HEARTBEAT_SECONDS", "5"))
REPORTS_STALE_AFTER_SECONDS = env_int("REPORTS_STALE_AFTER_SECONDS", 20)
REPORTS_MAX_ATTEMPTS = env_int("REPORTS_MAX_ATTEMPTS", 3)
REPORTS_SPOOL_MAX_MB = env_int("REPORTS_SPOOL_MAX_MB", 10_240)  # a worker's spool folder; 0: no cap
REPORTS_PDF_MAX_ROWS = env_int("REPORTS_PDF_MAX_ROWS", 5000)
REPORTS_RETENTION_HOURS = env_int("REPORTS_RETENTION_HOURS", 7 * 24)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"rq.worker": {"level": os.environ.get("RQ_LOG_LEVEL", "INFO")}},
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_FAILURE_VIEW = "reports.api.csrf_failure"
REPORTS_PROGRESS_INTERVAL = float(os.environ.get("REPORTS_PROGRESS_INTERVAL", "1.0"))
# E-mail the owner when a report that ran longer than this many seconds ends (unset: never).
REPORTS_EMAIL_AFTER_SECONDS = (
    int(os.environ["REPORTS_EMAIL_AFTER_SECONDS"]) if os.environ.get("REPORTS_EMAIL_AFTER_SECONDS") else None
)
REPORTS_SITE_URL = os.environ.get("REPORTS_SITE_URL", "http://127.0.0.1:8000")  # for links in e-mails

MAILERS = {"default": {"BACKEND": os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")}}
if MAILERS["default"]["BACKEND"].endswith("smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": os.environ.get("EMAIL_HOST", "localhost"),
        "port": env_int("EMAIL_PORT", 25),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS", False),
    }
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "reports@localhost")
