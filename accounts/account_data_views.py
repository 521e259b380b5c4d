"""Client-Server API: account data and room tags (spec "Client Config" and "Room Tagging").

Only the owner reads or writes their account data (anyone else: 403 ``M_FORBIDDEN``). Room account
data needs a well-formed room ID (400 ``M_INVALID_PARAM``), not membership: the spec asks none, and
a client may keep data about a room it left. Writes go through ``accounts.account_data``.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from accounts.account_data_selectors import TAG, find_account_data
from accounts.models import User
from matrixsrv.errors import Forbidden, InvalidParam, NotFound
from matrixsrv.http import json_object
from matrixsrv.identifiers import is_room_id
from matrixsrv.views import MatrixAPIView
from sync.account_data import remove_tag, set_account_data, set_tag

MAX_TYPE_LENGTH = 255  # AccountData.type; also the bound on a tag name


def _own(request: Request, user_id: str) -> User:
    user: User = request.user
    if user_id != user.mxid:
        raise Forbidden("Cannot access account data of other users")
    return user


def _room(room_id: str) -> str:
    if not is_room_id(room_id):
        raise InvalidParam(f"Invalid room ID: {room_id!r}")
    return room_id


def _name(value: str, what: str) -> str:
    if not value or len(value) > MAX_TYPE_LENGTH:
        raise InvalidParam(f"Invalid {what}")
    return value


class AccountDataView(MatrixAPIView):
    """GET, PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""

    def get(self, request: Request, user_id: str, type: str) -> Response:
        content = find_account_data(_own(request, user_id), room_id=None, type=type)
        if content is None:
            raise NotFound("Account data not found")
        return Response(content)

    def put(self, request: Request, user_id: str, type: str) -> Response:
        user = _own(request, user_id)
        content = json_object(request.data)
        set_account_data(user=user, room_id=None, type=_name(type, "account data type"), content=content)
        return Response({})


class RoomAccountDataView(MatrixAPIView):
    """GET, PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""

    def get(self, request: Request, user_id: str, room_id: str, type: str) -> Response:
        user = _own(request, user_id)
        content = find_account_data(user, room_id=_room(room_id), type=type)
        if content is None:
            raise NotFound("Room account data not found")
        return Response(content)

    def put(self, request: Request, user_id: str, room_id: str, type: str) -> Response:
        user = _own(request, user_id)
        room_id = _room(room_id)
        content = json_object(request.data)
        set_account_data(user=user, room_id=room_id, type=_name(type, "account data type"), content=content)
        return Response({})


class RoomTagsView(MatrixAPIView):
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags"""

    def get(self, request: Request, user_id: str, room_id: str) -> Response:
        user = _own(request, user_id)
        content = find_account_data(user, room_id=_room(room_id), type=TAG)
        tags = content.get("tags") if isinstance(content, dict) else None
        return Response({"tags": tags if isinstance(tags, dict) else {}})


class RoomTagView(MatrixAPIView):
    """PUT, DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}"""

    def put(self, request: Request, user_id: str, room_id: str, tag: str) -> Response:
        user = _own(request, user_id)
        room_id = _room(room_id)
        content = json_object(request.data)
        set_tag(user=user, room_id=room_id, tag=_name(tag, "tag"), content=content)
        return Response({})

    def delete(self, request: Request, user_id: str, room_id: str, tag: str) -> Response:
        user = _own(request, user_id)
        remove_tag(user=user, room_id=_room(room_id), tag=tag)
        return Response({})
