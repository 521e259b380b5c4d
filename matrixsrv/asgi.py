"""ASGI entry point for daphne: ``daphne matrixsrv.asgi:application``.

Two Django handlers share one URLconf: the client API (/_matrix/, /.well-known/matrix/) runs only
the middleware it needs (CORS and the body limit, both async), so a request makes no thread hop
before its view; the admin and the login pages get Django's full stack (sessions, CSRF, auth,
messages). Measured: the full stack cost ~1.5 ms of CPU per API request in thread hops alone.
/sync has a handler of its own, lighter still (``SyncHandler``). Once everything is imported, the
startup heap is frozen out of the garbage collector's sight (``_settle_heap``).
"""

import asyncio
import contextlib
import gc
import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import response_for_exception
from django.urls import ResolverMatch, resolve, set_script_prefix
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matrixsrv.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402  (after Django is set up)
from django.test.utils import override_settings  # noqa: E402

from events.notify import remember_event_loop  # noqa: E402
from matrixsrv.health import SchemaGate  # noqa: E402
from matrixsrv.middleware import DualModeMiddleware  # noqa: E402
from sync.views import is_long_poll  # noqa: E402

API_PATH_PREFIXES = ("/_matrix/", "/.well-known/matrix/")
OPS_PATHS = ("/health", "/ready", "/metrics")  # matrixsrv/health.py: no sessions or CSRF either


class ClientAPIHandler(ASGIHandler):
    """Django's ASGI handler with the client API's middleware list (settings.API_MIDDLEWARE)."""

    def load_middleware(self, is_async: bool = False) -> None:
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            super().load_middleware(is_async=is_async)


class SyncHandler(ClientAPIHandler):
    """GET /sync (sync.views.sync_view, async) with less of Django's per-request machinery: the most
    frequent request of all, and the one a message answers a hundred of at once.

    Kept from Django: its request object (headers, query string and client address as the view and
    authentication read them), the API middleware's hooks in their order (``before`` on the way in,
    ``after`` on the way out: metrics, CORS, the body limit), and Django's answer to an unexpected
    exception (logged; ``handler500``'s ``M_UNKNOWN``). Left out: URL resolution (the path is known:
    its ResolverMatch is made once), the middleware chain's coroutine per layer, and the
    ``request_started`` / ``request_finished`` signals, whose receivers close the request thread's
    database connections: /sync makes its queries in pooled threads that give their connection back
    after each read (sync.views.run_db), so there is nothing to close. A sync answered at once runs
    in the request's own task; a long-poll (``since`` and a ``timeout``) also listens for its client
    going away, which cancels it. Measured: ~0.25 ms of the event loop's time per request less, which
    a fan-out to a hundred waiters spends twice per waiter (the answer, then the next long-poll)."""

    def load_middleware(self, is_async: bool = False) -> None:
        self.hooks = [import_string(path)(_not_called) for path in settings.API_MIDDLEWARE]
        assert all(isinstance(hook, DualModeMiddleware) for hook in self.hooks), "hooks: before/after"
        self.resolver_matches: dict[str, ResolverMatch] = {}

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await self.send_response(error_response, send)
            elif is_long_poll(request.GET):
                await self._answer_unless_gone(request, receive, send)
            else:
                await self.send_response(await self.respond(request), send)
        finally:
            body_file.close()

    async def _answer_unless_gone(self, request: Any, receive: Any, send: Any) -> None:
        async def answer() -> None:
            response = await self.respond(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client went away meanwhile
                await self.send_response(response, send)

        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)), asyncio.create_task(answer())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()  # the view (a long-poll) ends when its client goes away
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task

    async def respond(self, request: Any) -> Any:
        """The response, as Django's handler with the API middleware would make it."""
        request.resolver_match = self._resolver_match(request.path_info)
        response, entered = None, 0
        for hook in self.hooks:
            entered += 1
            response = hook.before(request)
            if response is not None:  # answered by the hook (a CORS preflight, a 413)
                break
        if response is None:
            try:
                response = await request.resolver_match.func(request)
            except Exception as exc:
                response = await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)
        for hook in reversed(self.hooks[:entered]):
            response = hook.after(request, response)
        return response

    def _resolver_match(self, path: str) -> ResolverMatch:
        match = self.resolver_matches.get(path)
        if match is None:
            match = self.resolver_matches[path] = resolve(path)
        return match


def _not_called(request: Any) -> Any:
    raise AssertionError("SyncHandler calls the middleware's hooks itself")


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
