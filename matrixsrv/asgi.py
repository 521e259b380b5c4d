"""ASGI entry point for daphne: ``daphne matrixsrv.asgi:application``.

Two Django handlers share one URLconf: the client API (/_matrix/, /.well-known/matrix/) runs only
the middleware it needs (CORS and the body limit, both async), so a request makes no thread hop
before its view; the admin and the login pages get Django's full stack (sessions, CSRF, auth,
messages). Measured: the full stack cost ~1.5 ms of CPU per API request in thread hops alone.
"""

import asyncio
import os

import django
from django.core.handlers.asgi import ASGIHandler

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


site_application = ASGIHandler()
api_application = ClientAPIHandler()

if settings.MATRIX["SERVE_STATIC"]:
    # Embedded mode: daphne serves the admin's CSS/JS itself (behind nginx, nginx serves them).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    site_application = ASGIStaticFilesHandler(site_application)


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    remember_event_loop(asyncio.get_running_loop())  # wake-ups are published on it (events/notify.py)
    return await _gated(scope, receive, send)


async def _route(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "http" and (scope["path"].startswith(API_PATH_PREFIXES) or scope["path"] in OPS_PATHS):
        return await api_application(scope, receive, send)
    return await site_application(scope, receive, send)


# A worker whose schema is behind its code answers 503 (but /health) until migrations are applied.
_gated = SchemaGate(_route)
