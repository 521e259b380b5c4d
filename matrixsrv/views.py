"""Server-level client routes: versions, .well-known discovery, and the catch-all for unknown paths."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from matrixsrv.errors import Unrecognized
from matrixsrv.exception_handler import matrix_error_response

# The spec versions whose endpoints this server serves. r0.x is answered on the /r0/ prefix.
SUPPORTED_VERSIONS = ["r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1"]


def versions(request: HttpRequest) -> JsonResponse:
    """GET /_matrix/client/versions"""
    return JsonResponse({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})


def well_known_client(request: HttpRequest) -> JsonResponse:
    """GET /.well-known/matrix/client"""
    return JsonResponse({"m.homeserver": {"base_url": settings.MATRIX["PUBLIC_BASEURL"]}})


@csrf_exempt
def unrecognized(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other path under /_matrix: 404 M_UNRECOGNIZED, never an HTML page or a redirect."""
    return matrix_error_response(Unrecognized(f"Unrecognized request: {request.method} {request.path}"))
