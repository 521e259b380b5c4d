"""Middleware for the client API: CORS on every /_matrix response, and the request body limit.

CORS: the spec asks for ``Access-Control-Allow-Origin: *`` and the allowed methods/headers on *every*
response under /_matrix, and a 200 to every OPTIONS request. django-cors-headers only answers
requests that carry an ``Origin`` header and only short-circuits preflights that carry
``Access-Control-Request-Method``, so it cannot give that guarantee; this is the small fixed-header
middleware the spec describes instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from matrixsrv.errors import InvalidParam, TooLarge
from matrixsrv.exception_handler import matrix_error_response

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
    "Access-Control-Expose-Headers": "Retry-After",
}

_API_PREFIXES = ("/_matrix/", "/.well-known/matrix/")


def is_api_path(path: str) -> bool:
    return path.startswith(_API_PREFIXES) or path == "/_matrix"


class DualModeMiddleware:
    """Both sync- and async-capable, so the async /sync view never hops threads for middleware.
    Subclasses override ``before`` (a response ends the request there) and ``after``."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        if self.async_mode:
            return self.__acall__(request)
        early = self.before(request)
        response = early if early is not None else self.get_response(request)
        return self.after(request, response)  # type: ignore[arg-type]

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        early = self.before(request)
        response = early if early is not None else await self.get_response(request)  # type: ignore[misc]
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response


class MatrixCorsMiddleware(DualModeMiddleware):
    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        if request.method == "OPTIONS" and is_api_path(request.path):
            return HttpResponse(b"{}", content_type="application/json")
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if is_api_path(request.path):
            for name, value in CORS_HEADERS.items():
                response[name] = value
        return response


class BodySizeLimitMiddleware(DualModeMiddleware):
    """413 M_TOO_LARGE before the body is parsed, from the declared Content-Length.

    A body sent without Content-Length is bounded again by the JSON parser when it is read.
    """

    def before(self, request: HttpRequest) -> HttpResponseBase | None:
        if not request.path.startswith("/_matrix/"):
            return None
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            return matrix_error_response(InvalidParam("Invalid Content-Length"))
        if length > settings.MATRIX_MAX_BODY_BYTES:
            return matrix_error_response(TooLarge("Request body too large"))
        return None
