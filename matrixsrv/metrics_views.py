"""``GET /metrics`` and the middleware that counts and times every request (matrixsrv/metrics.py).

Access to /metrics (documented in the README, "Deployment"): off entirely with ``MATRIX_METRICS=off``;
with ``MATRIX_METRICS_SECRET`` set, only requests bearing ``Authorization: Bearer <secret>``;
otherwise only requests whose peer is a loopback address *and* that carry no ``X-Forwarded-For``:
behind nginx on the same host every request's peer is loopback, so the header is what tells a
scrape made on the machine from a client's request relayed by the proxy (deploy/nginx.conf does
not route /metrics either). Each worker answers with its own counters: scrape every worker.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import Resolver404, resolve
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from matrixsrv import metrics
from matrixsrv.middleware import DualModeMiddleware

WORKER_HEADER = "X-Matrixsrv-Worker"


def _route(request: HttpRequest) -> str:
    """The URL pattern the request resolved to: a bounded label, unlike the path itself. A request
    answered before URL resolution (a CORS preflight, a 413) is resolved here."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return metrics.UNMATCHED_ROUTE
    return match.route or metrics.UNMATCHED_ROUTE


class RequestMetricsMiddleware(DualModeMiddleware):
    """Counts and times each request by its route pattern, and names the worker in a header.

    Sync- and async-capable like matrixsrv.middleware's, so the async /sync view never hops threads
    for it. No database access.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]):
        super().__init__(get_response)
        self.worker = settings.MATRIX.get("WORKER_NAME") or ""
        metrics.WORKER_INFO.info({"name": self.worker, "pid": str(os.getpid())})

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        request.metrics_started = time.perf_counter()  # type: ignore[attr-defined]
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        route = _route(request)
        method = request.method or "GET"
        started = getattr(request, "metrics_started", time.perf_counter())
        metrics.HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
        metrics.HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        if self.worker:
            response[WORKER_HEADER] = self.worker
        return response


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _allowed(request: HttpRequest) -> bool:
    secret = settings.MATRIX.get("METRICS_SECRET") or ""
    if secret:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {secret}".encode())
    return _is_loopback(request.META.get("REMOTE_ADDR")) and "HTTP_X_FORWARDED_FOR" not in request.META


def metrics_view(request: HttpRequest) -> HttpResponse:
    """This worker's metrics in Prometheus' text format; 404 when turned off, 403 when not allowed."""
    if not settings.MATRIX.get("METRICS"):
        return HttpResponse(b"Not Found\n", status=404, content_type="text/plain")
    if not _allowed(request):
        return HttpResponse(b"Forbidden\n", status=403, content_type="text/plain")
    response = HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
