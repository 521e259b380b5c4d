"""Liveness, readiness and the schema gate: what a load balancer or an orchestrator asks a worker.

* ``GET /health`` (liveness): the process answers; touches nothing else. 200 ``{"status": "ok"}``.
* ``GET /ready`` (readiness): a database query, the migrations all applied, and with ``REDIS_URL``
  a Redis PING and a message sent to and received from this worker's channel layer. 200
  ``{"status": "ok", "checks": {...}}`` or 503 ``{"status": "unavailable", "checks": {...}}``
  naming what failed.
* ``SchemaGate`` (wraps the ASGI app in matrixsrv/asgi.py): a worker whose database schema is
  behind its code answers 503 to everything but /health instead of running on the old schema,
  re-checking every few seconds until ``manage.py migrate_safely`` (run by another worker or the
  migrate service) has brought it up to date.

Both paths are outside /_matrix and go through the light API middleware stack (matrixsrv/asgi.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, JsonResponse

CHECK_TIMEOUT_S = 2.0
SCHEMA_RECHECK_S = 2.0
OK = "ok"

_schema_current = False  # once true it stays true: new migrations come only with new code (a restart)


def pending_migrations(alias: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The migrations of this code not yet applied to the database ("app.name"), in order."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def schema_is_current() -> bool:
    """Whether every migration is applied; remembered once true (one query per call until then)."""
    global _schema_current
    if not _schema_current:
        _schema_current = not pending_migrations()
    return _schema_current


def _error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {exc}"[:300]


def _check_database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK


def _check_migrations() -> str:
    if schema_is_current():
        return OK
    pending = pending_migrations()
    return f"error: {len(pending)} migration(s) not applied: {', '.join(pending[:5])}"


def _check_redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S)
    try:
        if client.ping() is not True:
            return "error: PING was not answered with PONG"
    finally:
        client.close()
    return OK


async def _channel_layer_roundtrip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # A channel of its own (with Redis: a subscription of its own), sent to and read back.
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError(f"unexpected message {message!r}")
    # The Redis pub/sub layer lets go of a channel (its subscription) when a receive on it is
    # cancelled, and only then: else every probe would leave one behind.
    release = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)
    release.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await release


def _check_channel_layer() -> str:
    async def bounded() -> None:
        await asyncio.wait_for(_channel_layer_roundtrip(), CHECK_TIMEOUT_S)

    async_to_sync(bounded)()
    return OK


def _run(check: Any, *args: Any) -> tuple[str, bool]:
    try:
        result = check(*args)
    except Exception as exc:  # a readiness probe reports failures, it doesn't raise them
        return _error(exc), False
    return result, result == OK


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response


async def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process is up and its event loop answers (async: no thread involved). No
    database, no Redis."""
    return _no_store(JsonResponse({"status": OK, "worker": settings.MATRIX.get("WORKER_NAME") or "",
                                   "pid": os.getpid()}))


def ready(request: HttpRequest) -> JsonResponse:
    """Readiness: may this worker be given traffic? Every check runs, each bounded by a timeout."""
    checks: dict[str, str] = {}
    ready_ = True
    database, ok = _run(_check_database)
    checks["database"] = database
    ready_ &= ok
    if ok:
        checks["migrations"], ok = _run(_check_migrations)
        ready_ &= ok
    else:
        checks["migrations"] = "error: not checked (no database)"
    redis_url = getattr(settings, "REDIS_URL", "")
    if redis_url:
        checks["redis"], ok = _run(_check_redis, redis_url)
        ready_ &= ok
        checks["channel_layer"], ok = _run(_check_channel_layer)
        ready_ &= ok
    body = {"status": OK if ready_ else "unavailable", "checks": checks,
            "worker": settings.MATRIX.get("WORKER_NAME") or ""}
    return _no_store(JsonResponse(body, status=200 if ready_ else 503))


class SchemaGate:
    """ASGI wrapper: 503 for every HTTP request but /health while the schema is behind the code."""

    LIVENESS_PATHS = ("/health",)

    def __init__(self, app: Any) -> None:
        self.app = app
        self._checked_at = float("-inf")
        self._lock: asyncio.Lock | None = None

    async def _current(self) -> bool:
        if _schema_current:
            return True
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not _schema_current and time.monotonic() - self._checked_at >= SCHEMA_RECHECK_S:
                self._checked_at = time.monotonic()
                try:
                    await sync_to_async(_schema_check_and_close, thread_sensitive=False)()
                except Exception:  # database down: not current as far as we can tell
                    pass
        return _schema_current

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.LIVENESS_PATHS or await self._current():
            return await self.app(scope, receive, send)
        body = json.dumps({"errcode": "M_UNKNOWN",
                           "error": "This worker's database schema is not up to date; "
                                    "run manage.py migrate_safely"}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"retry-after", b"5"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _schema_check_and_close() -> bool:
    try:
        return schema_is_current()
    finally:
        connections.close_all()  # this pool thread's connection goes back
