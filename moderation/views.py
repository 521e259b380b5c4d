"""Client-Server API: reporting content (spec "Reporting content", report_content.yaml)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from accounts.throttles import MatrixRateThrottle
from matrixsrv.errors import MissingParam
from matrixsrv.http import json_object, opt_str
from matrixsrv.views import MatrixAPIView
from moderation import actions

MAX_REASON = 4096


class ReportThrottle(MatrixRateThrottle):
    """Reports per user (``MATRIX_RATE_REPORT``): a report costs a moderator's time."""

    scope = rate_setting = "report"

    def get_cache_key(self, request, view):  # type: ignore[no-untyped-def]
        return f"throttle_{self.scope}_{request.user.pk}"


def _reason(body: dict[str, Any], *, required: bool) -> str:
    reason = opt_str(body, "reason", max_length=MAX_REASON)
    if reason is None and required:
        raise MissingParam("'reason' is required (it may be blank)")
    return reason or ""


class ReportEventView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId} (also r0)

    ``reason`` is optional. ``score`` was removed in v1.18; older clients still send it, so a value
    is kept and checked (an integer from -100 to 0, else 400 ``M_INVALID_PARAM``)."""

    throttle_classes = [ReportThrottle]

    def post(self, request: Request, room_id: str, event_id: str) -> Response:
        body = json_object(request.data)
        actions.file_report(
            reporter=request.user, kind="event", room_id=room_id, event_id=event_id,
            reason=_reason(body, required=False), score=body.get("score"),
        )
        return Response({})


class ReportRoomView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/report (v1.13; the caller need not be joined)"""

    throttle_classes = [ReportThrottle]

    def post(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        actions.file_report(reporter=request.user, kind="room", room_id=room_id,
                            reason=_reason(body, required=True))
        return Response({})


class ReportUserView(MatrixAPIView):
    """POST /_matrix/client/v3/users/{userId}/report (v1.14)"""

    throttle_classes = [ReportThrottle]

    def post(self, request: Request, user_id: str) -> Response:
        body = json_object(request.data)
        actions.file_report(reporter=request.user, kind="user", target_user_id=user_id,
                            reason=_reason(body, required=True))
        return Response({})
