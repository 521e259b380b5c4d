"""The one place where errors become Matrix JSON: DRF's EXCEPTION_HANDLER plus Django's 404/500 hooks.

DRF exceptions are mapped by class, not by status (DRF turns 401 into 403 when the auth class has
no ``authenticate_header``; mapping by class sidesteps that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from matrixsrv.errors import (
    BadJson,
    Forbidden,
    InternalError,
    LimitExceeded,
    MatrixError,
    MissingToken,
    NotFound,
    NotJson,
    Unrecognized,
    UnknownToken,
    UnsupportedMethod,
)

logger = logging.getLogger("matrixsrv.errors")


def _first_message(detail: Any) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            return f"{key}: {_first_message(value)}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def _retry_after_ms(exc: drf.Throttled) -> int:
    return int((exc.wait or 1) * 1000)


_DRF_TO_MATRIX: list[tuple[type[Exception] | tuple[type[Exception], ...], Callable[[Any], MatrixError]]] = [
    (drf.ParseError, lambda e: NotJson(str(e.detail))),
    (drf.ValidationError, lambda e: BadJson(_first_message(e.detail))),
    (drf.NotAuthenticated, lambda e: MissingToken()),
    (drf.AuthenticationFailed, lambda e: UnknownToken()),
    (drf.MethodNotAllowed, lambda e: UnsupportedMethod()),
    (drf.Throttled, lambda e: LimitExceeded(retry_after_ms=_retry_after_ms(e))),
    (drf.PermissionDenied, lambda e: Forbidden()),
    ((drf.NotFound, Http404), lambda e: NotFound()),
    (drf.UnsupportedMediaType, lambda e: NotJson()),
    (drf.NotAcceptable, lambda e: Unrecognized()),
]


def to_matrix_error(exc: Exception) -> MatrixError | None:
    if isinstance(exc, MatrixError):
        return exc
    return next((make(exc) for types, make in _DRF_TO_MATRIX if isinstance(exc, types)), None)


def _add_retry_after(response: Any, err: MatrixError) -> Any:
    if isinstance(err, LimitExceeded) and "retry_after_ms" in err.extra:
        response["Retry-After"] = str(max(1, int(err.extra["retry_after_ms"]) // 1000))  # type: ignore[call-overload]
    return response


def matrix_error_response(err: MatrixError) -> JsonResponse:
    """A plain Django response for code outside DRF (async views, middleware, error hooks)."""
    return _add_retry_after(JsonResponse(err.to_json(), status=err.status), err)


def matrix_exception_handler(exc: Exception, context: dict) -> Response | None:
    err = to_matrix_error(exc)
    if err is None:
        return None  # unexpected: Django's handler500 answers M_UNKNOWN (and logs the traceback)
    return _add_retry_after(Response(err.to_json(), status=err.status), err)


def _is_api_path(path: str) -> bool:
    return path.startswith(("/_matrix/", "/.well-known/"))


def handler404(request: HttpRequest, exception: Exception | None = None):  # type: ignore[no-untyped-def]
    if _is_api_path(request.path):
        return matrix_error_response(Unrecognized())
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)  # type: ignore[arg-type]


def handler500(request: HttpRequest):  # type: ignore[no-untyped-def]
    if _is_api_path(request.path):
        return matrix_error_response(InternalError())
    from django.views.defaults import server_error

    return server_error(request)
