"""Client-Server API: typing notifications, receipts and read markers (spec modules "Typing
Notifications", "Receipts", "Fully read markers"). Writes go through ``ephemeral.actions``."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from ephemeral.actions import FULLY_READ, RECEIPT_TYPES, ReceiptUpdate, set_receipts, set_typing
from matrixsrv.errors import BadJson, Forbidden, InvalidParam, MissingParam
from matrixsrv.http import json_object
from matrixsrv.identifiers import is_room_id
from matrixsrv.views import MatrixAPIView


def _room(room_id: str) -> str:
    if not is_room_id(room_id):
        raise InvalidParam(f"Invalid room ID: {room_id!r}")
    return room_id


def _event_id(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadJson(f"'{what}' must be an event ID")
    if not value.startswith("$") or len(value) > 255:
        raise InvalidParam(f"Invalid event ID for '{what}'")
    return value


class TypingView(MatrixAPIView):
    """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""

    def put(self, request: Request, room_id: str, user_id: str) -> Response:
        if user_id != request.user.mxid:
            raise Forbidden("Cannot set the typing state of another user")
        body = json_object(request.data)
        if "typing" not in body:
            raise MissingParam("Missing 'typing'")
        typing = body["typing"]
        if not isinstance(typing, bool):
            raise BadJson("'typing' must be a boolean")
        timeout = body.get("timeout")
        if typing and timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)):
            raise BadJson("'timeout' must be an integer number of milliseconds")
        set_typing(user=request.user, room_id=_room(room_id), typing=typing, timeout_ms=timeout)
        return Response({})


class ReceiptView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}"""

    def post(self, request: Request, room_id: str, receipt_type: str, event_id: str) -> Response:
        if receipt_type not in RECEIPT_TYPES and receipt_type != FULLY_READ:
            raise InvalidParam(f"Unknown receipt type {receipt_type!r}")
        body = json_object(request.data) if request.data else {}
        event_id = _event_id(event_id, "eventId")
        thread_id = body.get("thread_id")
        if thread_id is not None:
            if not isinstance(thread_id, str) or not thread_id:
                raise InvalidParam("thread_id field must be a non-empty string")
            if receipt_type == FULLY_READ:
                raise InvalidParam("thread_id is not allowed for m.fully_read")
            if thread_id != "main" and not thread_id.startswith("$"):
                raise InvalidParam("thread_id must be 'main' or a thread root's event ID")
        room_id = _room(room_id)
        if receipt_type == FULLY_READ:
            set_receipts(user=request.user, room_id=room_id, fully_read=event_id)
        else:
            update = ReceiptUpdate(receipt_type, event_id, thread_id or "")
            set_receipts(user=request.user, room_id=room_id, receipts=[update])
        return Response({})


class ReadMarkersView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/read_markers"""

    def post(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        fully_read = body.get(FULLY_READ)
        receipts = [
            ReceiptUpdate(receipt_type, _event_id(body[receipt_type], receipt_type))
            for receipt_type in sorted(RECEIPT_TYPES)
            if body.get(receipt_type) is not None
        ]
        set_receipts(
            user=request.user,
            room_id=_room(room_id),
            receipts=receipts,
            fully_read=None if fully_read is None else _event_id(fully_read, FULLY_READ),
        )
        return Response({})
