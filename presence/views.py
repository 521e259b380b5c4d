"""Client-Server API: presence (spec module "Presence"). Writes go through ``presence.actions``."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from matrixsrv.errors import BadJson, Forbidden, InvalidParam, MissingParam
from matrixsrv.http import json_object
from matrixsrv.views import MatrixAPIView
from presence import actions, rules
from presence.selectors import get_presence


class PresenceStatusView(MatrixAPIView):
    """GET, PUT /_matrix/client/v3/presence/{userId}/status

    - PUT sets the caller's own presence only (403 M_FORBIDDEN for anyone else's). ``presence`` is
      required (400 M_MISSING_PARAM), a string (M_BAD_JSON), one of online/unavailable/offline
      (M_INVALID_PARAM); ``status_msg`` is a string or null, and leaving it out clears it (Synapse).
    - GET: 404 M_NOT_FOUND for a user this server does not have; 403 M_FORBIDDEN unless the caller is
      that user or shares a joined room with them (Synapse's rule; the spec lists the 403).
    """

    def get(self, request: Request, user_id: str) -> Response:
        return Response(get_presence(viewer=request.user, user_id=user_id, now_ms=actions.now_ms()))

    def put(self, request: Request, user_id: str) -> Response:
        if user_id != request.user.mxid:
            raise Forbidden("You cannot set the presence state of another user")
        body = json_object(request.data)
        if "presence" not in body or body["presence"] is None:
            raise MissingParam("Missing 'presence'")
        presence = body["presence"]
        if not isinstance(presence, str):
            raise BadJson("'presence' must be a string")
        if presence not in rules.STATES:
            raise InvalidParam("'presence' must be online, unavailable or offline")
        status_msg = body.get("status_msg")
        if status_msg is not None and not isinstance(status_msg, str):
            raise BadJson("'status_msg' must be a string")
        if status_msg is not None and len(status_msg) > rules.MAX_STATUS_MSG_LENGTH:
            raise InvalidParam("'status_msg' is too long")
        actions.set_presence(user=request.user, presence=presence, status_msg=status_msg)
        return Response({})
