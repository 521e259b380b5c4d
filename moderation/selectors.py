"""Reads for the moderation pages of the admin: a room's overview, timeline, state and members, a
user's overview, a report's context. Plain dicts, events in the client format (redacted events show
their pruned content and ``redacted: True``), so the templates need no ORM knowledge."""

from __future__ import annotations

from typing import Any

from django.db.models import Max

from accounts.models import Device, User
from events.formatting import format_client_event
from events.models import Event
from events.pdu import CREATE_KEY, POWER_LEVELS_KEY, EventTypes
from events.power_levels import PowerLevels, room_creators
from events.room_versions import get_room_version
from events.selectors import as_state_event, current_state_events, state_events_for_keys
from matrixsrv.errors import NotFound
from moderation.models import Report
from rooms.models import Membership, Room
from rooms.selectors import get_room, list_room_aliases

RECENT_USER_EVENTS = 20
REPORT_CONTEXT_EVENTS = 5


def _event(event: Event) -> dict[str, Any]:
    out = format_client_event(event)
    out["stream_pos"] = event.stream_pos
    out["redacted"] = event.redacted_because is not None
    return out


def room_overview(room_id: str) -> dict[str, Any]:
    room = get_room(room_id)
    stats = Event.objects.filter(room_id=room_id).aggregate(last=Max("origin_server_ts"))
    return {
        "room_id": room.room_id,
        "name": room.name,
        "topic": room.topic,
        "canonical_alias": room.canonical_alias,
        "aliases": list_room_aliases(room_id),
        "version": room.version,
        "creator": room.creator,
        "created_at": room.created_at,
        "join_rule": room.join_rule,
        "encryption": room.encryption,
        "joined_count": room.joined_count,
        "invited_count": room.invited_count,
        "event_count": Event.objects.filter(room_id=room_id).count(),
        "last_activity_ts": stats["last"],
        "public": room.is_public,
        "blocked": room.blocked,
        "blocked_reason": room.blocked_reason,
    }


def room_timeline(room_id: str, *, before_pos: int | None, limit: int = 50) -> list[dict[str, Any]]:
    """The room's events, newest first, older than stream position ``before_pos`` (None: the newest).
    The last item's ``stream_pos`` is the ``before_pos`` of the next (older) page."""
    get_room(room_id)
    events = Event.objects.filter(room_id=room_id)
    if before_pos is not None:
        events = events.filter(stream_pos__lt=before_pos)
    return [_event(e) for e in events.order_by("-stream_pos")[: max(1, min(limit, 500))]]


def room_current_state(room_id: str) -> list[dict[str, Any]]:
    get_room(room_id)
    return [_event(e) for e in current_state_events(room_id)]


def _power_levels(room: Room) -> PowerLevels:
    version = get_room_version(room.version)
    rows = state_events_for_keys(room.room_id, {POWER_LEVELS_KEY, CREATE_KEY})
    state = {key: as_state_event(event) for key, event in rows.items()}
    return PowerLevels.from_state(state, version, room_creators(state.get(CREATE_KEY), version))


def room_members(room_id: str) -> list[dict[str, Any]]:
    """Every membership row (joined first), with the member's power level (v12 creators: unlimited,
    shown as ``power_level`` None and ``creator`` True)."""
    room = get_room(room_id)
    levels = _power_levels(room)
    order = {"join": 0, "invite": 1, "knock": 2, "leave": 3, "ban": 4}
    rows = Membership.objects.filter(room_id=room_id).order_by("mxid")
    members = [
        {
            "user_id": m.mxid,
            "membership": m.membership,
            "displayname": m.displayname,
            "power_level": None if levels.is_creator(m.mxid) else levels.user_level(m.mxid),
            "creator": levels.is_creator(m.mxid),
            "local": m.user_id is not None,
        }
        for m in rows
    ]
    return sorted(members, key=lambda m: (order.get(m["membership"], 9), m["user_id"]))


def user_overview(user_id: str) -> dict[str, Any]:
    user = User.objects.filter(mxid=user_id).first()
    if user is None:
        raise NotFound(f"Unknown user {user_id}")
    rooms = [
        {"room_id": m.room_id, "name": m.room.name or m.room.canonical_alias, "membership": m.membership,
         "blocked": m.room.blocked}
        for m in Membership.objects.filter(user=user).select_related("room").order_by("-stream_pos")
    ]
    devices = [
        {"device_id": d.device_id, "display_name": d.display_name, "last_seen_ts": d.last_seen_ts,
         "last_seen_ip": d.last_seen_ip}
        for d in Device.objects.filter(user=user).order_by("device_id")
    ]
    recent = Event.objects.filter(sender=user.mxid).order_by("-stream_pos")[:RECENT_USER_EVENTS]
    return {
        "user_id": user.mxid,
        "displayname": user.displayname,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "created_at": user.created_at,
        "deactivated_at": user.deactivated_at,
        "rooms": rooms,
        "devices": devices,
        "recent_events": [_event(e) for e in recent],
    }


def report_context(report: Report) -> dict[str, Any]:
    """The reported event (client format; None for room and user reports or a vanished event) and
    up to five events of its room either side of it."""
    out: dict[str, Any] = {"event": None, "before": [], "after": [], "room": None}
    if report.room_id and Room.objects.filter(pk=report.room_id).exists():
        out["room"] = room_overview(report.room_id)
    if not report.event_id:
        return out
    event = Event.objects.filter(event_id=report.event_id, room_id=report.room_id).first()
    if event is None:
        return out
    around = Event.objects.filter(room_id=event.room_id).exclude(type=EventTypes.REDACTION)
    before = around.filter(stream_pos__lt=event.stream_pos).order_by("-stream_pos")[:REPORT_CONTEXT_EVENTS]
    after = around.filter(stream_pos__gt=event.stream_pos).order_by("stream_pos")[:REPORT_CONTEXT_EVENTS]
    out["event"] = _event(event)
    out["before"] = [_event(e) for e in reversed(list(before))]
    out["after"] = [_event(e) for e in after]
    return out
