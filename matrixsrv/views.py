"""Server-level client routes (versions, .well-known discovery, the catch-all for unknown paths) and
the two building blocks every client view uses so wrong methods get a Matrix error:

* ``MatrixAPIView``: the DRF base class. It answers a method the view does not implement with
  405 ``M_UNRECOGNIZED`` *before* authentication, as the spec's "endpoint implemented, wrong method"
  rule asks (plain ``APIView`` authenticates first and would answer 401 to an anonymous DELETE).
* ``matrix_methods(...)``: the same for plain Django function views, which also makes them
  CSRF-exempt (API clients never send a CSRF token; without it a POST would get Django's HTML 403).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.views import APIView

from matrixsrv.errors import Unrecognized, UnsupportedMethod
from matrixsrv.exception_handler import matrix_error_response

# The spec versions whose endpoints this server serves. r0.x is answered on the /r0/ prefix.
SUPPORTED_VERSIONS = ["r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1"]


class MatrixAPIView(APIView):
    """Base class of the client API's DRF views: an unimplemented method is 405 before any auth."""

    def initial(self, request: Request, *args: object, **kwargs: object) -> None:
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            raise MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)


def matrix_methods(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Allow only ``methods`` (HEAD comes with GET); anything else is 405 ``M_UNRECOGNIZED``. CSRF-exempt."""
    allowed = {m.upper() for m in methods} | ({"HEAD"} if "GET" in {m.upper() for m in methods} else set())

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in allowed:
                return matrix_error_response(UnsupportedMethod(f"Method {request.method} not allowed"))
            return view(request, *args, **kwargs)

        return csrf_exempt(wrapper)

    return decorate


@matrix_methods("GET")
def versions(request: HttpRequest) -> JsonResponse:
    """GET /_matrix/client/versions"""
    return JsonResponse({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})


@matrix_methods("GET")
def well_known_client(request: HttpRequest) -> JsonResponse:
    """GET /.well-known/matrix/client"""
    return JsonResponse({"m.homeserver": {"base_url": settings.MATRIX["PUBLIC_BASEURL"]}})


@csrf_exempt
def unrecognized(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other path under /_matrix: 404 M_UNRECOGNIZED, never an HTML page or a redirect."""
    return matrix_error_response(Unrecognized(f"Unrecognized request: {request.method} {request.path}"))


class CapabilitiesView(MatrixAPIView):
    """GET /_matrix/client/v3/capabilities

    Tells the truth: only what this server lets the user do now.
    """

    def get(self, request):  # type: ignore[no-untyped-def]
        from rest_framework.response import Response

        from events.room_versions import DEFAULT_ROOM_VERSION, ROOM_VERSIONS

        return Response({
            "capabilities": {
                "m.change_password": {"enabled": True},
                "m.room_versions": {
                    "default": DEFAULT_ROOM_VERSION,
                    "available": {identifier: "stable" for identifier in ROOM_VERSIONS},
                },
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": False},
            }
        })
