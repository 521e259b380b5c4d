"""Building a /sync response from the database (DESIGN.md §4.5).

Everything a response contains lies at or below one stream position, ``head``, read first: the
response's ``next_batch`` is ``s<head>``, and the next sync continues exactly there, so no event is
skipped, repeated or reordered whatever happens concurrently (positions become visible in commit
order, events/stream.py).

The number of queries is constant in the number of rooms: one for the user's memberships (with
their rooms), one windowed query for every room's timeline, one for state, one for the user's
membership history (history visibility), one for summaries' heroes, one for invite/knock state.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from accounts.models import User
from events.formatting import format_client_event
from events.models import CurrentState, Event
from events.pdu import EventTypes
from events.pdu import Membership as M
from events.stream import current_stream_position
from events.timeline import RoomVisibility, event_filter_q, load_room_visibilities
from matrixsrv.errors import NotFound
from rooms.models import Membership, Room
from sync.filters import Filter, RoomEventFilter, apply_event_fields, parse_filter, parse_filter_json
from sync.models import Filter as StoredFilter

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 100
MAX_HEROES = 5
# Spec ("Stripped state"): what an invitee or knocker sees of the room before joining.
STRIPPED_STATE_TYPES = (
    EventTypes.CREATE,
    EventTypes.JOIN_RULES,
    EventTypes.NAME,
    EventTypes.AVATAR,
    EventTypes.CANONICAL_ALIAS,
    EventTypes.ENCRYPTION,
    EventTypes.TOPIC,
)


# -- filters ---------------------------------------------------------------------------------------


def load_filter(user: User, raw: str | None) -> Filter:
    """``filter`` of /sync: inline JSON (starts with "{") or the ID of a filter the user uploaded."""
    if not raw:
        return Filter()
    if raw.lstrip().startswith("{"):
        return parse_filter_json(raw)
    definition = find_filter_definition(user, raw)
    if definition is None:
        raise NotFound("Unknown filter")
    return parse_filter(definition)


def find_filter_definition(user: User, filter_id: str) -> dict[str, Any] | None:
    if not filter_id.isdigit() or len(filter_id) > 18:
        return None
    return StoredFilter.objects.filter(pk=int(filter_id), user=user).values_list("definition", flat=True).first()


# -- the response ----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    body: dict[str, Any]
    next_pos: int
    is_empty: bool


@dataclass
class _RoomPlan:
    """What one room contributes: which events to read for its timeline and whether it needs its
    full state (initial sync, newly joined, full_state) or the state delta since ``since``."""

    room: Room
    membership: Membership
    section: str  # "join" | "leave"
    lower: int | None  # timeline events strictly after this position (None: from the start)
    upper: int  # ... and at or before this one
    full_state: bool
    timeline: list[Event] = field(default_factory=list)
    limited: bool = False


def build_sync_response(
    *,
    user: User,
    device_pk: int | None,
    since: int | None,
    sync_filter: Filter,
    full_state: bool = False,
) -> SyncResult:
    head = current_stream_position()
    if since is not None and since > head:
        since = head  # a token from the future (e.g. a restored database) is clamped, as Synapse does
    now_ms = int(time.time() * 1000)
    room_filter = sync_filter.room
    timeline_filter = room_filter.timeline
    limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT, cap=MAX_TIMELINE_LIMIT)

    memberships = [
        m
        for m in Membership.objects.filter(user=user).select_related("room", "event")
        if room_filter.matches_room(m.room_id)
    ]
    plans: list[_RoomPlan] = []
    invites: list[Membership] = []
    knocks: list[Membership] = []
    for m in memberships:
        changed = since is None or m.stream_pos > since
        if m.membership == M.JOIN:
            prev = m.event.prev_content.get("membership") if isinstance(m.event.prev_content, dict) else None
            newly_joined = since is not None and m.stream_pos > since and prev != M.JOIN
            if since is None or full_state or newly_joined:
                plans.append(_RoomPlan(m.room, m, "join", None, head, True))
            elif m.room.last_stream_pos > since:
                plans.append(_RoomPlan(m.room, m, "join", since, head, False))
        elif m.membership == M.INVITE and changed:
            invites.append(m)
        elif m.membership == M.KNOCK and changed:
            knocks.append(m)
        elif m.membership in (M.LEAVE, M.BAN) and not m.forgotten:
            if since is None:
                if room_filter.include_leave or full_state:
                    plans.append(_RoomPlan(m.room, m, "leave", None, m.stream_pos, True))
            elif m.stream_pos > since:
                plans.append(_RoomPlan(m.room, m, "leave", since, m.stream_pos, False))

    _load_timelines(plans, user, timeline_filter, limit)
    state_by_room = _load_state(plans, user, room_filter.state, lazy=timeline_filter.lazy_load_members
                                or room_filter.state.lazy_load_members)
    heroes = _load_heroes([p for p in plans if p.section == "join" and p.full_state], user)

    def fmt(event: Event) -> dict[str, Any]:
        out = format_client_event(event, device_pk=device_pk, now_ms=now_ms, include_room_id=False)
        return apply_event_fields(out, sync_filter.event_fields) if sync_filter.event_fields else out

    rooms: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    for plan in plans:
        timeline_events = [fmt(e) for e in plan.timeline]
        state_events = [fmt(e) for e in state_by_room.get(plan.room.room_id, [])]
        if plan.section == "join" and not plan.full_state and not timeline_events and not state_events:
            continue  # activity the user may not see or the filter drops
        prev_batch = f"s{(plan.timeline[0].stream_pos - 1) if plan.timeline else plan.upper}"
        entry: dict[str, Any] = {
            "timeline": {"events": timeline_events, "limited": plan.limited, "prev_batch": prev_batch},
            "state": {"events": state_events},
            "account_data": {"events": []},
        }
        if plan.section == "join":
            entry["ephemeral"] = {"events": []}
            entry["unread_notifications"] = {}
            if plan.full_state or any(e.type == EventTypes.MEMBER for e in plan.timeline):
                entry["summary"] = _summary(plan.room, heroes.get(plan.room.room_id))
        rooms[plan.section][plan.room.room_id] = entry
    if invites or knocks:
        stripped = _stripped_state([m.room_id for m in invites + knocks])
        for m in invites:
            rooms["invite"][m.room_id] = {
                "invite_state": {"events": stripped.get(m.room_id, []) + [_strip(m.event)]}
            }
        for m in knocks:
            rooms["knock"][m.room_id] = {
                "knock_state": {"events": stripped.get(m.room_id, []) + [_strip(m.event)]}
            }

    body: dict[str, Any] = {
        "next_batch": f"s{head}",
        "rooms": rooms,
        "account_data": {"events": []},
        "presence": {"events": []},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {},
    }
    is_empty = not any(rooms.values())
    return SyncResult(body=body, next_pos=head, is_empty=is_empty)


# -- timelines -------------------------------------------------------------------------------------


def _load_timelines(plans: list[_RoomPlan], user: User, timeline_filter: RoomEventFilter, limit: int) -> None:
    """Every planned room's newest ``limit`` visible events in its window, in one windowed query.

    One more row than asked is read per room to know whether the timeline is ``limited``. Rows the
    user may not see (history visibility) are dropped afterwards; they count against the window, so
    a room with hidden history may show fewer events, with ``limited`` set and a ``prev_batch``
    that pages on through /messages.
    """
    if not plans or limit == 0:
        for plan in plans:
            plan.limited = limit == 0 and plan.room.last_stream_pos > (plan.lower or 0)
        return
    bounds: dict[tuple[int | None, int], list[str]] = defaultdict(list)
    for plan in plans:
        bounds[(plan.lower, plan.upper)].append(plan.room.room_id)
    where = reduce(
        or_,
        (
            Q(room_id__in=room_ids, stream_pos__lte=upper) & (Q(stream_pos__gt=lower) if lower is not None else Q())
            for (lower, upper), room_ids in bounds.items()
        ),
    )
    filter_q = event_filter_q(timeline_filter)
    if filter_q is None:
        return
    rows = (
        Event.objects.filter(where & filter_q)
        .annotate(rn=Window(RowNumber(), partition_by=[F("room_id")], order_by=F("stream_pos").desc()))
        .filter(rn__lte=limit + 1)
        .order_by("stream_pos")
    )
    by_room: dict[str, list[Event]] = defaultdict(list)
    for event in rows:
        by_room[event.room_id].append(event)
    visibility = load_room_visibilities(user.mxid, [p.room.room_id for p in plans])
    for plan in plans:
        events = by_room.get(plan.room.room_id, [])
        if len(events) > limit:
            plan.limited = True
            events = events[-limit:]
        seen: RoomVisibility = visibility[plan.room.room_id]
        plan.timeline = [
            e for e in events
            if seen.can_see(e) and timeline_filter.allows(
                event_type=e.type, sender=e.sender, room_id=e.room_id,
                content=e.content if isinstance(e.content, dict) else None,
            )
        ]


# -- state -----------------------------------------------------------------------------------------


def _load_state(plans: list[_RoomPlan], user: User, state_filter: RoomEventFilter, *, lazy: bool) -> dict[str, list[Event]]:
    """State the client lacks before each timeline: all current state for full-state rooms, the
    state changes between ``since`` and the timeline for limited incremental ones. With lazy-loaded
    members, only the member events of the timeline's senders (and the user's own)."""
    full = [p for p in plans if p.full_state]
    delta = [p for p in plans if not p.full_state and p.limited]
    result: dict[str, list[Event]] = defaultdict(list)
    senders: dict[str, set[str]] = {p.room.room_id: {e.sender for e in p.timeline} | {user.mxid} for p in plans}
    all_senders = set().union(*senders.values()) if senders else set()
    in_timeline = {e.pk for p in plans for e in p.timeline}
    filter_q = event_filter_q(state_filter)
    if filter_q is None:
        return result

    def wanted(event: Event) -> bool:
        if event.pk in in_timeline:
            return False
        if lazy and event.type == EventTypes.MEMBER and event.state_key not in senders[event.room_id]:
            return False
        return state_filter.allows(event_type=event.type, sender=event.sender, room_id=event.room_id,
                                   content=event.content if isinstance(event.content, dict) else None)

    member_q = Q(type=EventTypes.MEMBER, state_key__in=sorted(all_senders)) | ~Q(type=EventTypes.MEMBER)
    current_joined = [p.room.room_id for p in full if p.section == "join"]
    if current_joined:
        ids = CurrentState.objects.filter(room_id__in=current_joined).values("event_id")
        rows = Event.objects.filter(pk__in=ids).filter(filter_q)
        if lazy:
            rows = rows.filter(member_q)
        for event in rows.order_by("stream_pos"):
            if wanted(event):
                result[event.room_id].append(event)
    # Rooms left (include_leave) and limited incremental rooms: state events inside a window,
    # newest per (type, state_key), read in one query.
    windows = [(p.room.room_id, None if p.full_state else p.lower, p.upper if p.full_state else _first_pos(p))
               for p in full if p.section == "leave"] + [(p.room.room_id, p.lower, _first_pos(p)) for p in delta]
    if windows:
        where = reduce(or_, (
            Q(room_id=room_id, stream_pos__lte=upper) & (Q(stream_pos__gt=lower) if lower is not None else Q())
            for room_id, lower, upper in windows
        ))
        rows = Event.objects.filter(where, state_key__isnull=False).filter(filter_q)
        if lazy:
            rows = rows.filter(member_q)
        latest: dict[tuple[str, str, str], Event] = {}
        for event in rows.order_by("stream_pos"):
            latest[(event.room_id, event.type, event.state_key or "")] = event
        for event in sorted(latest.values(), key=lambda e: e.stream_pos):
            if wanted(event):
                result[event.room_id].append(event)
    return result


def _first_pos(plan: _RoomPlan) -> int:
    """State up to just before the timeline's first event (or the window's end without one)."""
    return plan.timeline[0].stream_pos - 1 if plan.timeline else plan.upper


# -- summaries, invites ------------------------------------------------------------------------------


def _load_heroes(plans: Iterable[_RoomPlan], user: User) -> dict[str, list[str]]:
    """Up to five other members per room (joined or invited first), for rooms without a name."""
    rooms = [p.room.room_id for p in plans if not p.room.name and not p.room.canonical_alias]
    if not rooms:
        return {}
    rows = (
        Membership.objects.filter(room_id__in=rooms, membership__in=[M.JOIN, M.INVITE])
        .exclude(mxid=user.mxid)
        .annotate(rn=Window(RowNumber(), partition_by=[F("room_id")], order_by=F("stream_pos").asc()))
        .filter(rn__lte=MAX_HEROES)
        .values_list("room_id", "mxid")
    )
    heroes: dict[str, list[str]] = defaultdict(list)
    for room_id, mxid in rows:
        heroes[room_id].append(mxid)
    return heroes


def _summary(room: Room, heroes: list[str] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "m.joined_member_count": room.joined_count,
        "m.invited_member_count": room.invited_count,
    }
    if heroes is not None:
        summary["m.heroes"] = heroes
    return summary


def _strip(event: Event) -> dict[str, Any]:
    return {"type": event.type, "state_key": event.state_key or "", "sender": event.sender, "content": event.content}


def _stripped_state(room_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    ids = CurrentState.objects.filter(room_id__in=room_ids, type__in=STRIPPED_STATE_TYPES).values("event_id")
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in Event.objects.filter(pk__in=ids).order_by("stream_pos"):
        out[event.room_id].append(_strip(event))
    return out
