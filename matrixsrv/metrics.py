"""The process's Prometheus metrics (prometheus_client's default registry), defined in one place.

Every daphne worker is a separate process (not a fork), so each keeps its own counters and exposes
them on its own ``GET /metrics`` (matrixsrv/metrics_views.py): Prometheus scrapes every worker and
tells them apart by its ``instance`` label; ``matrixsrv_worker_info`` names the worker too. No
multiprocess mode or shared files are needed.

Labels are bounded: requests are labelled with the URL *route pattern* they resolved to (e.g.
``_matrix/client/v3/rooms/<str:room_id>/send/<str:event_type>/<str:txn_id>``), never the raw path.

Kept free of Django's HTTP machinery so the write path (events/notify.py) and the /sync waiter
can import it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

HTTP_REQUESTS = Counter(
    "matrixsrv_http_requests",
    "HTTP requests answered, by method, URL route pattern and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "matrixsrv_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by method and URL route pattern "
    "(a /sync long-poll's wait included).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
SYNC_WAITERS = Gauge(
    "matrixsrv_sync_waiters",
    "/sync long-polls currently waiting for a wake-up in this worker (sync/waiter.py).",
)
EVENTS_PERSISTED = Counter(
    "matrixsrv_events_persisted",
    "Room events committed through the one write path (events.actions.append_event), counted after commit.",
)
WAKEUPS_SENT = Counter(
    "matrixsrv_sync_wakeups_sent",
    "Wake-up messages published to the channel layer after a commit (events/notify.py).",
)
WAKEUPS_RECEIVED = Counter(
    "matrixsrv_sync_wakeups_received",
    "Wake-up messages this worker's notifier received from the channel layer (sync/waiter.py).",
)
WORKER_INFO = Info("matrixsrv_worker", "This worker process: its name (MATRIX_WORKER_NAME) and pid.")

UNMATCHED_ROUTE = "<unmatched>"  # requests that resolved to no URL pattern (404s, static files)
