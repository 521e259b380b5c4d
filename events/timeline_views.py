"""Client-Server API: reading a room's history — /messages, /context, /event, /timestamp_to_event.

Thin: parse the query, call events.timeline, format. History visibility is applied by
events.timeline to every event returned; state returned alongside is room metadata at a point the
user can see, and is not filtered again (neither /messages nor Synapse's /context hide it).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from accounts.account_data_selectors import list_ignored_users
from events.formatting import format_client_event
from events.models import Event
from events.selectors import state_at
from events.stream import current_stream_position
from events.timeline import (
    BACKWARDS,
    FORWARDS,
    access_room_history,
    find_event_by_timestamp,
    get_visible_event,
    is_ignored,
    load_room_visibility,
    member_state_for_senders,
    paginate,
)
from matrixsrv.errors import InvalidParam, MissingParam, NotFound
from matrixsrv.http import query_int
from matrixsrv.views import MatrixAPIView
from sync.filters import DEFAULT_ROOM_EVENT_FILTER, RoomEventFilter, parse_room_event_filter_json
from sync.tokens import StreamToken

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_CONTEXT_LIMIT = 100


def _direction(params: Any) -> str:
    raw = params.get("dir")
    if raw is None or raw == "":
        raise MissingParam("Missing 'dir' (one of 'b', 'f')")
    if raw not in (BACKWARDS, FORWARDS):
        raise InvalidParam("'dir' must be 'b' or 'f'")
    return raw


def _token(params: Any, key: str) -> StreamToken | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    return StreamToken.parse(raw)


def _event_filter(params: Any) -> RoomEventFilter:
    raw = params.get("filter")
    if raw is None or raw == "":
        return DEFAULT_ROOM_EVENT_FILTER
    return parse_room_event_filter_json(raw)


def _limit(params: Any, event_filter: RoomEventFilter, *, cap: int) -> int:
    """The ``limit`` query parameter, else the filter's ``limit``, else 10; at most ``cap``."""
    limit = query_int(params, "limit", None, minimum=0)
    if limit is None:
        limit = event_filter.limit if event_filter.limit is not None else DEFAULT_LIMIT
    return min(limit, cap)


class _ReadView(MatrixAPIView):
    """Base of this module's views (no route of its own): the shared event formatting."""

    def format(self, request: Request, events: list[Event]) -> list[dict[str, Any]]:
        """Client-format events; ``unsigned.transaction_id`` for the device that sent them."""
        device_pk = request.auth.device_id if request.auth is not None else None
        now_ms = int(time.time() * 1000)
        return [format_client_event(event, device_pk=device_pk, now_ms=now_ms) for event in events]


class RoomMessagesView(_ReadView):
    """GET /_matrix/client/v3/rooms/{roomId}/messages

    * ``from``: optional (v1.3); absent means the newest event for ``dir=b``, the first for ``dir=f``.
    * ``dir``: required, ``b`` or ``f``. ``limit``: default 10, at most 1000. ``filter``: a JSON
      RoomEventFilter (400 ``M_NOT_JSON`` / ``M_BAD_JSON`` / ``M_INVALID_PARAM`` when it is wrong).
    * ``end`` is omitted when nothing more can come: paging back stops at the room's first event.
    * Non-state events of users the reader ignores (``m.ignored_user_list``) are left out.
    * ``state``: with ``lazy_load_members``, the senders' member events at the chunk's first event.
      Redundant members are always included (the spec allows it; we don't track what was sent).
    """

    def get(self, request: Request, room_id: str) -> Response:
        params = request.query_params
        direction = _direction(params)
        from_token, to_token = _token(params, "from"), _token(params, "to")
        event_filter = _event_filter(params)
        limit = _limit(params, event_filter, cap=MAX_LIMIT)
        mxid = request.user.mxid
        access_room_history(room_id, mxid)
        head = current_stream_position()
        page = paginate(
            room_id,
            head=head,
            user_mxid=mxid,
            from_pos=from_token.pos if from_token else None,
            to_pos=to_token.pos if to_token else None,
            direction=direction,
            limit=limit,
            event_filter=event_filter,
            ignored_senders=list_ignored_users(request.user),
        )
        if from_token is not None:
            start = str(from_token)
        else:
            start = str(StreamToken(head if direction == BACKWARDS else 0))
        body: dict[str, Any] = {"chunk": self.format(request, page.events), "start": start}
        if page.next_pos is not None:
            body["end"] = str(StreamToken(page.next_pos))
        if event_filter.lazy_load_members and page.events:
            state = member_state_for_senders(room_id, page.events, at_pos=page.events[0].stream_pos)
            body["state"] = self.format(request, state)
        return Response(body)


class EventContextView(_ReadView):
    """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}

    * 403 ``M_FORBIDDEN`` for a user who may read none of the room; 404 ``M_NOT_FOUND`` when the event
      is not in the room or this user may not see it (as GET /event answers: no existence leak).
    * ``limit`` (default 10, at most 100) is split ``limit // 2`` before, the rest after (Synapse).
      The filter applies to ``events_before``, ``events_after`` and ``state``, not to ``event``.
    * ``state``: the room state at the last event returned; with ``lazy_load_members`` only the member
      events of the returned events' senders (kept even if the filter's types would drop them: they
      are what lazy loading promises).
    * Non-state events of users the reader ignores are left out of ``events_before``/``events_after``;
      such an event asked for as the context's centre is 404, as if invisible (Synapse refuses it too).
    """

    def get(self, request: Request, room_id: str, event_id: str) -> Response:
        params = request.query_params
        event_filter = _event_filter(params)
        limit = _limit(params, event_filter, cap=MAX_CONTEXT_LIMIT)
        mxid = request.user.mxid
        access_room_history(room_id, mxid)
        event = Event.objects.filter(room_id=room_id, event_id=event_id).first()
        visibility = load_room_visibility(room_id, mxid)
        ignored = list_ignored_users(request.user)
        if event is None or not visibility.can_see(event) or is_ignored(event, ignored):
            raise NotFound("Event not found")
        before_limit = limit // 2
        around = partial(
            paginate,
            room_id,
            user_mxid=mxid,
            event_filter=event_filter,
            visibility=visibility,
            head=current_stream_position(),
            ignored_senders=ignored,
        )
        before = around(from_pos=event.stream_pos - 1, direction=BACKWARDS, limit=before_limit)
        after = around(from_pos=event.stream_pos, direction=FORWARDS, limit=limit - before_limit)
        if before.next_pos is not None:
            start = before.next_pos
        else:
            start = (before.events[-1] if before.events else event).stream_pos - 1
        if after.next_pos is not None:
            end = after.next_pos
        else:
            end = (after.events[-1] if after.events else event).stream_pos
        last = after.events[-1] if after.events else event
        everything = [*before.events, event, *after.events]
        if event_filter.lazy_load_members:
            state = member_state_for_senders(room_id, everything, at_pos=last.stream_pos)
        else:
            state = [
                e
                for e in state_at(room_id, last.stream_pos)
                if event_filter.allows(
                    event_type=e.type, sender=e.sender, room_id=e.room_id, content=e.content
                )
            ]
        return Response(
            {
                "event": self.format(request, [event])[0],
                "events_before": self.format(request, before.events),
                "events_after": self.format(request, after.events),
                "start": str(StreamToken(max(start, 0))),
                "end": str(StreamToken(end)),
                "state": self.format(request, state),
            }
        )


class RoomEventView(_ReadView):
    """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}

    404 ``M_NOT_FOUND`` when the event is unknown, in another room, not visible to this user, or a
    non-state event of a user they ignore.
    """

    def get(self, request: Request, room_id: str, event_id: str) -> Response:
        event = get_visible_event(
            room_id, event_id, user_mxid=request.user.mxid, ignored_senders=list_ignored_users(request.user)
        )
        return Response(self.format(request, [event])[0])


class TimestampToEventView(_ReadView):
    """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event

    ``ts`` (ms) and ``dir`` (``f``: the first event at or after ``ts``; ``b``: the last at or before)
    are required. Only events this user may see; 404 ``M_NOT_FOUND`` when there is none.
    """

    def get(self, request: Request, room_id: str) -> Response:
        params = request.query_params
        if params.get("ts") in (None, ""):
            raise MissingParam("Missing 'ts'")
        ts = query_int(params, "ts", None, minimum=0)
        assert ts is not None
        direction = _direction(params)
        mxid = request.user.mxid
        access_room_history(room_id, mxid)
        event = find_event_by_timestamp(room_id, user_mxid=mxid, ts=ts, direction=direction)
        if event is None:
            way = "forward" if direction == FORWARDS else "backward"
            raise NotFound(f"Unable to find event from {ts} in {way} direction")
        return Response({"event_id": event.event_id, "origin_server_ts": event.origin_server_ts})
