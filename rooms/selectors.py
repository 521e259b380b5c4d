"""Reads for rooms, aliases and membership."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.db import connection

from events.models import Event
from matrixsrv.errors import Forbidden, InvalidParam, NotFound
from matrixsrv.identifiers import RoomAlias as RoomAliasID
from matrixsrv.rawsql import columns, fetch_one, run_batch, instance
from rooms.models import Membership, Room, RoomAlias


@dataclass(frozen=True)
class LockedRoom:
    """A Room row locked FOR NO KEY UPDATE in the current transaction: writers of one room queue here.

    Only lock_room() makes one; the events service requires it, so nothing can append an event to a
    room without holding its lock (lock order: room row, then the stream head).
    """

    room: Room


@cache
def _lock_room_sql() -> str:
    _, cols = columns(Room)
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
    return f"SELECT {cols} FROM {Room._meta.db_table} WHERE room_id = %s{lock}"


def lock_room(room_id: str) -> LockedRoom:
    """SELECT … FOR NO KEY UPDATE (on SQLite the write transaction already holds the database lock)."""
    row = fetch_one(_lock_room_sql(), [room_id])
    if row is None:
        raise NotFound("Unknown room")
    return LockedRoom(instance(Room, row)[0])


def lock_room_and_read(
    room_id: str, *reads: tuple[str, Sequence[Any]]
) -> tuple[LockedRoom, list[list[tuple[Any, ...]]]]:
    """``lock_room``, then ``reads`` under the lock, in the same round trip on PostgreSQL
    (``rawsql.run_batch``): the rows of each read, in order."""
    rows, *results = run_batch([(_lock_room_sql(), [room_id]), *reads])
    if not rows:
        raise NotFound("Unknown room")
    return LockedRoom(instance(Room, rows[0])[0]), results


def get_room(room_id: str) -> Room:
    room = Room.objects.filter(pk=room_id).first()
    if room is None:
        raise NotFound("Unknown room")
    return room


def find_membership(room_id: str, mxid: str) -> Membership | None:
    return Membership.objects.filter(room_id=room_id, mxid=mxid).first()


def access_room_state_position(room_id: str, mxid: str) -> int | None:
    """Which of the room's state ``mxid`` may read (GET /state, /state/{type}/{key}, /members).

    None: the current state (joined, or the room is world_readable). A stream position: the state
    when the user left or was kicked or banned, for a *former member* (spec rooms.yaml: "If you
    have left the room then this will be the members of the room when you left"). Anyone else,
    including invitees, knockers and users who only ever rejected an invite, gets 403 ("You aren't
    a member of the room and weren't previously a member of the room"); an unknown room is 404.
    """
    room = get_room(room_id)
    membership = find_membership(room_id, mxid)
    if membership is not None and membership.membership == "join":
        return None
    if room.history_visibility == "world_readable":
        return None
    if membership is not None and membership.membership in ("leave", "ban"):
        was_joined = Event.objects.filter(
            room_id=room_id, type="m.room.member", state_key=mxid, membership="join",
            stream_pos__lt=membership.stream_pos,
        ).exists()
        if was_joined:
            return membership.stream_pos
    raise Forbidden("You are not joined to this room")


def membership_of(room_id: str, mxid: str) -> str | None:
    return Membership.objects.filter(room_id=room_id, mxid=mxid).values_list("membership", flat=True).first()


def require_joined(room_id: str, mxid: str) -> None:
    """403 unless ``mxid`` is joined to the room (and 404 hidden as 403: a non-member can't tell)."""
    if membership_of(room_id, mxid) != "join":
        raise Forbidden("You are not joined to this room")


def joined_room_ids(user_pk: int) -> list[str]:
    return list(Membership.objects.filter(user_id=user_pk, membership="join").values_list("room_id", flat=True))


def resolve_alias(alias: str) -> str:
    """The room ID an alias of this server points at; 404 M_NOT_FOUND when there is none."""
    parsed = RoomAliasID.parse(alias)
    if parsed.server_name != settings.MATRIX["SERVER_NAME"]:
        raise NotFound("Room alias not found (aliases of other servers cannot be resolved)")
    room_id = RoomAlias.objects.filter(alias=alias).values_list("room_id", flat=True).first()
    if room_id is None:
        raise NotFound("Room alias not found")
    return room_id


def resolve_room_id_or_alias(room_id_or_alias: str) -> str:
    if room_id_or_alias.startswith("#"):
        return resolve_alias(room_id_or_alias)
    if room_id_or_alias.startswith("!"):
        return room_id_or_alias
    raise InvalidParam("Expected a room ID or a room alias")


def list_room_aliases(room_id: str) -> list[str]:
    return list(RoomAlias.objects.filter(room_id=room_id).order_by("alias").values_list("alias", flat=True))
