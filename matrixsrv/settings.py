"""Django settings for matrixsrv. Every knob is read in matrixsrv/config.py (documented there)."""

from __future__ import annotations

from typing import Any

import dj_database_url

from matrixsrv import config

BASE_DIR = config.BASE_DIR
SECRET_KEY = config.secret_key()
DEBUG = config.get_bool("MATRIX_DEBUG")
ALLOWED_HOSTS = [h.strip() for h in config.get("MATRIX_ALLOWED_HOSTS").split(",") if h.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "matrixsrv",  # its management commands (migrate_safely); no models
    "accounts",
    "push",
    "e2ee",
    "events",
    "rooms",
    "ephemeral",
    "presence",
    "sync",
    "moderation",
]

MIDDLEWARE = [
    "matrixsrv.metrics_views.RequestMetricsMiddleware",  # first: times everything below it
    "matrixsrv.middleware.MatrixCorsMiddleware",
    "matrixsrv.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The client API (/_matrix/, /.well-known/matrix/) runs only these (matrixsrv/asgi.py); their views
# are token-authenticated and CSRF-exempt, so sessions, CSRF, auth and messages have nothing to do.
API_MIDDLEWARE = [
    "matrixsrv.metrics_views.RequestMetricsMiddleware",
    "matrixsrv.middleware.MatrixCorsMiddleware",
    "matrixsrv.middleware.BodySizeLimitMiddleware",
]

ROOT_URLCONF = "matrixsrv.urls"
ASGI_APPLICATION = "matrixsrv.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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


def _database() -> dict:
    url = config.get("DATABASE_URL") or f"sqlite:///{config.data_dir() / 'matrixsrv.sqlite3'}"
    # ASGI: no persistent connections; PostgreSQL connections come from psycopg's pool instead
    # (Django docs, "Databases": persistent connections should be disabled under ASGI).
    db = dj_database_url.parse(url, conn_max_age=0)
    if db["ENGINE"] == "django.db.backends.postgresql":
        db.setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 20, "timeout": 30}
    elif db["ENGINE"] == "django.db.backends.sqlite3":
        db["ENGINE"] = "matrixsrv.sqlite"  # write transactions queue on a lock (matrixsrv/sqlite/base.py)
        # One writer at a time: take the write lock when a transaction starts (BEGIN IMMEDIATE), so
        # concurrent writers queue instead of failing to upgrade a read lock; WAL lets readers go on.
        db.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]



def redis_channel_layer(url: str) -> dict[str, Any]:
    """The channel layer over the Redis at ``url`` (wake-ups across workers, sync/waiter.py): Redis
    pub/sub. A wake-up is one PUBLISH that every worker's subscription reads; the list-based layer
    (``channels_redis.core``) took ~4 Redis round trips per group send plus a blocking pop per
    receive, and the writing worker read its own wake-ups back that way too: ~2 ms of CPU per sent
    event (bench/README.md). What pub/sub loses (a worker disconnected when a wake-up is published
    misses it) the list-based layer could keep for a while; a lost wake-up costs latency, never an
    answer (events/notify.py)."""
    return {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # A dead Redis is noticed; the subscription's reader polls every 0.1 s, well within it.
            "hosts": [{"address": url, "socket_timeout": 30}],
            "prefix": "matrixsrv",
        },
    }


REDIS_URL = config.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "matrixsrv",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = config.get("MATRIX_STATIC_ROOT")

# Behind the reverse proxy (deploy/nginx.conf): the proxy sets these headers.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = True
_baseurl = config.public_baseurl().rstrip("/")
CSRF_TRUSTED_ORIGINS = [_baseurl] if _baseurl.startswith(("http://", "https://")) else []

# Request bodies: the body-size middleware answers 413 M_TOO_LARGE under /_matrix; Django's own
# limit stays above it so the admin keeps working and the middleware's answer wins.
MATRIX_MAX_BODY_BYTES = config.get_int("MATRIX_MAX_BODY_BYTES")
DATA_UPLOAD_MAX_MEMORY_SIZE = max(MATRIX_MAX_BODY_BYTES * 2, 2_621_440)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.AccessTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["matrixsrv.parsers.MatrixJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["matrixsrv.renderers.MatrixJSONRenderer"],
    "EXCEPTION_HANDLER": "matrixsrv.exception_handler.matrix_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # ?format= is a Matrix parameter (GET /state/...?format=event), not DRF's renderer switch.
    "URL_FORMAT_OVERRIDE": None,
    "NUM_PROXIES": config.get_int("MATRIX_TRUSTED_PROXY_COUNT"),
}

# Matrix behaviour, read by the apps through django.conf.settings.MATRIX.
MATRIX = {
    "SERVER_NAME": config.get("MATRIX_SERVER_NAME"),
    "PUBLIC_BASEURL": config.public_baseurl(),
    "REGISTRATION": config.get("MATRIX_REGISTRATION").strip().lower(),
    "RESERVED_USERNAMES": config.get("MATRIX_RESERVED_USERNAMES"),
    "RATE_LIMIT": config.get_bool("MATRIX_RATE_LIMIT"),
    "RATES": {"login": config.get("MATRIX_RATE_LOGIN"), "register": config.get("MATRIX_RATE_REGISTER"),
              "report": config.get("MATRIX_RATE_REPORT")},
    "MODERATOR_LOCALPART": config.get("MATRIX_MODERATOR_LOCALPART"),
    "SYNC_TIMEOUT_CAP_MS": config.get_int("MATRIX_SYNC_TIMEOUT_CAP_MS"),
    "DB_PREPARE": config.get_bool("MATRIX_DB_PREPARE"),  # matrixsrv.rawsql.PreparedStatements
    "SERVE_STATIC": config.get_bool("MATRIX_SERVE_STATIC"),
    "TURN": config.turn(),  # GET /voip/turnServer; None: no TURN server configured
    # Operations (matrixsrv/health.py, matrixsrv/metrics_views.py)
    "WORKER_NAME": config.worker_name(),
    "METRICS": config.get_bool("MATRIX_METRICS"),
    "METRICS_SECRET": config.get("MATRIX_METRICS_SECRET"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        name: {"level": config.get("MATRIX_LOG_LEVEL"), "propagate": True}
        for name in ("matrixsrv", "accounts", "events", "rooms", "sync")
    },
}
