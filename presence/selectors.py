"""Reads of presence: the /sync section (one query, called by sync.selectors) and GET /presence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import BigIntegerField, CharField, IntegerField, Min, Q, Value

from accounts.models import User
from matrixsrv.errors import Forbidden, NotFound
from presence import rules
from presence.models import Presence
from rooms.models import Membership
from sync.filters import EventFilter

JOIN = "join"
_ROW, _NEXT_DUE = 0, 1
_COLUMNS = ("kind", "user_id", "mxid", "requested", "status_msg", "last_active_ms", "online_until_ms",
            "due_ms", "stream_pos")


@dataclass
class SyncPresence:
    """One sync's presence section, and what the view needs to keep presence moving."""

    events: list[dict[str, Any]] = field(default_factory=list)
    # The syncing user's own record (None: no row yet): /sync's set_presence decides on it without
    # reading again (presence.actions.record_sync).
    own: rules.PresenceRecord | None = None
    # The earliest instant at which a visible user's presence changes by itself (idle, offline,
    # currently_active ending): a waiting /sync wakes up then.
    next_due_ms: int | None = None
    # Users (pks) whose presence changed by itself and is not announced yet
    # (presence.actions.announce_due_presence).
    overdue: frozenset[int] = frozenset()


def load_sync_presence(
    *,
    user_pk: int,
    joined_room_ids: list[str],
    new_room_ids: list[str],
    since: int | None,
    head: int,
    now_ms: int,
    presence_filter: EventFilter,
) -> SyncPresence:
    """``m.presence`` events for the sync's top-level ``presence`` section: the user's own presence and
    that of everyone sharing a joined room with them, when it changed in ``(since, head]`` (initial
    sync: every such user with a presence row), or when they came to share a room after ``since``
    (``new_room_ids``: rooms the user joined after ``since``; or members who joined one of the user's
    rooms after it), or when its change is due but not announced yet. The content is derived at
    ``now_ms``, so ``last_active_ago`` is current (the spec: "must be up to date whenever the server
    gives a presence event").

    One query (UNION ALL): the rows, and the earliest future ``due_ms`` among the room-mates.
    """
    result = SyncPresence()
    window = Q(stream_pos__lte=head) if since is None else Q(stream_pos__gt=since, stream_pos__lte=head)
    wanted = window | Q(due_ms__lte=now_ms)
    mates = Membership.objects.filter(room_id__in=sorted(joined_room_ids), membership=JOIN)
    if since is not None:
        newcomers = Q(stream_pos__gt=since)
        if new_room_ids:
            newcomers |= Q(room_id__in=sorted(new_room_ids))
        wanted |= Q(user_id__in=mates.filter(newcomers).values("user_id"))
    rows = Presence.objects.filter(Q(user_id=user_pk) | (Q(user_id__in=mates.values("user_id")) & wanted))
    rows = rows.annotate(kind=Value(_ROW, output_field=IntegerField())).values_list(*_COLUMNS)
    if joined_room_ids:
        blank = Value("", output_field=CharField())
        zero = Value(0, output_field=BigIntegerField())
        next_due = (
            Presence.objects.filter(user_id__in=mates.values("user_id"), due_ms__gt=now_ms)
            .annotate(kind=Value(_NEXT_DUE, output_field=IntegerField()))
            .values("kind")
            .annotate(
                next_due=Min("due_ms"),
                user=zero,
                mx=blank,
                req=blank,
                msg=Value(None, output_field=CharField()),
                active=zero,
                until=zero,
                pos=zero,
            )
            .values_list("kind", "user", "mx", "req", "msg", "active", "until", "next_due", "pos")
        )
        rows = rows.union(next_due, all=True)

    allows_presence = presence_filter.matches_type(rules.PRESENCE)
    changed: list[tuple[int, dict[str, Any]]] = []
    overdue: set[int] = set()

    def wake_at(due: int) -> None:
        if allows_presence:
            result.next_due_ms = due if result.next_due_ms is None else min(result.next_due_ms, due)

    for kind, pk, mxid, requested, status_msg, last_active, until, due, pos in rows:
        if kind == _NEXT_DUE:
            if due is not None:
                wake_at(due)
            continue
        record = rules.PresenceRecord(requested, status_msg, last_active, until)
        in_window = pos <= head if since is None else since < pos <= head
        if due is not None and due <= now_ms:
            # Changed by itself, not announced yet: announced by the caller, then sent at its new
            # position (like expired typing, it is not sent before).
            overdue.add(pk)
        elif due is not None and pk == user_pk:
            wake_at(due)  # one's own presence is sent to oneself too (even in no room)
        if pk == user_pk:
            result.own = record
            if not in_window:
                continue
        elif not in_window and pk in overdue:
            continue
        event = rules.event(record, now_ms, user_id=mxid)
        if presence_filter.matches_event(event):
            changed.append((pos, event))
    changed.sort(key=lambda item: item[0])
    events = [e for _, e in changed]
    if presence_filter.limit is not None:
        events = events[-presence_filter.limit :] if presence_filter.limit else []
    result.events = events
    result.overdue = frozenset(overdue)
    return result


def get_presence(*, viewer: User, user_id: str, now_ms: int) -> dict[str, Any]:
    """GET /presence/{userId}/status: the presence derived now. 404 for a user this server does not
    have; 403 unless the viewer is the user or shares a joined room with them (Synapse's rule: the
    spec sends presence "to interested parties where users share a room membership")."""
    target = User.objects.filter(mxid=user_id, is_active=True).values_list("pk", flat=True).first()
    if target is None:
        raise NotFound("Unknown user")
    if target != viewer.pk and not shares_a_room(viewer.pk, target):
        raise Forbidden("You are not allowed to see their presence")
    row = Presence.objects.filter(user_id=target).first()
    return rules.content(row.record() if row is not None else None, now_ms)


def shares_a_room(a_pk: int, b_pk: int) -> bool:
    return Membership.objects.filter(
        user_id=b_pk,
        membership=JOIN,
        room_id__in=Membership.objects.filter(user_id=a_pk, membership=JOIN).values("room_id"),
    ).exists()


def joined_rooms_of(user_pks: list[int]) -> list[str]:
    """The rooms whose members see these users' presence (where a change must wake /sync waiters)."""
    return sorted(
        set(
            Membership.objects.filter(user_id__in=user_pks, membership=JOIN).values_list("room_id", flat=True)
        )
    )
