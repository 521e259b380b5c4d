"""Building a /sync response from the database (DESIGN.md §4.5).

Everything a response contains lies at or below one stream position, ``head``, read first: the
response's ``next_batch`` is ``s<head>``, and the next sync continues exactly there, so no event is
skipped, repeated or reordered whatever happens concurrently (positions become visible in commit
order, events/stream.py).

The number of queries is constant in the number of rooms (measured in tests/api/test_sync_api.py):

1. the stream head (on the /sync route, with the access token: one round trip);
2. the user's memberships, with their rooms and membership events;
3. the user's membership history in the rooms that have news (history visibility, "was the user
   joined at ``since``?"), but for rooms they have been joined to since before ``since``;
4. every room's timeline, in one windowed query (``ROW_NUMBER() OVER (PARTITION BY room)``);
5. heroes of the unnamed rooms whose summary is sent;
6. the current state of the rooms that get their full state;
7. state at the timeline's start and end (one windowed query): the state changes between ``since``
   and the timeline of incremental rooms, and, for every state key that changes after the start of
   a full-state room's timeline, its value at the start (the current state is the state at the
   *end*; the spec's ``state`` is the state at the *start*) and at the end;
8. stripped state of invites and knocks;
9. the user's account data: every row changed after ``since`` (global and per room) and the
   ``m.ignored_user_list``, whose users' non-state events and invites are not sent (spec "Ignoring
   Users": it takes effect at once, and state events of ignored users are still sent);
10. the joined rooms' typing rows and receipts, in one UNION ALL (``ephemeral.selectors``): ``m.typing``
    where the typing set changed after ``since``, ``m.receipt`` with the receipts changed after it;
11. presence (``presence.selectors``, one UNION ALL, made on every sync): the user's own row, the
    room-mates' rows changed after ``since`` (or new room-mates, or due changes), and, for a
    long-poll (``SyncRequest.waits``), the earliest instant a room-mate's presence changes by itself;
12. the unread notification counts of the joined rooms the answer may hold, grouped by room and
    thread (``push.selectors.unread_counts_read``, with the timelines; not made without such rooms).

A query whose input is empty is not made, so an empty incremental sync costs three queries (head,
account data, memberships; four with the access token's), and one with a few new events per room
five (six). On PostgreSQL, statements go in batches, one round trip each, as prepared statements
(``rawsql.PreparedStatements``): the token with the head; account data, E2EE and memberships; the
membership histories, ephemeral data and presence; the timelines with the unread counts. A worker
remembers each user's joined rooms from their last sync and sends the reads that depend on them
(ephemeral, presence) with the memberships' read, to be read again only if the rooms changed: an
incremental sync is then two round trips without news and three with news. Likewise the timelines
and unread counts of the rooms this worker's wake-ups since ``since`` named (sync/recent.py): a sync
woken by, or made just after, a message in a room the worker heard of is two round trips
(tests/api/test_sync_round_trips.py).

Several syncs are answered together (``build_sync_responses``; the long-polls one message wakes,
sync/batch.py): each request's builder (``_build``) is a generator that yields the reads it needs
next, and the reads of every builder at one step go to the database as one batch (one round trip on
PostgreSQL: head, then account data / E2EE / memberships, then visibility / ephemeral / presence,
then timelines with unread counts). Reads of one kind for several users become one statement
(``rawsql.InMerge``), identical statements run once, and the statements that would name the user
only to filter (room-mates' presence, receipts) don't, so the waiters of one room share them. Each
answer is exactly what the request would get alone, at the batch's head (tests/api/test_sync_batch.py).
The device-list part of the E2EE read, the costliest to plan, is left out when no membership and no
device list changed after ``since`` (read with the head, ``_head``).

What a room gets (``_RoomPlan``), for a sync ``since`` S:

* joined, initial sync, or joined after S (not joined at S): the last ``limit`` events the user may
  see and the complete state at the start of that timeline;
* joined at S (and ever since) with news: the events after S; the state changes between S and the
  timeline's start (none unless the timeline is limited or filtered); with ``full_state=true``, the
  complete state instead (and the room appears even without news);
* a state change inside the timeline's span that the timeline does not show (filtered out, or
  history the user may not see) is sent in ``state`` with its value at the end (``_load_state``);
* left (leave, kick, ban) after S: the timeline up to the leave, and the state delta (or the full
  state, when the user joined after S); a user who never was joined in between (a rejected invite,
  a withdrawn knock) gets only what they may see of the timeline (their own leave) and no state;
  in an initial sync, left rooms only with the filter's ``include_leave``, with full state at the
  start of the timeline up to the leave.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, partial, reduce
from operator import or_
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Case, F, Q, Value, When, Window
from django.db.models.functions import RowNumber

from accounts.account_data_selectors import (
    IGNORED_USER_LIST,
    PUSH_RULES,
    default_global_account_data,
    ignored_users_in,
)
from accounts.models import AccountData, User
from e2ee.models import DeviceListChange, ToDeviceMessage
from e2ee.selectors import sync_e2ee_read
from ephemeral.selectors import room_ephemeral_read
from events.formatting import format_client_event
from events.models import CurrentState, Event
from events.pdu import EventTypes
from events.pdu import Membership as M
from events.stream import STREAM_HEAD_TABLE
from events.timeline import RoomVisibility, event_filter_q, room_visibilities_read
from matrixsrv.errors import NotFound
from matrixsrv.rawsql import InMerge, Read, columns, instance, json_value, run_read, run_reads
from presence.rules import PresenceRecord
from presence.selectors import SyncPresence, sync_presence_reads
from push.selectors import NO_UNREAD, unread_counts_read
from rooms.models import Membership, Room
from sync import recent
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
MAX_FILTER_ID_LENGTH = 18

# State modes of a planned room.
FULL, DELTA, NO_STATE = "full", "delta", "none"
StateKey = tuple[str, str]


# -- filters ---------------------------------------------------------------------------------------


def load_filter(user: User, raw: str | None) -> Filter:
    """``filter`` of /sync: inline JSON (starts with "{") or the ID of a filter the user uploaded."""
    found = known_filter(user, raw)
    if found is not None:
        return found
    assert raw is not None
    definition = find_filter_definition(user, raw)
    if definition is None:
        raise NotFound("Unknown filter")
    parsed = parse_filter(definition)
    if len(_STORED_FILTERS) >= _MAX_STORED_FILTERS:
        _STORED_FILTERS.clear()
    _STORED_FILTERS[user.pk, raw] = parsed
    return parsed


# Per worker: the uploaded filters its syncs have read, parsed, by user and ID. A stored filter never
# changes (an upload makes a new one), so every sync of a client that names its filter by ID (as
# Element and matrix-js-sdk do) needs no query for it after its first here.
_STORED_FILTERS: dict[tuple[int, str], Filter] = {}
_MAX_STORED_FILTERS = 10_000


def known_filter(user: User, raw: str | None) -> Filter | None:
    """``load_filter``'s answer when it needs no query: none, inline JSON, or a stored filter of the
    user's this worker has read before; else None."""
    if not raw:
        return Filter()
    if raw.lstrip().startswith("{"):
        return parse_filter_json(raw)
    return _STORED_FILTERS.get((user.pk, raw))


def find_filter_definition(user: User, filter_id: str) -> dict[str, Any] | None:
    """The user's stored filter ``filter_id`` (the row's pk in canonical decimal: "7", not "07" or
    "٧"), or None."""
    if not (filter_id.isascii() and filter_id.isdigit()) or len(filter_id) > MAX_FILTER_ID_LENGTH:
        return None
    if str(int(filter_id)) != filter_id:
        return None
    return (
        StoredFilter.objects.filter(pk=int(filter_id), user=user).values_list("definition", flat=True).first()
    )


# -- the response ----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    body: dict[str, Any] | None  # None: a read skipped (sync/quiet.py), never an answer
    next_pos: int
    is_empty: bool
    joined_room_ids: frozenset[str] = frozenset()  # where this user's next wake-ups come from
    # Typing (ephemeral.selectors): when the next typing user in these rooms expires (a waiting /sync
    # re-reads then), and the rooms with expired typing rows not announced yet (expire_typing).
    next_expiry_ms: int | None = None
    expired_typing_rooms: frozenset[str] = frozenset()
    # Presence (presence.selectors): ``next_expiry_ms`` also covers the next presence change due by
    # itself (idle, offline); these users' due changes are not announced yet
    # (presence.actions.announce_due_presence); the user's own record, for ``set_presence``.
    overdue_presence: frozenset[int] = frozenset()
    own_presence: PresenceRecord | None = None


@dataclass
class _RoomPlan:
    """What one room contributes: which events to read for its timeline and which state."""

    room: Room
    membership: Membership
    section: str  # "join" | "leave"
    lower: int | None  # timeline events strictly after this position (None: from the start)
    upper: int  # ... and at or before this one
    state_mode: str  # FULL: all state at the timeline's start; DELTA: changes after ``lower``; NO_STATE
    visibility: RoomVisibility
    timeline: list[Event] = field(default_factory=list)
    limited: bool = False
    # The timeline holds every event of its window (not limited, nothing filtered or hidden), so no
    # state change can lie between ``lower`` and the timeline.
    complete: bool = False
    heroes: list[str] | None = None
    state: list[Event] = field(default_factory=list)

    @property
    def room_id(self) -> str:
        return self.room.room_id

    @property
    def state_upper(self) -> int:
        """The state sent is the state at this position: just before the timeline's first event (or
        the window's end without one)."""
        return self.timeline[0].stream_pos - 1 if self.timeline else self.upper

    @property
    def senders(self) -> set[str]:
        return {e.sender for e in self.timeline}


@dataclass(frozen=True)
class SyncRequest:
    """What one /sync asks for (its parameters, parsed)."""

    user: User
    device_pk: int | None
    since: int | None
    sync_filter: Filter
    full_state: bool = False
    # A long-poll's read: an empty answer is waited on, until the earliest change that comes by itself
    # (``SyncResult.next_expiry_ms``). An answer given at once needs no such instant.
    waits: bool = False


def build_sync_response(
    *,
    user: User,
    device_pk: int | None,
    since: int | None,
    sync_filter: Filter,
    full_state: bool = False,
    head: tuple[int, int] | None = None,
) -> SyncResult:
    result = build_sync_responses([SyncRequest(user, device_pk, since, sync_filter, full_state)], head)[0]
    if isinstance(result, BaseException):
        raise result
    return result


# What a builder yields: the reads it needs next (run together, their results sent back in order).
_Step = Generator[list[Read[Any]], list[Any], SyncResult]


def build_sync_responses(
    requests: Sequence[SyncRequest], head: tuple[int, int] | None = None
) -> list[SyncResult | BaseException]:
    """The answers to several /syncs at one stream head, read together: each request's builder
    (``_build``) yields the statements it needs next, and every builder's statements of a step go
    to the database as one batch (``rawsql.run_reads``: one round trip on PostgreSQL). The long-polls
    one event wakes are answered this way (sync/batch.py): four round trips for all of them,
    instead of about ten per request. A request whose builder raises gets its exception, the others
    their answers. The stream head is read once (``head``: already read, with ``head_read``): every
    answer ends at the same position."""
    head, last_change = head if head is not None else run_read(head_read())
    now_ms = int(time.time() * 1000)  # one instant for the batch: statements that don't name a user match
    results: list[SyncResult | BaseException | None] = [None] * len(requests)
    waiting: dict[int, tuple[_Step, list[Read[Any]]]] = {}

    def advance(i: int, step: _Step, sent: list[Any] | None) -> None:
        try:
            reads = step.send(sent) if sent is not None else next(step)
        except StopIteration as stop:
            results[i] = stop.value
        except Exception as exc:  # this request's error (bad input, a vanished row): its answer alone
            results[i] = exc
        else:
            waiting[i] = (step, reads)

    guess = _guess_rooms() and len(requests) <= GUESS_MAX_BATCH
    for i, request in enumerate(requests):
        advance(i, _build(request, head, last_change, now_ms, guess=guess), None)
    while waiting:
        steps = list(waiting.items())
        waiting.clear()
        found = iter(run_reads([read for _, (_, reads) in steps for read in reads]))
        for i, (step, reads) in steps:
            advance(i, step, [next(found) for _ in reads])
    return results  # type: ignore[return-value]


@cache
def _head_sql() -> str:
    quote = connection.ops.quote_name
    member, keys = quote(Membership._meta.db_table), quote(DeviceListChange._meta.db_table)
    return (
        f"SELECT h.pos, (SELECT MAX(m.stream_pos) FROM {member} m WHERE m.stream_pos <= h.pos), "
        f"(SELECT MAX(d.stream_pos) FROM {keys} d WHERE d.stream_pos <= h.pos) "
        f"FROM {STREAM_HEAD_TABLE} h WHERE h.id = 1"
    )


def head_read() -> Read[tuple[int, int]]:
    """The stream head (``events.stream.current_stream_position``) and, in the same statement (one
    snapshot), the newest position at or below it of a membership change or a device-list change:
    a sync from a ``since`` at or past it has no ``device_lists`` to report (``sync_e2ee_read``)."""
    return Read(_head_sql(), [], _parse_head)


def _parse_head(rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    if not rows:
        return 0, 0
    row = rows[0]
    return int(row[0]), max(int(row[1] or 0), int(row[2] or 0))


def _build(request: SyncRequest, head: int, last_change: int, now_ms: int, *, guess: bool = False) -> _Step:
    """One request's answer at ``head``; a generator that yields the reads it needs next. ``guess``:
    send the reads that depend on the user's rooms early, as this worker last saw the rooms."""
    user, device_pk, since = request.user, request.device_pk, request.since
    sync_filter, full_state = request.sync_filter, request.full_state
    if since is not None and since > head:
        since = head  # a token from the future (e.g. a restored database) is clamped, as Synapse does
    room_filter = sync_filter.room
    timeline_filter = room_filter.timeline
    state_filter = room_filter.state
    limit = timeline_filter.limit_or(DEFAULT_TIMELINE_LIMIT, cap=MAX_TIMELINE_LIMIT)
    lazy = state_filter.lazy_load_members or timeline_filter.lazy_load_members

    # The reads that depend on the user's joined rooms (ephemeral, presence) go with the memberships'
    # read when this worker knows the rooms from the user's previous sync; they count only if the
    # rooms turn out the same (the same statements with the same parameters), else they are made in
    # the next round trip, as without a guess (``_room_reads``).
    known_rooms = _JOINED_ROOMS.get(user.pk) if guess else None
    guessed, _ = _room_reads(request, since, head, now_ms, known_rooms)
    guessed += _news_reads(request, since, head, known_rooms, limit)  # the timeline's too, likewise
    (global_data, room_data, ignored), e2ee, all_memberships, *guessed_rows = yield [
        _account_data_read(user, since, head),
        sync_e2ee_read(  # E2EE: one query
            user=user, device_pk=device_pk, since=since, head=head,
            device_lists=since is not None and last_change > since,
        ),
        _memberships_read(user.pk),
        *(read._replace(parse=list) for read in guessed),  # raw rows: parsed below, knowing ``ignored``
    ]
    joined_rooms = tuple((m.room_id, m.stream_pos) for m in all_memberships if m.membership == M.JOIN)
    _remember_joined_rooms(user.pk, joined_rooms)
    # To-device messages at or below ``since`` were delivered (acknowledged): deleted.
    if e2ee.acknowledged and device_pk is not None and since is not None:
        ToDeviceMessage.objects.acknowledge(device_pk=device_pk, upto=since)
    memberships = [m for m in all_memberships if room_filter.matches_room(m.room_id)]
    candidates = _rooms_with_news(memberships, since, full_state, room_filter.include_leave)
    ephemeral_filter = room_filter.ephemeral
    # A room the user has been joined to since before ``since``: every event after ``since`` is
    # visible to them, no need to read their membership history there.
    throughout = {
        m.room_id: RoomVisibility.joined_throughout(m.room_id, user.mxid, m.stream_pos)
        for m in candidates
        if m.membership == M.JOIN and since is not None and m.stream_pos <= since
    }
    visibility_read = room_visibilities_read(
        user.mxid, [m.room_id for m in candidates if m.room_id not in throughout]
    )
    room_reads, presence_of = _room_reads(request, since, head, now_ms, joined_rooms, ignored)
    early = {_identity(read): rows for read, rows in zip(guessed, guessed_rows)}
    found = yield from _with_early([visibility_read, *room_reads], early)
    found_visibilities, ephemeral, *presence_rows = found
    visibilities = {**throughout, **found_visibilities}
    presence = presence_of(presence_rows)
    plans = _plan_rooms(candidates, visibilities, since, head, full_state)
    invites = [
        m
        for m in memberships
        if m.membership == M.INVITE
        and (since is None or m.stream_pos > since)
        and m.event.sender not in ignored  # spec: invites from ignored users are not sent
    ]
    knocks = [m for m in memberships if m.membership == M.KNOCK and (since is None or m.stream_pos > since)]

    def room_ephemeral(room_id: str) -> list[dict[str, Any]]:
        return [e for e in ephemeral.events.get(room_id, []) if ephemeral_filter.allows(event_type=e["type"])]

    account_data_filter = room_filter.account_data

    def room_account_data(room_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in room_data.get(room_id, [])
            if account_data_filter.allows(event_type=e["type"], room_id=room_id)
        ]

    planned = {p.room_id for p in plans}
    # Joined rooms whose only news is the user's account data or ephemeral data.
    side_rooms = [
        m
        for m in memberships
        if m.membership == M.JOIN
        and m.room_id not in planned
        and (m.room_id in room_data or m.room_id in ephemeral.events)  # (most rooms: nothing to filter)
        and (room_account_data(m.room_id) or room_ephemeral(m.room_id))
    ]
    # The unread counts of every joined room the answer may hold, read with the timelines.
    unread_rooms = sorted({p.room_id for p in plans if p.section == "join"} | {m.room_id for m in side_rooms})
    unread = [unread_counts_read(user_pk=user.pk, room_ids=unread_rooms, head=head)] if unread_rooms else []
    unread_counts = yield from _load_timelines(
        plans, timeline_filter, limit, ignored, also=unread, early=early
    )
    _load_heroes([p for p in plans if _sends_heroes(p)], user)
    _load_state(plans, user, state_filter, lazy=lazy)

    def fmt(event: Event) -> dict[str, Any]:
        out = format_client_event(event, device_pk=device_pk, now_ms=now_ms, include_room_id=False)
        return apply_event_fields(out, sync_filter.event_fields) if sync_filter.event_fields else out

    rooms: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    for m in side_rooms:
        rooms["join"][m.room_id] = {
            "timeline": {"events": [], "limited": False, "prev_batch": f"s{head}"},
            "state": {"events": []},
            "account_data": {"events": room_account_data(m.room_id)},
            "ephemeral": {"events": room_ephemeral(m.room_id)},
            "unread_notifications": {},
            "summary": {
                "m.joined_member_count": m.room.joined_count,
                "m.invited_member_count": m.room.invited_count,
            },
        }
    for plan in plans:
        data = room_account_data(plan.room_id)
        if (
            plan.section == "join"
            and plan.state_mode != FULL
            and not plan.timeline
            and not plan.state
            and not data
            and not room_ephemeral(plan.room_id)
        ):
            continue  # activity the user may not see or the filter drops
        entry: dict[str, Any] = {
            "timeline": {
                "events": [fmt(e) for e in plan.timeline],
                "limited": plan.limited,
                "prev_batch": f"s{plan.state_upper}",
            },
            "state": {"events": [fmt(e) for e in plan.state]},
            "account_data": {"events": data},
        }
        if plan.section == "join":
            entry["ephemeral"] = {"events": room_ephemeral(plan.room_id)}
            entry["unread_notifications"] = {}
            entry["summary"] = _summary(plan)
        rooms[plan.section][plan.room_id] = entry
    _add_unread_counts(rooms["join"], unread_counts[0] if unread_counts else {},
                       threaded=timeline_filter.unread_thread_notifications)
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
        "account_data": {
            "events": [e for e in global_data if sync_filter.account_data.allows(event_type=e["type"])]
        },
        "presence": {"events": presence.events},
        "to_device": {"events": e2ee.to_device},
        "device_lists": {"changed": e2ee.changed, "left": e2ee.left},
        "device_one_time_keys_count": e2ee.otk_counts,
    }
    if device_pk is not None:
        body["device_unused_fallback_key_types"] = e2ee.unused_fallback_types
    is_empty = not any(rooms.values()) and not body["account_data"]["events"]
    is_empty = is_empty and not e2ee.to_device and not e2ee.changed and not e2ee.left
    is_empty = is_empty and not presence.events
    joined = frozenset(m.room_id for m in memberships if m.membership == M.JOIN)
    return SyncResult(
        body=body,
        next_pos=head,
        is_empty=is_empty,
        joined_room_ids=joined,
        next_expiry_ms=min(
            (t for t in (ephemeral.next_expiry_ms, presence.next_due_ms) if t is not None), default=None
        ),
        expired_typing_rooms=ephemeral.expired_rooms,
        overdue_presence=presence.overdue,
        own_presence=presence.own,
    )


_MISSING = object()  # a read the guess did not make
# Guess only for small batches: in the long-polls one message wakes, one round trip is shared by all
# of them, and making every request's room reads twice cost more CPU than it saved.
GUESS_MAX_BATCH = 8

# Per worker: each user's joined rooms (and the positions of their joins) as their latest sync here
# found them, to make the reads that depend on them one round trip earlier next time (``_build``).
_JOINED_ROOMS: dict[int, tuple[tuple[str, int], ...]] = {}
_MAX_REMEMBERED = 100_000


def _guess_rooms() -> bool:
    """Worth it where reads go in one round trip (PostgreSQL); on SQLite each is its own execute."""
    return connection.vendor == "postgresql"


def _remember_joined_rooms(user_pk: int, rooms: tuple[tuple[str, int], ...]) -> None:
    if len(_JOINED_ROOMS) >= _MAX_REMEMBERED and user_pk not in _JOINED_ROOMS:
        _JOINED_ROOMS.clear()
    _JOINED_ROOMS[user_pk] = rooms


def _room_reads(
    request: SyncRequest,
    since: int | None,
    head: int,
    now_ms: int,
    joined_rooms: tuple[tuple[str, int], ...] | None,
    ignored: frozenset[str] = frozenset(),
) -> tuple[list[Read[Any]], Callable[[list[Any]], SyncPresence]]:
    """The reads that depend on the user's joined rooms ((room, join position) pairs): the ephemeral
    data of those the filter wants, then presence (``presence.selectors.sync_presence_reads``: the
    user's own, the room-mates'), and what makes presence of the latter's results. None: no reads."""
    if joined_rooms is None:
        return [], lambda found: SyncPresence()
    room_filter = request.sync_filter.room
    joined = [(room_id, pos) for room_id, pos in joined_rooms if room_filter.matches_room(room_id)]
    presence_reads, presence_of = sync_presence_reads(
        user_pk=request.user.pk,
        joined_room_ids=[room_id for room_id, _ in joined],
        new_room_ids=[room_id for room_id, pos in joined if since is not None and pos > since],
        since=since,
        head=head,
        now_ms=now_ms,
        presence_filter=request.sync_filter.presence,
        next_due=request.waits,
    )
    ephemeral = room_ephemeral_read(
        user_mxid=request.user.mxid,
        room_ids=[room_id for room_id, _ in joined if room_filter.ephemeral.matches_room(room_id)],
        since=since,
        head=head,
        now_ms=now_ms,
        ignored=ignored,
    )
    return [ephemeral, *presence_reads], presence_of


def _news_reads(
    request: SyncRequest,
    since: int | None,
    head: int,
    joined_rooms: tuple[tuple[str, int], ...] | None,
    limit: int,
) -> list[Read[Any]]:
    """The unread counts' and the timeline's reads of an incremental sync whose news is in the rooms
    this worker's wake-ups of ``(since, head]`` named for room events (sync/recent.py), of those the
    user was joined to at ``since``, as ``_build`` makes them once it knows the rooms with news
    (``_load_timelines``): the common case of a sync woken by, or made just after, a message. None
    without a guess of the joined rooms, or with nothing to guess."""
    if joined_rooms is None or since is None or request.full_state or since >= head:
        return []
    room_filter = request.sync_filter.room
    news = recent.rooms_between(since, head)
    rooms = sorted(
        room_id
        for room_id, joined_at in joined_rooms
        if joined_at <= since and room_id in news and room_filter.matches_room(room_id)
    )
    if not rooms:
        return []
    reads = [unread_counts_read(user_pk=request.user.pk, room_ids=rooms, head=head)]
    timeline_filter = room_filter.timeline
    in_timeline = [room_id for room_id in rooms if timeline_filter.matches_room(room_id)]
    filter_q = event_filter_q(timeline_filter)
    if limit and in_timeline and filter_q is not None and not filter_q:  # (the hand-written read)
        windows = [(room_id, since, head) for room_id in in_timeline]
        reads.append(_timeline_read(windows, limit + 1, frozenset()))
    return reads


def _identity(read: Read[Any]) -> tuple[Any, ...]:
    """What a read's rows depend on: its statement, parameters and key (``_build``'s guesses)."""
    return read.sql, tuple(tuple(p) if isinstance(p, list) else p for p in read.params), read.key


def _with_early(
    reads: list[Read[Any]], early: dict[tuple[Any, ...], list[Any]]
) -> Generator[list[Read[Any]], list[Any], list[Any]]:
    """The results of ``reads``, in order: those a guess made already (``early``: their raw rows by
    ``_identity``) parsed, the others read now, in one round trip (none if nothing is left to read)."""
    found = [early.get(_identity(read), _MISSING) if early else _MISSING for read in reads]
    missing = [read for read, rows in zip(reads, found) if rows is _MISSING]
    if any(read.sql for read in missing):
        late = iter((yield missing))
    else:  # (reads without a statement: their results need no round trip)
        late = iter([read.parse([]) for read in missing])
    return [next(late) if rows is _MISSING else read.parse(rows) for read, rows in zip(reads, found)]


def add_own_presence(result: SyncResult, *, pos: int, event: dict[str, Any], sync_filter: Filter) -> bool:
    """This sync's ``set_presence`` changed the user's presence at ``pos``, after ``result`` was read.
    When ``pos`` is the position right after the read's head, nothing else lies between them: the
    answer is completed with the user's own event and ends at ``pos`` (so the next long-poll does not
    wake up at once for it), with no second read. False otherwise (the caller reads again)."""
    if pos != result.next_pos + 1 or result.body is None:
        return False
    result.next_pos = pos
    result.body["next_batch"] = f"s{pos}"
    presence_filter = sync_filter.presence
    if presence_filter.matches_event(event) and presence_filter.limit != 0:
        events = [e for e in result.body["presence"]["events"] if e["sender"] != event["sender"]] + [event]
        if presence_filter.limit is not None:
            events = events[-presence_filter.limit :]
        result.body["presence"]["events"] = events
        result.is_empty = False
    return True


# What /sync reads of a user's memberships and their rooms (the other fields are deferred).
_MEMBERSHIP_FIELDS = ("id", "room_id", "membership", "event_id", "stream_pos", "forgotten")
_ROOM_FIELDS = ("room_id", "name", "canonical_alias", "last_stream_pos", "joined_count", "invited_count")


@cache
def _memberships_sql(merged: bool = False) -> str:
    """One user's memberships; ``merged``: those of the users ``{keys}``, each row led by its user."""
    m, r, e = (model._meta.db_table for model in (Membership, Room, Event))
    # The event by a LATERAL join: looked up by primary key for invites and knocks only (a plain LEFT
    # JOIN was planned as a hash of the whole event table while the tables had no statistics; LIMIT 1
    # keeps PostgreSQL from flattening it back into that join).
    shown = f"{m}.membership IN ('{M.INVITE}', '{M.KNOCK}')"
    if connection.vendor == "postgresql":
        event = (
            f"LEFT JOIN LATERAL (SELECT * FROM {e} WHERE {e}.id = {m}.event_id AND {shown} LIMIT 1) {e} "
            "ON TRUE"
        )
    else:  # no LATERAL in SQLite
        event = f"LEFT JOIN {e} ON {e}.id = {m}.event_id AND {shown}"
    return (
        f"SELECT {f'{m}.user_id, ' if merged else ''}{columns(Membership, _MEMBERSHIP_FIELDS)[1]}, "
        f"{columns(Room, _ROOM_FIELDS)[1]}, {columns(Event)[1]} "
        f"FROM {m} JOIN {r} ON {r}.room_id = {m}.room_id "
        f"{event} WHERE {m}.user_id {'IN ({keys})' if merged else '= %s'}"
    )


def _memberships_read(user_pk: int) -> Read[list[Membership]]:
    """Query 2: the user's memberships with their rooms, and the membership event where the answer
    shows it (invites and knocks: stripped state, the inviter). Hand-written (matrixsrv/rawsql.py):
    on every sync, where the ORM's compilation and three model instances per room cost more than
    the query; only the fields a sync reads (``_MEMBERSHIP_FIELDS``, ``_ROOM_FIELDS``). A joined
    room's event is not read (``m.event`` would be one more query: unused)."""
    return Read(
        _memberships_sql(), [user_pk], _parse_memberships, InMerge(_memberships_sql(merged=True)), user_pk
    )


def _parse_memberships(rows: list[tuple[Any, ...]]) -> list[Membership]:
    out = []
    for row in rows:
        membership, i = instance(Membership, row, 0, _MEMBERSHIP_FIELDS)
        # Related objects put in the instance's cache as the ORM's select_related does, not through
        # the descriptor (its checks were a tenth of an incremental sync's CPU for 50 rooms).
        related = membership._state.fields_cache
        related["room"], i = instance(Room, row, i, _ROOM_FIELDS)
        if row[i] is not None:
            related["event"] = instance(Event, row, i)[0]
        out.append(membership)
    return out


@cache
def _account_data_sql(merged: bool = False) -> str:
    """One user's account data; ``merged``: the users ``{keys}``', each row led by its user."""
    t = AccountData._meta.db_table
    return (
        f"SELECT {'user_id, ' if merged else ''}room_id, type, content, stream_pos FROM {t} "
        f"WHERE user_id {'IN ({keys})' if merged else '= %s'} "
        f"AND ((stream_pos > %s AND stream_pos <= %s) OR (room_id IS NULL AND type = %s)) ORDER BY stream_pos"
    )


_AccountData = tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], frozenset[str]]


def _account_data_read(user: User, since: int | None, head: int) -> Read[_AccountData]:
    """Query 9: the account data to send (changed in ``(since, head]``; all of it up to ``head`` in
    an initial sync) as events, global and by room, and whom the user ignores now (read whatever its
    position, so a change takes effect at once). Hand-written: on every sync."""
    bounds = (-1 if since is None else since, head, IGNORED_USER_LIST)
    return Read(
        _account_data_sql(),
        [user.pk, *bounds],
        partial(_parse_account_data, user, since, head),
        InMerge(_account_data_sql(merged=True), after=bounds),
        user.pk,
    )


def _parse_account_data(user: User, since: int | None, head: int, raw: list[tuple[Any, ...]]) -> _AccountData:
    rows = [(room_id, type_, json_value(content), pos) for room_id, type_, content, pos in raw]
    global_data: list[dict[str, Any]] = []
    room_data: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ignored: frozenset[str] = frozenset()
    for room_id, type_, content, pos in rows:
        if room_id is None and type_ == IGNORED_USER_LIST:
            ignored = ignored_users_in(content, own_mxid=user.mxid)
        if pos > head or (since is not None and pos <= since):
            continue
        event = {"type": type_, "content": content}
        if room_id is None:
            global_data.append(event)
        else:
            room_data[room_id].append(event)
    if since is None and not any(e["type"] == PUSH_RULES for e in global_data):
        # Never changed: the default rules, synthesized (spec: clients get m.push_rules on sync).
        global_data.append({"type": PUSH_RULES, "content": default_global_account_data(user, PUSH_RULES)})
    return global_data, room_data, ignored


def _add_unread_counts(joined: dict[str, dict[str, Any]], counts: dict[str, Any], *, threaded: bool) -> None:
    """``unread_notifications`` (and, when the filter asks, ``unread_thread_notifications``) of the
    joined rooms in the answer, from ``counts`` (push.selectors.unread_counts_read, read with the
    timelines for every joined room the answer may hold). A room in the answer because the user's own
    receipt moved gets its lowered counts here."""
    for room_id, entry in joined.items():
        unread = counts.get(room_id, NO_UNREAD)
        if threaded:
            entry["unread_notifications"] = unread.main()
            entry["unread_thread_notifications"] = unread.threads()
        else:
            entry["unread_notifications"] = unread.total()


def _rooms_with_news(
    memberships: list[Membership], since: int | None, full_state: bool, include_leave: bool
) -> list[Membership]:
    """The memberships whose rooms may appear under ``join`` or ``leave`` (``_plan_rooms``)."""

    def has_news(m: Membership) -> bool:
        if m.membership == M.JOIN:
            return since is None or full_state or m.stream_pos > since or m.room.last_stream_pos > since
        if m.membership in (M.LEAVE, M.BAN) and not m.forgotten:
            return (since is None and include_leave) or (since is not None and m.stream_pos > since)
        return False

    return [m for m in memberships if has_news(m)]


def _plan_rooms(
    candidates: list[Membership],
    visibilities: dict[str, RoomVisibility],
    since: int | None,
    head: int,
    full_state: bool,
) -> list[_RoomPlan]:
    """Which rooms appear under ``join`` and ``leave``, and what each of them gets (module docstring)."""
    plans: list[_RoomPlan] = []
    for m in candidates:
        seen = visibilities[m.room_id]
        # Joined at ``since`` and never anything else after it (a leave and rejoin in between counts
        # as joining anew: the client's copy of the room is stale in ways a delta can't describe).
        joined_at_since = (
            since is not None
            and seen.membership_at(since) == M.JOIN
            and all(
                ms == M.JOIN
                for p, ms in zip(seen.positions, seen.memberships)
                if p > since and p < m.stream_pos
            )
        )
        if m.membership == M.JOIN:
            if since is None or not joined_at_since:  # initial sync, or joined since: everything
                plans.append(_RoomPlan(m.room, m, "join", None, head, FULL, seen))
            else:
                plans.append(_RoomPlan(m.room, m, "join", since, head, FULL if full_state else DELTA, seen))
            continue
        upper = m.stream_pos  # nothing after the leave
        if since is None:
            plans.append(_RoomPlan(m.room, m, "leave", None, upper, FULL, seen))
        elif joined_at_since:
            plans.append(_RoomPlan(m.room, m, "leave", since, upper, FULL if full_state else DELTA, seen))
        elif any(since < p <= upper and ms == M.JOIN for p, ms in zip(seen.positions, seen.memberships)):
            plans.append(_RoomPlan(m.room, m, "leave", None, upper, FULL, seen))  # joined and left since
        else:
            plans.append(_RoomPlan(m.room, m, "leave", since, upper, NO_STATE, seen))  # never in the room
    return plans


# -- timelines -------------------------------------------------------------------------------------


def _bounded(rooms: list[tuple[str, int | None, int]]) -> Q:
    """Rows of these rooms with ``lower < stream_pos <= upper`` per room, as a WHERE clause whose size
    does not grow with the number of rooms that share a ``lower`` (a long OR chain would exceed
    SQLite's expression depth): rooms are grouped by ``lower``, and differing ``upper`` bounds are a
    CASE on the room."""
    by_lower: dict[int | None, dict[str, int]] = defaultdict(dict)
    for room_id, lower, upper in rooms:
        by_lower[lower][room_id] = upper
    parts: list[Q] = []
    for lower, uppers in by_lower.items():
        clause = Q(room_id__in=sorted(uppers))
        if lower is not None:
            clause &= Q(stream_pos__gt=lower)
        if len(set(uppers.values())) == 1:
            clause &= Q(stream_pos__lte=next(iter(uppers.values())))
        else:
            clause &= Q(
                stream_pos__lte=Case(
                    *(When(room_id=room_id, then=Value(upper)) for room_id, upper in sorted(uppers.items())),
                    output_field=BigIntegerField(),
                )
            )
        parts.append(clause)
    return reduce(or_, parts)


def _load_timelines(
    plans: list[_RoomPlan],
    timeline_filter: RoomEventFilter,
    limit: int,
    ignored: frozenset[str] = frozenset(),
    also: list[Read[Any]] | None = None,
    early: dict[tuple[Any, ...], list[Any]] | None = None,
) -> Generator[list[Read[Any]], list[Any], list[Any]]:
    """Every planned room's newest ``limit`` visible events in its window, in one windowed query.
    Non-state events of ``ignored`` senders are left out (in SQL: they don't count against the window).
    ``also``: other reads to make in the same round trip; their results are returned. ``early``: reads
    a guess made already (``_with_early``), not made again.

    One more row than asked is read per room to know whether the timeline is ``limited``. Rows the
    user may not see (history visibility) are dropped afterwards; they count against the window, so
    a room with hidden history may show fewer events, with ``limited`` set and a ``prev_batch``
    that pages on through /messages (which skips the hidden events).
    """
    also = also or []
    early = early or {}
    filter_q = event_filter_q(timeline_filter)
    wanted = [p for p in plans if timeline_filter.matches_room(p.room_id)]
    if limit == 0 or filter_q is None or not wanted:
        for plan in wanted:  # events happened in the window, none are shown
            plan.limited = limit == 0 and min(plan.upper, plan.room.last_stream_pos) > (plan.lower or 0)
        return (yield from _with_early(also, early))
    unfiltered = timeline_filter.is_unrestricted
    windows = [(p.room_id, p.lower, p.upper) for p in wanted]
    rows: Iterable[Event]
    if not filter_q:  # no type, sender or URL condition (the common case): hand-written, built here
        rows, *found = yield from _with_early([_timeline_read(windows, limit + 1, ignored), *also], early)
    else:
        found = yield from _with_early(also, early)
        if ignored:
            filter_q &= ~Q(sender__in=sorted(ignored), state_key__isnull=True)
        rows = (
            Event.objects.filter(_bounded(windows) & filter_q)
            .annotate(rn=Window(RowNumber(), partition_by=[F("room_id")], order_by=F("stream_pos").desc()))
            .filter(rn__lte=limit + 1)
            .order_by("stream_pos")
        )
    by_room: dict[str, list[Event]] = defaultdict(list)
    for event in rows:
        by_room[event.room_id].append(event)
    for plan in wanted:
        events = by_room.get(plan.room_id, [])
        if len(events) > limit:
            plan.limited = True
            events = events[-limit:]
        plan.timeline = [e for e in events if plan.visibility.can_see(e) and _allows(timeline_filter, e)]
        plan.complete = unfiltered and not plan.limited and len(plan.timeline) == len(events)
    return found


def _timeline_read(
    windows: list[tuple[str, int | None, int]], per_room: int, ignored: frozenset[str]
) -> Read[list[Event]]:
    """The newest ``per_room`` events of each room's window ``lower < stream_pos <= upper``, oldest
    first: the windowed query of ``_load_timelines`` without a filter's conditions, written by hand
    (on every sync with news, where the ORM compiled it for longer than PostgreSQL ran it). The
    WHERE clause is ``_bounded``'s: rooms grouped by ``lower``, differing ``upper``s as a CASE."""
    by_lower: dict[int | None, dict[str, int]] = defaultdict(dict)
    for room_id, lower, upper in windows:
        by_lower[lower][room_id] = upper
    parts, params = [], []
    for lower, uppers in by_lower.items():
        rooms = sorted(uppers)
        clause = f"room_id IN ({', '.join(['%s'] * len(rooms))})"
        params += rooms
        if lower is not None:
            clause += " AND stream_pos > %s"
            params.append(lower)
        if len(set(uppers.values())) == 1:
            clause += " AND stream_pos <= %s"
            params.append(next(iter(uppers.values())))
        else:
            clause += f" AND stream_pos <= CASE room_id{' WHEN %s THEN %s' * len(rooms)} END"
            for room_id in rooms:
                params += [room_id, uppers[room_id]]
        parts.append(f"({clause})")
    where = " OR ".join(parts)
    if ignored:
        senders = sorted(ignored)
        where = f"({where}) AND NOT (sender IN ({', '.join(['%s'] * len(senders))}) AND state_key IS NULL)"
        params += senders
    sql = (
        f"SELECT {_plain_event_columns()} FROM (SELECT {columns(Event)[1]}, ROW_NUMBER() OVER (PARTITION BY "
        f"room_id ORDER BY stream_pos DESC) AS rn FROM {Event._meta.db_table} WHERE {where}) w "
        f"WHERE rn <= %s ORDER BY stream_pos"
    )
    return Read(sql, [*params, per_room], _parse_events)


@cache
def _plain_event_columns() -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(Event._meta.get_field(name).column) for name in columns(Event)[0])


def _parse_events(rows: list[tuple[Any, ...]]) -> list[Event]:
    return [instance(Event, row)[0] for row in rows]



def _allows(event_filter: RoomEventFilter, event: Event) -> bool:
    return event_filter.allows(
        event_type=event.type,
        sender=event.sender,
        room_id=event.room_id,
        content=event.content if isinstance(event.content, dict) else None,
    )


# -- state -----------------------------------------------------------------------------------------


def _load_state(plans: list[_RoomPlan], user: User, state_filter: RoomEventFilter, *, lazy: bool) -> None:
    """Each room's ``state``: what the client needs, with the timeline, to know the room's state.

    The spec's ``state`` is the state at the *start* of the timeline (FULL), or its changes since
    ``since`` (DELTA), minus what the timeline holds. But a timeline may leave out state changes that
    happen within it (a ``types`` filter, history the user may not see): for such a key the value at
    the *end* of the timeline is sent instead, so the client's state is right once it has applied the
    timeline (Synapse does the same: its ``state`` is start ∪ end, minus the timeline).

    FULL: the current state (one query); keys whose current event lies after the timeline's start are
    looked up at the start and at the end of the window (query 7). DELTA (unless the timeline holds
    every event since ``since``): the newest event per key before the timeline and within it, after
    ``since`` (query 7).

    Lazy-loading members: FULL rooms get only the member events of the timeline's senders, of the
    heroes and of the user; DELTA rooms get every membership change of the gap (the spec: "MUST return
    membership events for events in the gap") plus the senders' and heroes' member events (sent
    again: which ones a client already has is not tracked, as with ``include_redundant_members``).
    """
    plans = [p for p in plans if p.state_mode != NO_STATE and state_filter.matches_room(p.room_id)]
    if not lazy and all(p.state_mode == DELTA and p.complete for p in plans):
        return  # the timelines hold every event since ``since``: no state changed outside them
    # The type conditions go into SQL; sender and url conditions are per event and are checked in
    # Python after the state at the point is known (filtering first would resurrect older values).
    type_q = event_filter_q(replace(state_filter, senders=None, not_senders=(), contains_url=None))
    if not plans or type_q is None or (state_filter.senders is not None and not state_filter.senders):
        return
    members_of: dict[str, set[str]] = {}
    if lazy:
        for p in plans:
            members_of[p.room_id] = (
                p.senders | set(p.heroes or ()) | ({user.mxid} if p.state_mode == FULL else set())
            )
    all_members = sorted(set().union(*members_of.values())) if lazy else []

    def key_wanted(plan: _RoomPlan, event_type: str, state_key: str) -> bool:
        return not lazy or event_type != EventTypes.MEMBER or state_key in members_of[plan.room_id]

    current: dict[str, dict[StateKey, Event]] = defaultdict(dict)  # FULL: unchanged since the start
    lookups: dict[str, set[StateKey]] = defaultdict(set)  # keys wanted at the start and at the end
    full = {p.room_id: p for p in plans if p.state_mode == FULL}
    if full:
        rows = Event.objects.filter(
            pk__in=CurrentState.objects.filter(room_id__in=sorted(full)).values("event_id")
        ).filter(type_q)
        if lazy:
            rows = rows.filter(~Q(type=EventTypes.MEMBER) | Q(state_key__in=all_members))
        for event in rows:
            plan = full[event.room_id]
            key = (event.type, event.state_key or "")
            if not key_wanted(plan, *key):
                continue
            if event.stream_pos <= plan.state_upper:
                current[plan.room_id][key] = event
            else:
                lookups[plan.room_id].add(key)  # changed in (or after) the timeline
    delta = [p for p in plans if p.state_mode == DELTA]
    if lazy:
        for plan in delta:
            lookups[plan.room_id] |= {(EventTypes.MEMBER, mxid) for mxid in members_of[plan.room_id]}
    lookups = {room_id: keys for room_id, keys in lookups.items() if keys}
    gaps = [p for p in delta if not p.complete and p.lower is not None]
    starts, ends = _state_at_start_and_end(plans, gaps, lookups, type_q)

    for plan in plans:
        in_timeline = {e.pk for e in plan.timeline}
        room_starts, room_ends = starts.get(plan.room_id, {}), ends.get(plan.room_id, {})
        asked = lookups.get(plan.room_id, set())
        chosen: dict[StateKey, Event] = dict(current.get(plan.room_id, {}))
        lower = plan.lower if plan.state_mode == DELTA and plan.lower is not None else -1
        # FULL: the keys looked up; DELTA: changes after ``since``, and what lazy-loading asks for.
        keys = asked if plan.state_mode == FULL else asked | set(room_ends) | set(room_starts)
        for key in keys:
            start, end = room_starts.get(key), room_ends.get(key)
            if end is not None and end.pk not in in_timeline:
                chosen[key] = end  # changed within the timeline, but the timeline doesn't show it
            elif start is not None and (start.stream_pos > lower or key in asked):
                chosen[key] = start
        plan.state = sorted(
            (e for e in chosen.values() if e.pk not in in_timeline and _allows(state_filter, e)),
            key=lambda e: e.stream_pos,
        )


def _state_at_start_and_end(
    plans: list[_RoomPlan], gaps: list[_RoomPlan], lookups: dict[str, set[StateKey]], type_q: Q
) -> tuple[dict[str, dict[StateKey, Event]], dict[str, dict[StateKey, Event]]]:
    """Query 7: per room and state key, the newest event at or before the timeline's start
    (``state_upper``) and the newest one after it, up to the window's end (``upper``).

    Rows come from the gap of each DELTA room (every key changed after ``lower``) and from the keys
    in ``lookups`` (a superset: every type with every state key in every room of ``lookups``, since
    per-room ORs would outgrow SQLite's expression depth; callers pick the keys they asked for). One
    windowed query, partitioned by (room, type, state_key, before-or-after the start).
    """
    starts: dict[str, dict[StateKey, Event]] = defaultdict(dict)
    ends: dict[str, dict[StateKey, Event]] = defaultdict(dict)
    if not lookups and not gaps:
        return starts, ends
    by_room = {p.room_id: p for p in plans}
    where: list[Q] = []
    if gaps:
        where.append(_bounded([(p.room_id, p.lower, p.upper) for p in gaps]))
    if lookups:
        where.append(
            Q(
                room_id__in=sorted(lookups),
                type__in=sorted({t for keys in lookups.values() for t, _ in keys}),
                state_key__in=sorted({k for keys in lookups.values() for _, k in keys}),
            )
            & _bounded([(room_id, None, by_room[room_id].upper) for room_id in lookups])
        )
    rooms = sorted({p.room_id for p in gaps} | set(lookups))
    start_pos = Case(
        *(When(room_id=room_id, then=Value(by_room[room_id].state_upper)) for room_id in rooms),
        output_field=BigIntegerField(),
    )
    after_start = Case(When(stream_pos__gt=start_pos, then=Value(1)), default=Value(0))
    rows = (
        Event.objects.filter(reduce(or_, where), state_key__isnull=False)
        .filter(type_q)
        .annotate(
            rn=Window(
                RowNumber(),
                partition_by=[F("room_id"), F("type"), F("state_key"), after_start],
                order_by=F("stream_pos").desc(),
            )
        )
        .filter(rn=1)
    )
    for event in rows:
        plan = by_room[event.room_id]
        key = (event.type, event.state_key or "")
        if event.stream_pos > plan.upper:
            continue
        (starts if event.stream_pos <= plan.state_upper else ends)[plan.room_id][key] = event
    return starts, ends


# -- summaries, invites ------------------------------------------------------------------------------


def _sends_heroes(plan: _RoomPlan) -> bool:
    """``m.heroes`` goes with unnamed joined rooms when the client may not know them yet: full state,
    or a membership change in the timeline or (limited) in the gap. (Spec: "If there are no changes
    since the last sync, this field may be omitted.")"""
    if plan.section != "join" or plan.room.name or plan.room.canonical_alias:
        return False
    return plan.state_mode == FULL or plan.limited or any(e.type == EventTypes.MEMBER for e in plan.timeline)


def _load_heroes(plans: list[_RoomPlan], user: User) -> None:
    """Up to five other members per room: the first joined or invited ones by stream order; when
    there are none, the first who left or were banned (the spec's ``m.heroes``). One query."""
    if not plans:
        return
    active = Q(membership__in=[M.JOIN, M.INVITE])
    rows = (
        Membership.objects.filter(
            room_id__in=[p.room_id for p in plans], membership__in=[M.JOIN, M.INVITE, M.LEAVE, M.BAN]
        )
        .exclude(mxid=user.mxid)
        .annotate(
            active=Case(When(active, then=Value(0)), default=Value(1)),
            rn=Window(
                RowNumber(),
                partition_by=[F("room_id")],
                order_by=[Case(When(active, then=Value(0)), default=Value(1)).asc(), F("stream_pos").asc()],
            ),
        )
        .filter(rn__lte=MAX_HEROES)
        .order_by("room_id", "rn")
        .values_list("room_id", "mxid", "active")
    )
    found: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for room_id, mxid, rank in rows:
        found[room_id].append((mxid, rank))
    for plan in plans:
        members = found.get(plan.room_id, [])
        best = min((rank for _, rank in members), default=0)
        plan.heroes = [mxid for mxid, rank in members if rank == best]


def _summary(plan: _RoomPlan) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "m.joined_member_count": plan.room.joined_count,
        "m.invited_member_count": plan.room.invited_count,
    }
    if plan.heroes is not None:
        summary["m.heroes"] = plan.heroes
    return summary


def _strip(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "state_key": event.state_key or "",
        "sender": event.sender,
        "content": event.content,
    }


def _stripped_state(room_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    ids = CurrentState.objects.filter(room_id__in=list(room_ids), type__in=STRIPPED_STATE_TYPES).values(
        "event_id"
    )
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in Event.objects.filter(pk__in=ids).order_by("stream_pos"):
        out[event.room_id].append(_strip(event))
    return out
