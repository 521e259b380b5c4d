"""ASGI entry point for daphne: ``daphne matrixsrv.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matrixsrv.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402  (after Django is set up)

if settings.MATRIX["SERVE_STATIC"]:
    # Embedded mode: daphne serves the admin's CSS/JS itself (behind nginx, nginx serves them).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(django_application)
else:
    application = django_application
