"""Access-token authentication, shared by DRF views and the async /sync view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest
from rest_framework.authentication import BaseAuthentication

from accounts.actions import record_device_seen
from accounts.models import AccessToken, User
from accounts.selectors import access_token_read, find_access_token
from matrixsrv.errors import MatrixError, MissingToken, UnknownToken
from matrixsrv.http import client_ip
from matrixsrv.rawsql import Read, run_reads


def token_from_request(request: HttpRequest) -> str | None:
    """``Authorization: Bearer <token>``, else the deprecated ``?access_token=`` query parameter."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise MissingToken("Invalid Authorization header")
    return request.GET.get("access_token") or None


def authenticate_request(request: HttpRequest, *, required: bool = True) -> AccessToken | None:
    """The caller's token row (with ``.user`` and ``.device`` loaded), or raise Missing/UnknownToken."""
    token = token_from_request(request)
    if token is None:
        if required:
            raise MissingToken()
        return None
    return _accepted(find_access_token(token), request)


def authenticate_with_reads(
    request: HttpRequest, reads: Sequence[Read[Any]]
) -> tuple[AccessToken, list[Any]]:
    """``authenticate_request`` and ``reads``, in one round trip (``rawsql.run_reads``); the reads are
    made whatever the token turns out to be, and their results returned only with a good one."""
    (token,), found = authenticate_all_with_reads([request], reads)
    if isinstance(token, MatrixError):
        raise token
    return token, found


def authenticate_all_with_reads(
    requests: Sequence[HttpRequest], reads: Sequence[Read[Any]]
) -> tuple[list[AccessToken | MatrixError], list[Any]]:
    """``authenticate_with_reads`` for several requests at once, in one round trip: each request's
    token row or the error it gets (a missing or unknown token), and the reads' results (None each
    when no request carried a token: nothing is read for those)."""
    tokens: list[str | MatrixError] = []
    for request in requests:
        try:
            token = token_from_request(request)
            tokens.append(token if token is not None else MissingToken())
        except MatrixError as err:
            tokens.append(err)
    asked = [token for token in tokens if isinstance(token, str)]
    if not asked:
        return list(tokens), [None] * len(reads)  # type: ignore[arg-type]
    found = iter(run_reads([*(access_token_read(token) for token in asked), *reads]))
    accepted: list[AccessToken | MatrixError] = []
    for request, token in zip(requests, tokens):
        if isinstance(token, MatrixError):
            accepted.append(token)
            continue
        try:
            accepted.append(_accepted(next(found), request))
        except MatrixError as err:
            accepted.append(err)
    return accepted, list(found)


def _accepted(row: AccessToken | None, request: HttpRequest) -> AccessToken:
    if row is None:
        raise UnknownToken()
    record_device_seen(row.device, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT"))
    return row


class AccessTokenAuthentication(BaseAuthentication):
    """DRF adapter: ``request.user`` is the User, ``request.auth`` the AccessToken row."""

    def authenticate(self, request):  # type: ignore[no-untyped-def]
        row = authenticate_request(request._request, required=False)
        if row is None:
            return None
        user: User = row.user
        return (user, row)

    def authenticate_header(self, request):  # type: ignore[no-untyped-def]
        return 'Bearer realm="matrix"'
