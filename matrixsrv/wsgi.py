"""WSGI entry point (management tools only; the server runs under ASGI/daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matrixsrv.settings")
application = get_wsgi_application()
