"""A room's timeline as one user may read it: history visibility, /messages pagination, /context,
/timestamp_to_event. Layer 2 (reads).

Positions and tokens: ``s<N>`` means "after the event at stream position N". Paging backwards from N
returns events at positions ``<= N``, newest first, and the next token is the position just below the
last event returned; paging forwards returns events at positions ``> N``, oldest first, and the next
token is the last event's position. A /sync ``prev_batch`` is such a token, so it pages back here.

History visibility is decided by the pure ``events.visibility.is_event_visible``; this module only
gathers its inputs cheaply. The user's ``m.room.member`` events in the room are read once (one indexed
query, whatever the number of events) and their membership *at* an event is the latest of them at
or before the event's position, which includes the event itself when it is one of theirs (the
state *after* the event, as visibility.py defines it). The visibility *in force* at an event is
``Event.history_visibility`` (the state before it), except for an ``m.room.history_visibility`` event,
whose own content is the state after it and whose column is the state before it.

The same rules also run in SQL (``RoomVisibility.visible_q``): the user's membership events cut the
stream into a few intervals, and in each one the visibility values that let an event through are
fixed. So a page query returns (nearly) only visible rows, however much history a latecomer may not
see, and every row is still checked by ``can_see`` — Python stays the judge.

For /sync: ``load_room_visibilities`` reads the membership history of any number of rooms in one
query; ``visible_q`` / ``can_see`` then work per room.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from operator import or_
from typing import Any, NamedTuple

from django.db.models import Q

from events.models import Event
from events.pdu import EventTypes, HistoryVisibility
from events.pdu import Membership as M
from events.selectors import state_at
from events.stream import current_stream_position
from events.visibility import effective_history_visibility, is_event_visible
from matrixsrv.errors import Forbidden, NotFound
from matrixsrv.rawsql import InMerge, Read, marks, run_read
from rooms.models import Membership, Room
from sync.filters import DEFAULT_ROOM_EVENT_FILTER, RoomEventFilter, split_type_patterns

BACKWARDS, FORWARDS = "b", "f"
# Paging skips events the user may not see; these bound the work of one request. When they run out
# the page is returned short, with a token where the scan stopped (the spec allows an empty chunk
# that still has an ``end``).
MAX_BATCH_ROWS = 1000
MAX_BATCHES = 8
# Visibility runs in SQL for up to this many membership changes of the user in the room.
MAX_SQL_MEMBERSHIP_INTERVALS = 64
# Spec: a missing or unknown visibility counts as shared.
_SHARED = ~Q(
    history_visibility__in=[
        HistoryVisibility.WORLD_READABLE,
        HistoryVisibility.INVITED,
        HistoryVisibility.JOINED,
    ]
)


# -- history visibility ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomVisibility:
    """What one user's visibility of one room depends on: their membership history there."""

    room_id: str
    user_mxid: str
    positions: tuple[int, ...]  # the user's m.room.member events in the room, in stream order
    memberships: tuple[str | None, ...]  # ... and the membership each set
    last_join_pos: int | None  # the newest of them that is a join

    @classmethod
    def joined_throughout(cls, room_id: str, user_mxid: str, join_pos: int) -> RoomVisibility:
        """A user whose current membership is the join at ``join_pos``: they see every event after it,
        which this describes without their membership history (so only for events after
        ``join_pos``: /sync's rooms joined since before ``since``)."""
        return cls(room_id, user_mxid, (join_pos,), (M.JOIN,), join_pos)

    @property
    def current_membership(self) -> str | None:
        return self.memberships[-1] if self.memberships else None

    @property
    def last_membership_pos(self) -> int | None:
        return self.positions[-1] if self.positions else None

    def membership_at(self, pos: int) -> str | None:
        """The user's membership after the event at ``pos`` (None: no membership yet)."""
        i = bisect_right(self.positions, pos)
        return self.memberships[i - 1] if i else None

    def joined_after(self, pos: int) -> bool:
        """Whether the user joined the room after the event at ``pos`` (spec rule 3)."""
        return self.last_join_pos is not None and self.last_join_pos > pos

    def visible_q(self) -> Q | None:
        """The same rules as ``can_see`` as a WHERE clause on the room's events (None: no clause,
        check in Python only — for a user with an unusually long membership history).

        The user's membership events cut the stream into intervals of constant membership; in each,
        the visibility values that let an event through are fixed (join: all; otherwise
        world_readable, plus shared while a later join exists, plus invited while invited).
        ``m.room.history_visibility`` events (visible if the value before *or* after allows) and the
        user's own member events are always selected and decided by ``can_see``.
        """
        if len(self.positions) > MAX_SQL_MEMBERSHIP_INTERVALS:
            return None
        parts = [
            Q(type=EventTypes.HISTORY_VISIBILITY, state_key=""),
            Q(type=EventTypes.MEMBER, state_key=self.user_mxid),
        ]
        starts: list[int | None] = [None, *self.positions]
        for i, start in enumerate(starts):
            end = self.positions[i] if i < len(self.positions) else None  # exclusive
            membership = self.memberships[i - 1] if i > 0 else None
            span = Q()
            if start is not None:
                span &= Q(stream_pos__gte=start)
            if end is not None:
                span &= Q(stream_pos__lt=end)
            if membership == M.JOIN:
                parts.append(span)
                continue
            allowed = Q(history_visibility=HistoryVisibility.WORLD_READABLE)
            if end is not None and self.last_join_pos is not None and end <= self.last_join_pos:
                allowed |= _SHARED  # joined after every event of this span (rule 3)
            if membership == M.INVITE:
                allowed |= Q(history_visibility=HistoryVisibility.INVITED)  # rule 4
            parts.append(span & allowed)
        return reduce(or_, parts)

    def can_see(self, event: Event) -> bool:
        is_hv_event = event.type == EventTypes.HISTORY_VISIBILITY and event.state_key == ""
        if is_hv_event:
            content = event.content if isinstance(event.content, dict) else {}
            visibility = effective_history_visibility(content.get("history_visibility"))
        else:
            visibility = effective_history_visibility(event.history_visibility)
            if visibility == HistoryVisibility.WORLD_READABLE:
                return True  # rule 1, without the membership arithmetic
        return is_event_visible(
            history_visibility=visibility,
            membership_at_event=self.membership_at(event.stream_pos),
            current_membership=self.current_membership,
            is_state_event_of_membership_for_user=(
                event.type == EventTypes.MEMBER and event.state_key == self.user_mxid
            ),
            is_history_visibility_event=is_hv_event,
            history_visibility_before_event=event.history_visibility if is_hv_event else None,
            has_joined_since_event=self.joined_after(event.stream_pos),
        )


def load_room_visibilities(user_mxid: str, room_ids: Iterable[str]) -> dict[str, RoomVisibility]:
    """The user's visibility context in each room: one query for any number of rooms (for /sync)."""
    return run_read(room_visibilities_read(user_mxid, room_ids))


def room_visibilities_read(user_mxid: str, room_ids: Iterable[str]) -> Read[dict[str, RoomVisibility]]:
    """``load_room_visibilities`` as a ``Read`` (matrixsrv/rawsql.py), which /sync batches."""
    room_ids = list(dict.fromkeys(room_ids))
    if not room_ids:
        return Read("", (), lambda rows: {})
    # Hand-written: on every sync with news (matrixsrv/rawsql.py); the (room, type, state_key,
    # stream_pos) index serves it. Merged: the users with the same rooms (one message's wake-ups).
    sql = (
        f"SELECT {{key}}room_id, stream_pos, membership FROM {Event._meta.db_table} "
        f"WHERE room_id IN ({marks(len(room_ids))}) AND type = %s AND state_key {{user}} ORDER BY stream_pos"
    )
    params = (*room_ids, EventTypes.MEMBER)
    return Read(
        sql.format(key="", user="= %s"),
        [*params, user_mxid],
        partial(_parse_visibilities, user_mxid, room_ids),
        InMerge(sql.format(key="state_key, ", user="IN ({keys})"), before=params),
        user_mxid,
    )


def _parse_visibilities(
    user_mxid: str, room_ids: list[str], rows: list[tuple[Any, ...]]
) -> dict[str, RoomVisibility]:
    found: dict[str, tuple[list[int], list[str | None]]] = {r: ([], []) for r in room_ids}
    for room_id, pos, membership in rows:
        found[room_id][0].append(pos)
        found[room_id][1].append(membership)
    return {
        room_id: RoomVisibility(
            room_id,
            user_mxid,
            tuple(positions),
            tuple(memberships),
            max((p for p, m in zip(positions, memberships) if m == M.JOIN), default=None),
        )
        for room_id, (positions, memberships) in found.items()
    }


def load_room_visibility(room_id: str, user_mxid: str) -> RoomVisibility:
    return load_room_visibilities(user_mxid, [room_id])[room_id]


def filter_visible_events(events: Iterable[Event], *, user_mxid: str, room_id: str) -> list[Event]:
    """The events (all of ``room_id``) that ``user_mxid`` may see, in the given order. One query."""
    events = list(events)
    if not events:
        return []
    visibility = load_room_visibility(room_id, user_mxid)
    return [event for event in events if visibility.can_see(event)]


# -- room access ----------------------------------------------------------------------------------


def access_room_history(room_id: str, user_mxid: str) -> Room:
    """The room, if the user may read any of its history: they have (or had) a membership in it, or
    it is world-readable now. Otherwise 403 ``M_FORBIDDEN`` — also for an unknown room, so a stranger
    can't probe which room IDs exist (Synapse answers the same). A room the user has forgotten counts
    as never joined, unless they are back in it."""
    room = Room.objects.filter(pk=room_id).first()
    if room is None:
        raise Forbidden("You are not a member of this room")
    membership = (
        Membership.objects.filter(room_id=room_id, mxid=user_mxid).only("membership", "forgotten").first()
    )
    if membership is not None and not (membership.forgotten and membership.membership in (M.LEAVE, M.BAN)):
        return room
    if effective_history_visibility(room.history_visibility) == HistoryVisibility.WORLD_READABLE:
        return room
    raise Forbidden("You are not a member of this room")


def get_visible_event(
    room_id: str, event_id: str, *, user_mxid: str, ignored_senders: frozenset[str] = frozenset()
) -> Event:
    """The event, if it is in the room and the user may see it; else 404 ``M_NOT_FOUND`` (the spec's
    GET /rooms/{roomId}/event/{eventId}: "not found or you do not have permission"). A non-state event
    of one of ``ignored_senders`` is not sent either (spec "Ignoring Users"; Synapse refuses it too)."""
    event = Event.objects.filter(room_id=room_id, event_id=event_id).first()
    if event is None or is_ignored(event, ignored_senders):
        raise NotFound("Event not found")
    if not filter_visible_events([event], user_mxid=user_mxid, room_id=room_id):
        raise NotFound("Event not found")
    return event


def is_ignored(event: Event, ignored_senders: frozenset[str]) -> bool:
    """Whether the reader, ignoring ``ignored_senders``, must not get this event: a non-state event of
    an ignored user (their state events are still sent, spec "Ignoring Users")."""
    return event.state_key is None and event.sender in ignored_senders


# -- filters in SQL -------------------------------------------------------------------------------


def _type_q(patterns: Sequence[str]) -> Q | None:
    """Events whose type matches any of the patterns (None: the list matches every type)."""
    split = split_type_patterns(patterns)
    if split.matches_all:
        return None
    parts = [Q(type__regex=regex) for regex in split.regexes]
    if split.exact:
        parts.insert(0, Q(type__in=sorted(split.exact)))
    return reduce(or_, parts)


def event_filter_q(event_filter: RoomEventFilter) -> Q | None:
    """The SQL side of a RoomEventFilter, for the events of one room. Rows it selects are a superset
    of what the filter allows (``contains_url: true`` only checks for the key), so callers re-check
    each row with ``event_filter.allows``. None: the filter lets nothing through."""
    if event_filter.types is not None and not event_filter.types:
        return None
    if event_filter.senders is not None and not event_filter.senders:
        return None
    q = Q()
    if event_filter.types is not None and (include := _type_q(event_filter.types)) is not None:
        q &= include
    if event_filter.not_types:
        exclude = _type_q(event_filter.not_types)
        if exclude is None:
            return None
        q &= ~exclude
    if event_filter.senders is not None:
        q &= Q(sender__in=list(event_filter.senders))
    if event_filter.not_senders:
        q &= ~Q(sender__in=list(event_filter.not_senders))
    if event_filter.contains_url is True:
        q &= Q(content__has_key="url")
    return q


def _allowed(event_filter: RoomEventFilter, event: Event) -> bool:
    return event_filter.allows(
        event_type=event.type,
        sender=event.sender,
        room_id=event.room_id,
        content=event.content if isinstance(event.content, dict) else None,
    )


# -- pagination -----------------------------------------------------------------------------------


class Page(NamedTuple):
    """One page of a room's timeline.

    ``next_pos``: where the next page starts (a token ``s<next_pos>`` in the same direction), or None
    when there is nothing more: backwards, the room's first event (or ``to``) was reached, or the
    user may see nothing earlier; forwards, the page is empty and nothing newer exists yet.
    """

    events: list[Event]
    next_pos: int | None


def paginate(
    room_id: str,
    *,
    user_mxid: str,
    from_pos: int | None,
    to_pos: int | None = None,
    direction: str = BACKWARDS,
    limit: int = 10,
    event_filter: RoomEventFilter | None = None,
    visibility: RoomVisibility | None = None,
    head: int | None = None,
    ignored_senders: frozenset[str] = frozenset(),
) -> Page:
    """Up to ``limit`` events the user may see, from ``from_pos`` towards ``to_pos``, by stream order.

    * Backwards (``b``): events at ``to_pos < pos <= from_pos``, newest first; ``from_pos`` None means
      from the newest event. Forwards (``f``): ``from_pos < pos <= to_pos``, oldest first;
      ``from_pos`` None means from the room's first event, ``to_pos`` None up to the stream head.
    * The filter's type, sender and url conditions and the history visibility rules run in SQL
      (wildcard types as anchored regexes, visibility as ``RoomVisibility.visible_q``); each row is
      re-checked in Python. Pages are fetched until ``limit`` events pass or the range ends (at most
      ``MAX_BATCHES``; rows that fail the re-check are rare: history visibility events, a
      ``url`` that is not a string).
    * Non-state events of ``ignored_senders`` (the reader's ignored users) are left out, in SQL.
    * Forwards, a non-empty page that reaches the end of the range still gets a ``next_pos`` (the end
      of the range), so a client can come back later for newer events.
    * Queries: the stream head (1, unless ``head`` is given), the membership history (1, unless
      ``visibility`` is given), then
      one per batch — the first batch is ``limit + 1`` rows, normally the only one.
    """
    event_filter = event_filter or DEFAULT_ROOM_EVENT_FILTER
    if direction not in (BACKWARDS, FORWARDS):
        raise ValueError(direction)
    if head is None:
        head = current_stream_position()
    if direction == BACKWARDS:
        upper = head if from_pos is None else min(from_pos, head)
        lower = max(to_pos, 0) if to_pos is not None else 0
    else:
        lower = 0 if from_pos is None else min(from_pos, head)
        upper = head if to_pos is None else min(to_pos, head)
    if limit <= 0:
        return Page([], upper if direction == BACKWARDS else lower)
    where = event_filter_q(event_filter)
    if where is None or not event_filter.matches_room(room_id) or lower >= upper:
        return Page([], None)

    if visibility is None:
        visibility = load_room_visibility(room_id, user_mxid)
    rows = Event.objects.filter(where, room_id=room_id)
    if (visible := visibility.visible_q()) is not None:
        rows = rows.filter(visible)
    if ignored_senders:
        rows = rows.exclude(sender__in=sorted(ignored_senders), state_key__isnull=True)
    found: list[Event] = []
    batch = min(limit + 1, MAX_BATCH_ROWS)
    cursor_lo, cursor_hi = lower, upper  # the range not yet scanned: cursor_lo < pos <= cursor_hi
    for _ in range(MAX_BATCHES):
        if direction == BACKWARDS:
            chunk = list(
                rows.filter(stream_pos__gt=cursor_lo, stream_pos__lte=cursor_hi).order_by("-stream_pos")[
                    :batch
                ]
            )
        else:
            chunk = list(
                rows.filter(stream_pos__gt=cursor_lo, stream_pos__lte=cursor_hi).order_by("stream_pos")[
                    :batch
                ]
            )
        exhausted = len(chunk) < batch
        for i, event in enumerate(chunk):
            if not (_allowed(event_filter, event) and visibility.can_see(event)):
                continue
            found.append(event)
            if len(found) == limit:
                if exhausted and i == len(chunk) - 1:
                    return _last_page(found, direction, upper)
                return Page(found, event.stream_pos - 1 if direction == BACKWARDS else event.stream_pos)
        if exhausted:
            return _last_page(found, direction, upper)
        if direction == BACKWARDS:
            cursor_hi = chunk[-1].stream_pos - 1
        else:
            cursor_lo = chunk[-1].stream_pos
        batch = min(batch * 2, MAX_BATCH_ROWS)
    # Out of budget: hand back what we have, with a token where the scan stopped.
    return Page(found, cursor_hi if direction == BACKWARDS else cursor_lo)


def _last_page(found: list[Event], direction: str, upper: int) -> Page:
    if direction == FORWARDS and found:
        return Page(found, upper)
    return Page(found, None)


# -- state for a page -----------------------------------------------------------------------------


def member_state_for_senders(room_id: str, events: Iterable[Event], *, at_pos: int) -> list[Event]:
    """The ``m.room.member`` events of the events' senders as of ``at_pos`` (lazy-loading members)."""
    keys = {(EventTypes.MEMBER, event.sender) for event in events}
    return state_at(room_id, at_pos, keys=keys) if keys else []


# -- /timestamp_to_event --------------------------------------------------------------------------


def find_event_by_timestamp(
    room_id: str, *, user_mxid: str, ts: int, direction: str, visibility: RoomVisibility | None = None
) -> Event | None:
    """The visible event closest to ``ts`` in ``direction``: forwards, the first with
    ``origin_server_ts >= ts``; backwards, the last with ``origin_server_ts <= ts`` (ties broken by
    stream order). None if there is none (within ``MAX_BATCHES`` batches of skipped events)."""
    if visibility is None:
        visibility = load_room_visibility(room_id, user_mxid)
    rows = Event.objects.filter(room_id=room_id)
    if (visible := visibility.visible_q()) is not None:
        rows = rows.filter(visible)
    if direction == FORWARDS:
        rows, order = rows.filter(origin_server_ts__gte=ts), ("origin_server_ts", "stream_pos")
    else:
        rows, order = rows.filter(origin_server_ts__lte=ts), ("-origin_server_ts", "-stream_pos")
    batch = 50
    after: tuple[int, int] | None = None  # (ts, pos) of the last row scanned
    for _ in range(MAX_BATCHES):
        qs = rows
        if after is not None:
            t, p = after
            if direction == FORWARDS:
                qs = qs.filter(Q(origin_server_ts__gt=t) | Q(origin_server_ts=t, stream_pos__gt=p))
            else:
                qs = qs.filter(Q(origin_server_ts__lt=t) | Q(origin_server_ts=t, stream_pos__lt=p))
        chunk = list(qs.order_by(*order)[:batch])
        for event in chunk:
            if visibility.can_see(event):
                return event
        if len(chunk) < batch:
            return None
        after = (chunk[-1].origin_server_ts, chunk[-1].stream_pos)
        batch = min(batch * 2, MAX_BATCH_ROWS)
    return None
