"""Server-level client routes (versions, .well-known discovery, capabilities, the TURN server, the
third-party network lookups, the catch-all for unknown paths) and the two building blocks every
client view uses so wrong methods get a Matrix error:

* ``MatrixAPIView``: the DRF base class. It answers a method the view does not implement with
  405 ``M_UNRECOGNIZED`` *before* authentication, as the spec's "endpoint implemented, wrong method"
  rule asks (plain ``APIView`` authenticates first and would answer 401 to an anonymous DELETE).
* ``matrix_methods(...)``: the same for plain Django function views, which also makes them
  CSRF-exempt (API clients never send a CSRF token; without it a POST would get Django's HTML 403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events.room_versions import DEFAULT_ROOM_VERSION, ROOM_VERSIONS
from matrixsrv.config import TurnConfig
from matrixsrv.errors import MissingParam, NotFound, Unrecognized, UnsupportedMethod
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

    Tells the truth: only what this server lets the user do now (each ``true`` is backed by a route
    that works, checked in tests/api/test_capabilities.py):

    * ``m.change_password``: POST /account/password exists.
    * ``m.room_versions``: the versions events/room_versions.py implements, all stable; the default is
      the one /createRoom uses.
    * ``m.set_displayname``, ``m.set_avatar_url``: PUT /profile/{userId}/displayname, /avatar_url.
    * ``m.3pid_changes``: false. There are no 3PIDs here (no e-mail or phone binding): GET
      /account/3pid lists none, and no route adds or removes one.
    * ``m.get_login_token``: false (POST /v1/login/get_token is not implemented).
    * ``m.profile_fields`` (v1.16) and ``m.forget_forced_upon_leave`` (v1.18) are left out: /versions
      advertises no spec version that has them.
    """

    def get(self, request: Request) -> Response:
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


# -- VoIP (spec voip.yaml) ---------------------------------------------------------------------------


def turn_credentials(turn: TurnConfig, *, user_id: str, now_s: float) -> tuple[str, str]:
    """(username, password) for ``user_id``. With a shared secret: the TURN REST API scheme that coturn
    checks with ``use-auth-secret`` (and Synapse hands out): username ``"<expiry unix seconds>:<user
    ID>"``, password ``base64(HMAC-SHA1(secret, username))`` with standard padded base64, so the TURN
    server can verify it and its expiry without any call back to us. Else the static pair."""
    if not turn.shared_secret:
        return turn.username, turn.password
    username = f"{int(now_s) + turn.lifetime_s}:{user_id}"
    digest = hmac.new(turn.shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class TurnServerView(MatrixAPIView):
    """GET /_matrix/client/v3/voip/turnServer

    The TURN server from the configuration (MATRIX_TURN_*, matrixsrv/config.py), with credentials for
    this user valid for ``ttl`` seconds. Without a TURN server: ``{}``. The spec lists no answer for
    that case; Synapse answers ``{}``, and matrix-js-sdk (Element) reads an answer without ``uris`` as
    "no TURN server" with no error, whereas an error status other than 403 is retried.
    """

    def get(self, request: Request) -> Response:
        turn: TurnConfig | None = settings.MATRIX.get("TURN")
        if turn is None:
            return Response({})
        username, password = turn_credentials(turn, user_id=request.user.mxid, now_s=time.time())
        return Response(
            {"username": username, "password": password, "uris": list(turn.uris), "ttl": turn.lifetime_s}
        )


# -- Third-party networks (spec third_party_lookup.yaml) ---------------------------------------------
# Protocols come from application services (bridges); this server has none, so it knows no protocol.
# The answers say exactly that: no protocols, a 404 for any named protocol, and no third-party
# location or user behind any Matrix alias or user ID.

THIRD_PARTY_PROTOCOLS: dict[str, dict[str, object]] = {}


def _unknown_protocol(protocol: str) -> NotFound:
    return NotFound(f"Unknown protocol {protocol!r}: no bridges are configured on this server")


class ThirdPartyProtocolsView(MatrixAPIView):
    """GET /_matrix/client/v3/thirdparty/protocols: ``{}``, no bridge is configured."""

    def get(self, request: Request) -> Response:
        return Response(THIRD_PARTY_PROTOCOLS)


class ThirdPartyProtocolView(MatrixAPIView):
    """GET /_matrix/client/v3/thirdparty/protocol/{protocol}: 404 ``M_NOT_FOUND`` (no protocol known)."""

    def get(self, request: Request, protocol: str) -> Response:
        if protocol not in THIRD_PARTY_PROTOCOLS:
            raise _unknown_protocol(protocol)
        return Response(THIRD_PARTY_PROTOCOLS[protocol])


class ThirdPartyLookupView(MatrixAPIView):
    """GET /_matrix/client/v3/thirdparty/{location,user}/{protocol}: a lookup through a protocol's
    bridge. No protocol is known: 404 ``M_NOT_FOUND`` (the spec's answer when nothing is found)."""

    def get(self, request: Request, protocol: str) -> Response:
        raise _unknown_protocol(protocol)


class ThirdPartyReverseLookupView(MatrixAPIView):
    """GET /_matrix/client/v3/thirdparty/location?alias=... and /thirdparty/user?userid=...: the
    third-party locations of a Matrix alias, the third-party users of a Matrix user. The parameter is
    required (400 ``M_MISSING_PARAM``); with no bridge nothing maps to a third-party network: ``[]``
    (what Synapse answers without application services)."""

    param = ""  # set per route: "alias" or "userid"

    def get(self, request: Request) -> Response:
        if not request.query_params.get(self.param):
            raise MissingParam(f"Missing '{self.param}'")
        return Response([])
