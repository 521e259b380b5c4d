"""Test settings: the real settings, with fast password hashing and rate limits off by default.

DATABASE_URL picks the database as in production (unset: SQLite), so the same suite runs on SQLite
and on PostgreSQL.
"""

import os
import tempfile

os.environ.setdefault("MATRIX_DATA_DIR", os.path.join(tempfile.gettempdir(), "matrixsrv-test-data"))
os.environ.setdefault("MATRIX_RATE_LIMIT", "off")
os.environ.setdefault("MATRIX_SERVE_STATIC", "off")

from matrixsrv.settings import *  # noqa: E402,F403
from matrixsrv.settings import DATABASES, MATRIX  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The in-process channel layer and cache for the suite, even when CI exports REDIS_URL: tests that
# exercise Redis start their own server processes with it (tests/live.py, marked "redis").
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
MATRIX["SERVER_NAME"] = "test.local"
# Django's test client must see the test's own (uncommitted) transaction, which only the request
# thread's connection can: /sync runs its queries there instead of in a pooled thread.
MATRIX["SYNC_DB_IN_REQUEST_THREAD"] = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Separate names let several test runs share one PostgreSQL server without colliding.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("MATRIX_TEST_DB_NAME", "test_matrixsrv")}
elif DATABASES["default"]["ENGINE"] == "matrixsrv.sqlite":
    # A file, as in production: an in-memory test database is shared between threads through
    # SQLite's shared cache, whose table locks fail at once ("database table is locked") instead of
    # waiting, which made the tests with concurrent writers flaky.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"matrixsrv-test-{os.getpid()}.sqlite3")
    }
