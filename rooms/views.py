"""Client-Server API: room creation, membership, aliases, the room directory and member lists."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from matrixsrv.views import MatrixAPIView

from accounts.authentication import AccessTokenAuthentication
from events.pdu import EventTypes, Membership as M
from events.selectors import current_state_events, state_at
from events.formatting import format_client_event
from matrixsrv.errors import BadJson, Forbidden, InvalidParam
from matrixsrv.http import json_object, opt_bool, opt_dict, opt_str, opt_str_list, query_int, req_str
from matrixsrv.identifiers import RoomAlias as RoomAliasID
from rooms import actions
from rooms.models import Membership, Room
from rooms.selectors import (
    access_room_state_position,
    find_membership,
    get_room,
    list_room_aliases,
    resolve_alias,
)
from sync.tokens import StreamToken


class CreateRoomView(MatrixAPIView):
    """POST /_matrix/client/v3/createRoom"""

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        initial_state = body.get("initial_state")
        if initial_state is not None and not isinstance(initial_state, list):
            raise BadJson("'initial_state' must be a list")
        room_id, alias = actions.create_room(
            creator=request.user,
            room_version=opt_str(body, "room_version", max_length=32),
            visibility=opt_str(body, "visibility", max_length=16) or "private",
            preset=opt_str(body, "preset", max_length=32),
            room_alias_name=opt_str(body, "room_alias_name", max_length=255),
            name=opt_str(body, "name"),
            topic=opt_str(body, "topic"),
            invite=opt_str_list(body, "invite"),
            is_direct=opt_bool(body, "is_direct", False),
            initial_state=initial_state,
            creation_content=opt_dict(body, "creation_content"),
            power_level_content_override=opt_dict(body, "power_level_content_override"),
        )
        response: dict[str, Any] = {"room_id": room_id}
        if alias is not None:
            response["room_alias"] = alias
        return Response(response)


def _reason(body: dict[str, Any]) -> str | None:
    return opt_str(body, "reason", max_length=4096)


class JoinRoomByIdView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/join"""

    def post(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        joined = actions.join_room(user=request.user, room_id_or_alias=room_id, reason=_reason(body))
        return Response({"room_id": joined})


class JoinRoomView(MatrixAPIView):
    """POST /_matrix/client/v3/join/{roomIdOrAlias}"""

    def post(self, request: Request, room_id_or_alias: str) -> Response:
        body = json_object(request.data)
        joined = actions.join_room(user=request.user, room_id_or_alias=room_id_or_alias, reason=_reason(body))
        return Response({"room_id": joined})


class KnockRoomView(MatrixAPIView):
    """POST /_matrix/client/v3/knock/{roomIdOrAlias}"""

    def post(self, request: Request, room_id_or_alias: str) -> Response:
        body = json_object(request.data)
        room_id = actions.knock_room(user=request.user, room_id_or_alias=room_id_or_alias, reason=_reason(body))
        return Response({"room_id": room_id})


class InviteView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/invite"""

    def post(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        if "id_server" in body or "medium" in body:
            raise Forbidden("Third-party invites are not supported by this server")
        target = req_str(body, "user_id", max_length=255)
        actions.invite_user(sender=request.user, room_id=room_id, target=target, reason=_reason(body),
                            is_direct=opt_bool(body, "is_direct", False))
        return Response({})


class LeaveView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/leave"""

    def post(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        actions.leave_room(user=request.user, room_id=room_id, reason=_reason(body))
        return Response({})


class ForgetView(MatrixAPIView):
    """POST /_matrix/client/v3/rooms/{roomId}/forget"""

    def post(self, request: Request, room_id: str) -> Response:
        json_object(request.data)
        actions.forget_room(user=request.user, room_id=room_id)
        return Response({})


class _ModerateMemberView(MatrixAPIView):
    """A membership change one member makes to another (``user_id`` in the body): kick, ban, unban."""

    action: Any

    def post(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        type(self).action(sender=request.user, room_id=room_id, target=req_str(body, "user_id", max_length=255),
                          reason=_reason(body))
        return Response({})


class KickView(_ModerateMemberView):
    """POST /_matrix/client/v3/rooms/{roomId}/kick"""

    action = actions.kick_user


class BanView(_ModerateMemberView):
    """POST /_matrix/client/v3/rooms/{roomId}/ban"""

    action = actions.ban_user


class UnbanView(_ModerateMemberView):
    """POST /_matrix/client/v3/rooms/{roomId}/unban"""

    action = actions.unban_user


class JoinedRoomsView(MatrixAPIView):
    """GET /_matrix/client/v3/joined_rooms"""

    def get(self, request: Request) -> Response:
        rooms = Membership.objects.filter(user=request.user, membership=M.JOIN).order_by("room_id")
        return Response({"joined_rooms": list(rooms.values_list("room_id", flat=True))})


_MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


def _membership_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in _MEMBERSHIPS:
        raise InvalidParam(f"'{name}' must be one of {', '.join(_MEMBERSHIPS)}")
    return value


class MembersView(MatrixAPIView):
    """GET /_matrix/client/v3/rooms/{roomId}/members (``at``, ``membership``, ``not_membership``)

    Joined users get the current members (or those at ``at``); former members those when they left.
    """

    def get(self, request: Request, room_id: str) -> Response:
        wanted = _membership_param(request, "membership")
        unwanted = _membership_param(request, "not_membership")
        pos = access_room_state_position(room_id, request.user.mxid)
        at = request.query_params.get("at")
        if at:
            at_pos = StreamToken.parse(at).pos
            pos = at_pos if pos is None else min(pos, at_pos)
        if pos is None:
            events = current_state_events(room_id, types=[EventTypes.MEMBER])
        else:
            events = [e for e in state_at(room_id, pos) if e.type == EventTypes.MEMBER]

        def keep(membership: str | None) -> bool:
            # Spec: given both, "either the membership *is* the same as `membership` **or** *is
            # not* the same as `not_membership`".
            if wanted and unwanted:
                return membership == wanted or membership != unwanted
            if wanted:
                return membership == wanted
            if unwanted:
                return membership != unwanted
            return True

        return Response({"chunk": [format_client_event(e) for e in events if keep(e.membership)]})


class JoinedMembersView(MatrixAPIView):
    """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""

    def get(self, request: Request, room_id: str) -> Response:
        room = get_room(room_id)
        membership = find_membership(room_id, request.user.mxid)
        if (membership is None or membership.membership != M.JOIN) and room.history_visibility != "world_readable":
            raise Forbidden("You are not joined to this room")
        joined = Membership.objects.filter(room_id=room_id, membership=M.JOIN).order_by("mxid")
        return Response({
            "joined": {m.mxid: {"display_name": m.displayname, "avatar_url": m.avatar_url} for m in joined}
        })


class RoomAliasView(MatrixAPIView):
    """GET, PUT, DELETE /_matrix/client/v3/directory/room/{roomAlias}"""

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [AllowAny()] if self.request.method == "GET" else super().get_permissions()

    def get(self, request: Request, room_alias: str) -> Response:
        room_id = resolve_alias(room_alias)
        return Response({"room_id": room_id, "servers": [RoomAliasID.parse(room_alias).server_name]})

    def put(self, request: Request, room_alias: str) -> Response:
        body = json_object(request.data)
        room_id = req_str(body, "room_id", max_length=255)
        get_room(room_id)
        actions.create_alias(user=request.user, alias=room_alias, room_id=room_id)
        return Response({})

    def delete(self, request: Request, room_alias: str) -> Response:
        actions.delete_alias(user=request.user, alias=room_alias)
        return Response({})


class RoomAliasesView(MatrixAPIView):
    """GET /_matrix/client/v3/rooms/{roomId}/aliases"""

    def get(self, request: Request, room_id: str) -> Response:
        room = get_room(room_id)
        membership = find_membership(room_id, request.user.mxid)
        if (membership is None or membership.membership != M.JOIN) and room.history_visibility != "world_readable":
            raise Forbidden("You are not joined to this room")
        return Response({"aliases": list_room_aliases(room_id)})


class RoomDirectoryVisibilityView(MatrixAPIView):
    """GET, PUT /_matrix/client/v3/directory/list/room/{roomId}"""

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [AllowAny()] if self.request.method == "GET" else super().get_permissions()

    def get(self, request: Request, room_id: str) -> Response:
        room = get_room(room_id)
        return Response({"visibility": "public" if room.is_public else "private"})

    def put(self, request: Request, room_id: str) -> Response:
        body = json_object(request.data)
        visibility = opt_str(body, "visibility", max_length=16) or "public"
        get_room(room_id)
        actions.set_room_directory_visibility(user=request.user, room_id=room_id, visibility=visibility)
        return Response({})


def _public_room_entry(room: Room) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "room_id": room.room_id,
        "num_joined_members": room.joined_count,
        "world_readable": room.history_visibility == "world_readable",
        "guest_can_join": room.guest_access == "can_join",
        "join_rule": room.join_rule,
    }
    for key, value in (("name", room.name), ("topic", room.topic), ("canonical_alias", room.canonical_alias),
                       ("avatar_url", room.avatar_url), ("room_type", room.room_type)):
        if value:
            entry[key] = value
    return entry


def _public_rooms(*, limit: int | None, since: str | None, search: str | None,
                  room_types: list[str | None] | None = None) -> dict[str, Any]:
    rooms = Room.objects.filter(is_public=True, blocked=False)
    if room_types is not None:
        # Spec: "To include rooms without a room type, specify null within this list."
        wanted = Q(room_type__in=[t for t in room_types if t is not None])
        if None in room_types:
            wanted |= Q(room_type__isnull=True)
        rooms = rooms.filter(wanted)
    if search:
        rooms = rooms.filter(
            Q(name__icontains=search) | Q(topic__icontains=search) | Q(canonical_alias__icontains=search)
            | Q(room_id=search)
        )
    total = rooms.count()
    offset = 0
    if since:
        if not since.startswith("o") or not since[1:].isdigit():
            raise InvalidParam("Invalid 'since' token")
        offset = int(since[1:])
    ordered = rooms.order_by("-joined_count", "room_id")
    page = list(ordered[offset: offset + limit] if limit else ordered[offset:])
    response: dict[str, Any] = {"chunk": [_public_room_entry(r) for r in page], "total_room_count_estimate": total}
    if limit and offset + len(page) < total:
        response["next_batch"] = f"o{offset + len(page)}"
    if offset > 0:
        response["prev_batch"] = f"o{max(0, offset - (limit or offset))}"
    return response


class PublicRoomsView(MatrixAPIView):
    """GET, POST /_matrix/client/v3/publicRooms"""

    authentication_classes = [AccessTokenAuthentication]

    def get_permissions(self):  # type: ignore[no-untyped-def]
        # The spec lets servers serve the GET anonymously; POST (with a filter) needs a token.
        return [AllowAny()] if self.request.method == "GET" else super().get_permissions()

    def get(self, request: Request) -> Response:
        limit = query_int(request.query_params, "limit", None, minimum=0)
        return Response(_public_rooms(limit=limit, since=request.query_params.get("since"), search=None))

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise BadJson("'limit' must be a non-negative integer")
        search_filter = opt_dict(body, "filter") or {}
        search = opt_str(search_filter, "generic_search_term", max_length=1024)
        room_types = search_filter.get("room_types")
        if room_types is not None and (
            not isinstance(room_types, list) or not all(t is None or isinstance(t, str) for t in room_types)
        ):
            raise BadJson("'filter.room_types' must be a list of strings and nulls")
        return Response(_public_rooms(limit=limit, since=opt_str(body, "since", max_length=64), search=search,
                                      room_types=room_types))


