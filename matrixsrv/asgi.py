"""ASGI entry point for daphne: ``daphne matrixsrv.asgi:application``.

Two Django handlers share one URLconf: the client API (/_matrix/, /.well-known/matrix/) runs only
the middleware it needs (CORS and the body limit, both async), so a request makes no thread hop
before its view; the admin and the login pages get Django's full stack (sessions, CSRF, auth,
messages). Measured: the full stack cost ~1.5 ms of CPU per API request in thread hops alone.
Once everything is imported, the startup heap is frozen out of the garbage collector's sight
(``_settle_heap``).
"""

import asyncio
import contextlib
import gc
import os

import django
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest
from django.urls import ResolverMatch, resolve, set_script_prefix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matrixsrv.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402  (after Django is set up)
from django.test.utils import override_settings  # noqa: E402

from events.notify import remember_event_loop  # noqa: E402
from matrixsrv.health import SchemaGate  # noqa: E402

API_PATH_PREFIXES = ("/_matrix/", "/.well-known/matrix/")
OPS_PATHS = ("/health", "/ready", "/metrics")  # matrixsrv/health.py: no sessions or CSRF either


class ClientAPIHandler(ASGIHandler):
    """Django's ASGI handler with the client API's middleware list (settings.API_MIDDLEWARE)."""

    def load_middleware(self, is_async: bool = False) -> None:
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            super().load_middleware(is_async=is_async)


class SyncHandler(ClientAPIHandler):
    """GET /sync (sync.views.sync_view, async) with the API's middleware, minus what only views that
    use the database in the request's own thread need: Django's handler starts a thread for each
    request (asgiref's ThreadSensitiveContext) and hops to it to send ``request_started`` and
    ``request_finished``, whose receivers close that thread's database connections. /sync makes its
    queries in pooled threads that give their connection back after each read (sync.views.run_db),
    so here there is nothing to close: the long-polls one message wakes are answered without ~300
    thread starts and hops. The rest is Django's ``handle``: the request, the middleware chain and
    the view, the response, and a client that goes away cancelling the view."""

    def __init__(self) -> None:
        super().__init__()
        self._matches: dict[str, ResolverMatch] = {}

    def resolve_request(self, request: HttpRequest) -> ResolverMatch:
        """The URLconf does not change while the process runs: /sync's paths are resolved once
        (walking the client API's patterns to reach it was ~5% of a fan-out's CPU). Only the paths
        routed here (``SYNC_PATHS``) come this way, so the cache stays this small."""
        if hasattr(request, "urlconf"):
            return super().resolve_request(request)
        match = self._matches.get(request.path_info)
        if match is None:
            match = self._matches[request.path_info] = super().resolve_request(request)
        request.resolver_match = match
        return match

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def respond() -> None:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
                await self.send_response(response, send)

        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(respond())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()  # the view (a long-poll) ends when its client goes away
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
            body_file.close()


site_application = ASGIHandler()
api_application = ClientAPIHandler()
sync_application = SyncHandler()
SYNC_PATHS = ("/_matrix/client/v3/sync", "/_matrix/client/r0/sync")

if settings.MATRIX["SERVE_STATIC"]:
    # Embedded mode: daphne serves the admin's CSS/JS itself (behind nginx, nginx serves them).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    site_application = ASGIStaticFilesHandler(site_application)


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    remember_event_loop(asyncio.get_running_loop())  # wake-ups are published on it (events/notify.py)
    return await _gated(scope, receive, send)


async def _route(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "http" and scope["path"] in SYNC_PATHS:
        return await sync_application(scope, receive, send)
    path = scope["path"]
    if scope["type"] == "http" and (path.startswith(API_PATH_PREFIXES) or path in OPS_PATHS):
        return await api_application(scope, receive, send)
    return await site_application(scope, receive, send)


# A worker whose schema is behind its code answers 503 (but /health) until migrations are applied.
_gated = SchemaGate(_route)


def _settle_heap() -> None:
    """Before the first request: import what the first requests would (the URLconf and every view
    module behind it), then move everything made so far out of the garbage collector's sight
    (``gc.freeze``). A full collection walks every tracked object; in a worker that is ~110,000 of
    them before a single request (Django, DRF, Twisted, psycopg...), and it took 60-200 ms with the
    event loop stopped, every few seconds under load (measured in a fan-out to 100 waiters). What
    stays in sight is what requests make."""
    resolve("/_matrix/client/v3/sync")
    gc.collect()
    gc.freeze()


_settle_heap()
