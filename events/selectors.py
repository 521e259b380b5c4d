"""Reads of events and room state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q

from events.models import CurrentState, Event
from events.pdu import StateEvent
from matrixsrv.errors import NotFound
from matrixsrv.rawsql import columns, fetch_all, instance

StateKey = tuple[str, str]


def as_state_event(event: Event) -> StateEvent:
    return StateEvent(
        type=event.type,
        state_key=event.state_key or "",
        sender=event.sender,
        content=event.content,
        event_id=event.event_id,
    )


def state_events_for_keys(room_id: str, keys: Iterable[StateKey]) -> dict[StateKey, Event]:
    """The current state events for exactly these (type, state_key) pairs: one query."""
    keys = set(keys)
    if not keys:
        return {}
    sql, params = state_events_query(room_id, keys)
    return state_events_from_rows(fetch_all(sql, params))


def state_events_query(room_id: str, keys: Iterable[StateKey]) -> tuple[str, list[str]]:
    """The read of ``state_events_for_keys`` (at least one key), for running with others."""
    keys = sorted(set(keys))
    _, event_cols = columns(Event)
    e, cs = Event._meta.db_table, CurrentState._meta.db_table
    pairs = ", ".join(["(%s, %s)"] * len(keys))
    sql = (  # hand-written: on every send (matrixsrv/rawsql.py)
        f"SELECT {event_cols} FROM {cs} JOIN {e} ON {e}.id = {cs}.event_id "
        f"WHERE {cs}.room_id = %s AND ({cs}.type, {cs}.state_key) IN ({pairs})"
    )
    params: list[str] = [room_id]
    for event_type, state_key in keys:
        params += [event_type, state_key]
    return sql, params


def state_events_from_rows(rows: Iterable[Sequence[Any]]) -> dict[StateKey, Event]:
    events = [instance(Event, row)[0] for row in rows]
    return {(ev.type, ev.state_key or ""): ev for ev in events}


def current_state_events(room_id: str, *, types: Iterable[str] | None = None) -> list[Event]:
    qs = Event.objects.filter(room_id=room_id, pk__in=CurrentState.objects.filter(room_id=room_id).values("event_id"))
    if types is not None:
        qs = qs.filter(type__in=list(types))
    return list(qs.order_by("stream_pos"))


def get_event(event_id: str, *, room_id: str | None = None) -> Event:
    qs = Event.objects.filter(event_id=event_id)
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    event = qs.first()
    if event is None:
        raise NotFound("Event not found")
    return event


def state_at(room_id: str, pos: int, *, keys: Iterable[StateKey] | None = None) -> list[Event]:
    """The room's state as of stream position ``pos`` (the newest state event ≤ pos per key)."""
    from django.db.models import Max

    latest = Event.objects.filter(room_id=room_id, state_key__isnull=False, stream_pos__lte=pos)
    if keys is not None:
        keys = set(keys)
        if not keys:
            return []
        latest = latest.filter(reduce(or_, (Q(type=t, state_key=k) for t, k in keys)))
    positions = latest.values("type", "state_key").annotate(m=Max("stream_pos")).values_list("m", flat=True)
    return list(Event.objects.filter(stream_pos__in=list(positions)).order_by("stream_pos"))
