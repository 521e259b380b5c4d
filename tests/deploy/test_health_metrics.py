"""/health, /ready, /metrics and the schema gate (matrixsrv/health.py, matrixsrv/metrics*.py), in-process.

The same suite runs on SQLite and PostgreSQL. Redis checks use a URL nobody listens on (port 1),
so they fail fast whatever the machine has running.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from channels.layers import get_channel_layer
from django.http import HttpResponse
from django.test import Client, RequestFactory, override_settings
from prometheus_client import REGISTRY

from events.notify import WAKEUP_GROUP
from matrixsrv import config, health
from matrixsrv.metrics_views import WORKER_HEADER, RequestMetricsMiddleware
from matrixsrv.settings import redis_channel_layer
from sync.waiter import Notifier
from tests.matrix_client import MatrixClient

DEAD_REDIS = "redis://127.0.0.1:1/0"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- /health -------------------------------------------------------------------------------------------

def test_health_answers_without_touching_the_database() -> None:
    # No db fixture: pytest-django would fail any query, so passing proves liveness needs none.
    response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and isinstance(body["pid"], int)
    assert response["Cache-Control"] == "no-store"


# -- /ready --------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_ready_without_redis_checks_database_and_migrations() -> None:
    with override_settings(REDIS_URL=""):
        response = Client().get("/ready")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok"}


@pytest.mark.django_db
def test_ready_with_an_unreachable_redis_is_503_naming_redis() -> None:
    with override_settings(REDIS_URL=DEAD_REDIS):
        response = Client().get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error:")
    # The in-process channel layer of the test settings still works: only Redis is named.
    assert body["checks"]["channel_layer"] == "ok"


@pytest.mark.django_db
def test_ready_with_a_redis_channel_layer_that_cannot_connect_is_503() -> None:
    layers = {"default": redis_channel_layer(DEAD_REDIS)}
    with override_settings(REDIS_URL=DEAD_REDIS, CHANNEL_LAYERS=layers):
        response = Client().get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"].startswith("error:") and checks["channel_layer"].startswith("error:")


@pytest.mark.redis
def test_the_channel_layer_check_leaves_no_subscription_behind() -> None:
    """Against the real Redis: the check's channel is a subscription of its own, given up after the
    check; a load balancer probes every few seconds."""
    layers = {"default": redis_channel_layer(config.get("REDIS_URL") or "redis://127.0.0.1:6379/0")}

    async def probes() -> int:
        layer = get_channel_layer()
        for _ in range(3):
            await health._channel_layer_roundtrip()
        return len(layer._get_layer().channels)

    with override_settings(CHANNEL_LAYERS=layers):
        assert asyncio.run(probes()) == 0


@pytest.mark.django_db
def test_ready_with_a_schema_behind_the_code_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "_schema_current", False)
    monkeypatch.setattr(health, "pending_migrations", lambda alias="default": ["rooms.9999_future"])
    with override_settings(REDIS_URL=""):
        response = Client().get("/ready")
    assert response.status_code == 503
    assert "rooms.9999_future" in response.json()["checks"]["migrations"]


def test_ready_with_the_database_down_is_503(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("connection refused")

    monkeypatch.setattr(health, "_check_database", broken)
    with override_settings(REDIS_URL=""):
        response = Client().get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: RuntimeError: connection refused"


# -- the schema gate -----------------------------------------------------------------------------------

def _asgi_get(app, path: str) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def test_schema_gate_refuses_requests_until_the_schema_is_current(monkeypatch: pytest.MonkeyPatch) -> None:
    async def inner(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"served"})

    current = {"value": False}

    def fake_check() -> bool:
        health._schema_current = current["value"]
        return current["value"]

    monkeypatch.setattr(health, "_schema_current", False)
    monkeypatch.setattr(health, "_schema_check_and_close", fake_check)
    monkeypatch.setattr(health, "SCHEMA_RECHECK_S", 0.0)
    gate = health.SchemaGate(inner)
    status, body = _asgi_get(gate, "/_matrix/client/versions")
    assert status == 503 and b"M_UNKNOWN" in body
    assert _asgi_get(gate, "/health") == (200, b"served")  # liveness still answers
    current["value"] = True  # another worker finished migrating
    assert _asgi_get(gate, "/_matrix/client/versions") == (200, b"served")


# -- /metrics ------------------------------------------------------------------------------------------

def test_metrics_count_requests_by_route_pattern_not_path(make_user, matrix: MatrixClient) -> None:
    alice = make_user("metricsalice")
    room_id = matrix.create_room(alice)
    route = "_matrix/client/v3/rooms/<str:room_id>/send/<str:event_type>/<str:txn_id>"
    before = sample("matrixsrv_http_requests_total", method="PUT", route=route, status="200")
    hist_before = sample("matrixsrv_http_request_duration_seconds_count", method="PUT", route=route)
    matrix.send_text(alice, room_id, "one")
    matrix.send_text(alice, room_id, "two")
    assert sample("matrixsrv_http_requests_total", method="PUT", route=route, status="200") == before + 2
    assert sample("matrixsrv_http_request_duration_seconds_count", method="PUT", route=route) == hist_before + 2

    response = Client().get("/metrics")  # the test client's peer is 127.0.0.1, no X-Forwarded-For
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert f'route="{route}"' in text
    assert room_id not in text  # the raw path never becomes a label
    assert re.search(r"^matrixsrv_sync_waiters \d", text, re.M)


def test_a_cors_preflight_answered_by_middleware_is_still_labelled_by_its_route() -> None:
    route = "_matrix/client/v3/rooms/<str:room_id>/send/<str:event_type>/<str:txn_id>"
    before = sample("matrixsrv_http_requests_total", method="OPTIONS", route=route, status="200")
    assert Client().options("/_matrix/client/v3/rooms/!r:x/send/m.room.message/t1").status_code == 200
    assert sample("matrixsrv_http_requests_total", method="OPTIONS", route=route, status="200") == before + 1


def test_unmatched_paths_share_one_label() -> None:
    before = sample("matrixsrv_http_requests_total", method="GET", route="<unmatched>", status="404")
    Client().get("/no/such/page/1")
    Client().get("/no/such/page/2")
    assert sample("matrixsrv_http_requests_total", method="GET", route="<unmatched>", status="404") == before + 2


def test_metrics_refuse_proxied_and_remote_requests() -> None:
    assert Client().get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 403
    assert Client(REMOTE_ADDR="203.0.113.5").get("/metrics").status_code == 403


def test_metrics_with_a_secret_need_the_bearer_secret(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MATRIX = {**settings.MATRIX, "METRICS_SECRET": "s3cret"}
    remote = Client(REMOTE_ADDR="203.0.113.5")
    assert remote.get("/metrics").status_code == 403
    assert remote.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert remote.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_metrics_can_be_turned_off(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MATRIX = {**settings.MATRIX, "METRICS": False}
    assert Client().get("/metrics").status_code == 404


def test_worker_header_names_the_worker_when_configured(settings) -> None:  # type: ignore[no-untyped-def]
    assert WORKER_HEADER not in Client().get("/health")  # unnamed by default: no header
    settings.MATRIX = {**settings.MATRIX, "WORKER_NAME": "w7"}
    # The middleware reads the name when it is built, as at worker start-up.
    middleware = RequestMetricsMiddleware(lambda request: HttpResponse())
    assert middleware(RequestFactory().get("/health"))[WORKER_HEADER] == "w7"


def test_events_persisted_and_wakeups_sent_count_after_commit(
    make_user, matrix: MatrixClient, django_capture_on_commit_callbacks
) -> None:
    alice = make_user("metricsbob")
    room_id = matrix.create_room(alice)
    persisted = sample("matrixsrv_events_persisted_total")
    sent = sample("matrixsrv_sync_wakeups_sent_total")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        matrix.send_text(alice, room_id, "not yet committed")
    assert sample("matrixsrv_events_persisted_total") == persisted  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sample("matrixsrv_events_persisted_total") == persisted + 1
    assert sample("matrixsrv_sync_wakeups_sent_total") == sent + 1


def test_sync_waiters_gauge_and_wakeups_received() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        waiting = sample("matrixsrv_sync_waiters")
        received = sample("matrixsrv_sync_wakeups_received_total")
        async with notifier.listen(12345) as waiter:
            assert sample("matrixsrv_sync_waiters") == waiting + 1
            await get_channel_layer().group_send(
                WAKEUP_GROUP, {"type": "stream.advanced", "pos": 10**9, "rooms": [], "users": [12345]}
            )
            assert await waiter.wait(after_pos=0, timeout_s=5)
        assert sample("matrixsrv_sync_waiters") == waiting
        assert sample("matrixsrv_sync_wakeups_received_total") >= received + 1

    asyncio.run(scenario())
