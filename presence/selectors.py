"""Reads of presence: the /sync section (one query, called by sync.selectors) and GET /presence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import connection

from accounts.models import User
from matrixsrv.errors import Forbidden, NotFound
from matrixsrv.rawsql import PLANNED_EACH_TIME, InMerge, Read, fetch_all, fetch_one, marks, one_of
from presence import rules
from presence.models import Presence
from rooms.models import Membership
from sync.filters import EventFilter

JOIN = "join"
_ROW, _NEXT_DUE = 0, 1


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


def sync_presence_reads(
    *,
    user_pk: int,
    joined_room_ids: list[str],
    new_room_ids: list[str],
    since: int | None,
    head: int,
    now_ms: int,
    presence_filter: EventFilter,
    next_due: bool = True,
) -> tuple[list[Read[list[tuple[Any, ...]]]], Callable[[list[list[tuple[Any, ...]]]], SyncPresence]]:
    """``m.presence`` events for the sync's top-level ``presence`` section: the user's own presence and
    that of everyone sharing a joined room with them, when it changed in ``(since, head]`` (initial
    sync: every such user with a presence row), or when they came to share a room after ``since``
    (``new_room_ids``: rooms the user joined after ``since``; or members who joined one of the user's
    rooms after it), or when its change is due but not announced yet. The content is derived at
    ``now_ms``, so ``last_active_ago`` is current (the spec: "must be up to date whenever the server
    gives a presence event").

    Two reads (matrixsrv/rawsql.py), and what makes the answer of their rows: the user's own row, and
    (with rooms) the room-mates' rows with the earliest future ``due_ms`` among them (a UNION ALL).
    Hand-written (``_mates_sql``), as it runs on every /sync and the ORM's compilation cost more than
    it. The room-mates' statement does not name the user: the long-polls one message wakes (same
    rooms, same ``since``) share it, and their own rows are one merged statement.

    ``next_due``: the earliest future change among the room-mates is wanted (``next_due_ms``: a
    long-poll that finds nothing waits until then). Without it, an incremental sync in rooms the user
    was in at ``since`` reads only the room-mates whose presence is news (``_news_of_mates_sql``).
    """
    rooms = sorted(joined_room_ids)
    new_rooms = sorted(new_room_ids) if since is not None else []
    reads: list[Read[list[tuple[Any, ...]]]] = [
        Read(_own_sql().format(key="", user="= %s"), [user_pk], list,
             InMerge(_own_sql().format(key="p.user_id, ", user="IN ({keys})")), user_pk)
    ]
    if rooms and since is not None and not new_rooms and not next_due:
        in_rooms, room_params = one_of(rooms)
        params = [since, head, since, head, *room_params, *room_params, *room_params, now_ms]
        reads.append(Read(_news_of_mates_sql().format(rooms=in_rooms), params, list))
    elif rooms:
        in_rooms, room_params = one_of(rooms)
        in_new_rooms, new_room_params = one_of(new_rooms) if new_rooms else ("", [])
        params: list[Any] = [*room_params, *([head] if since is None else [since, head]), now_ms]
        if since is not None:
            params += [*room_params, since, *new_room_params]
        params.append(now_ms)
        sql = _mates_sql(initial=since is None, any_new_rooms=bool(new_rooms)).format(
            rooms=in_rooms, new_rooms=in_new_rooms
        )
        reads.append(Read(sql, params, list))

    def combine(found: list[list[tuple[Any, ...]]]) -> SyncPresence:
        mates = dict.fromkeys(row for part in found[1:] for row in part)  # (once each, in order)
        rows = found[0] + [row for row in mates if row[1] != user_pk]
        return _parse_sync_presence(
            rows, user_pk=user_pk, since=since, head=head, now_ms=now_ms, presence_filter=presence_filter
        )

    return reads, combine


def _parse_sync_presence(
    rows: list[tuple[Any, ...]],
    *,
    user_pk: int,
    since: int | None,
    head: int,
    now_ms: int,
    presence_filter: EventFilter,
) -> SyncPresence:
    result = SyncPresence()
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



@cache
def _names() -> dict[str, str]:
    """Quoted table and column names, from the models' metadata."""
    quote = connection.ops.quote_name
    names = {"presence": quote(Presence._meta.db_table), "membership": quote(Membership._meta.db_table)}
    for model, prefix in ((Presence, "p_"), (Membership, "m_")):
        for f in model._meta.concrete_fields:
            names[prefix + f.attname] = quote(f.column)
    return names


@cache
def _members_sql(distinct: bool = False) -> str:
    """The user pks joined to any of the rooms: ``{rooms}`` is their condition (``rawsql.one_of``)."""
    n = _names()
    return (
        f"SELECT {'DISTINCT ' if distinct else ''}m.{n['m_user_id']} FROM {n['membership']} m "
        f"WHERE m.{n['m_membership']} = '{JOIN}' AND m.{n['m_room_id']} {{rooms}}"
    )


def _columns() -> str:
    n = _names()
    return ", ".join(
        f"p.{n['p_' + c]}"
        for c in ("user_id", "mxid", "requested", "status_msg", "last_active_ms", "online_until_ms",
                  "due_ms", "stream_pos")
    )


@cache
def _own_sql() -> str:
    """The user's own presence row, ``{user}`` its condition and ``{key}`` a leading column (merged)."""
    n = _names()
    return f"SELECT {{key}}{_ROW}, {_columns()} FROM {n['presence']} p WHERE p.{n['p_user_id']} {{user}}"


@cache
def _mates_sql(*, initial: bool, any_new_rooms: bool) -> str:
    """The room-mates' presence rows to send and their earliest future change, for one shape, with
    ``{rooms}`` and ``{new_rooms}`` left for their conditions (``rawsql.one_of``). The room-mates are
    found once (a materialized CTE: the scan of the rooms' members was most of the statement's time,
    and was made twice). Params: the rooms, ``head`` (incremental: ``since``, ``head``), ``now``;
    incremental: the rooms, ``since``, the new rooms; ``now``."""
    n = _names()
    pos, due, user = f"p.{n['p_stream_pos']}", f"p.{n['p_due_ms']}", f"p.{n['p_user_id']}"
    window = f"{pos} <= %s" if initial else f"({pos} > %s AND {pos} <= %s)"
    wanted = f"{window} OR {due} <= %s"
    if not initial:
        newcomers = f"m.{n['m_stream_pos']} > %s"
        if any_new_rooms:
            newcomers = f"({newcomers} OR m.{n['m_room_id']} {{new_rooms}})"
        wanted += f" OR {user} IN ({_members_sql()} AND {newcomers})"
    mates = f"WITH mates AS MATERIALIZED ({_members_sql(distinct=True)}) "
    of_mates = f"FROM {n['presence']} p JOIN mates ON mates.{n['m_user_id']} = {user}"
    rows = f"SELECT {_ROW}, {_columns()} {of_mates} WHERE {wanted}"
    next_due = f"SELECT {_NEXT_DUE}, 0, '', '', NULL, 0, 0, MIN({due}), 0 {of_mates} WHERE {due} > %s"
    # Planned each time: the generic plan for "members of these rooms" (an array) was 3x slower.
    return f"{mates}{rows} UNION ALL {next_due}{PLANNED_EACH_TIME}"


@cache
def _news_of_mates_sql() -> str:
    """The rows of ``_mates_sql(initial=False, any_new_rooms=False)`` without the earliest future
    change: the users sharing one of the rooms ``{rooms}`` with the user whose presence changed in the
    window or who joined one of the rooms in it (driven by those few rows, through the indexes on
    position, each then checked for a room in common), and the room-mates whose change is overdue
    (from the rooms' members: overdue rows pile up for users nobody syncs with). Both plans hold for
    any number of rooms, so the statement is prepared (matrixsrv/rawsql.py); on PostgreSQL each room's
    members are one index range (a LATERAL subquery that the planner may not flatten: while the tables
    had no statistics it took every join of every user instead, or a join over every room-mate for an
    EXISTS). A user may come in several rows (``sync_presence_reads`` keeps one).
    Params: ``since``, ``head``, ``since``, ``head``, the rooms, the rooms, the rooms, ``now``."""
    n = _names()
    pos, due, user = n["p_stream_pos"], n["p_due_ms"], n["p_user_id"]
    joined = f"m.{n['m_membership']} = '{JOIN}' AND m.{n['m_room_id']} {{rooms}}"
    news = (
        f"SELECT q.{user} FROM {n['presence']} q WHERE q.{pos} > %s AND q.{pos} <= %s "
        f"UNION ALL SELECT m.{n['m_user_id']} FROM {n['membership']} m "
        f"WHERE m.{n['m_stream_pos']} > %s AND m.{n['m_stream_pos']} <= %s AND {joined}"
    )
    in_common = (
        f"SELECT 1 FROM {n['membership']} m WHERE m.{n['m_user_id']} = p.{user} AND {joined} LIMIT 1"
    )
    if connection.vendor == "postgresql":  # the rooms as one array: ``{rooms}`` is ``= ANY(%s)``
        members = (
            f"unnest(%s::varchar[]) r(room_id) JOIN LATERAL (SELECT m.{n['m_user_id']}, "
            f"m.{n['m_membership']} FROM {n['membership']} m WHERE m.{n['m_room_id']} = r.room_id "
            f"OFFSET 0) m ON TRUE WHERE m.{n['m_membership']} = '{JOIN}'"
        )
    else:
        members = f"{n['membership']} m WHERE {joined}"
    overdue = (
        f"SELECT {_ROW}, {_columns()} FROM {n['presence']} p JOIN (SELECT m.{n['m_user_id']} FROM {members}) "
        f"mates ON mates.{n['m_user_id']} = p.{user} WHERE p.{due} <= %s"
    )
    return (
        f"SELECT {_ROW}, {_columns()} FROM {n['presence']} p "
        f"WHERE p.{user} IN ({news}) AND ({in_common}) IS NOT NULL UNION ALL {overdue}"
    )


def get_presence(*, viewer: User, user_id: str, now_ms: int) -> dict[str, Any]:
    """GET /presence/{userId}/status: the presence derived now. 404 for a user this server does not
    have; 403 unless the viewer is the user or shares a joined room with them (Synapse's rule: the
    spec sends presence "to interested parties where users share a room membership")."""
    target = User.objects.filter(mxid=user_id, is_active=True).values_list("pk", flat=True).first()
    if target is None:
        raise NotFound("Unknown user")
    if target != viewer.pk and not shares_a_room(viewer.pk, target):
        raise Forbidden("You are not allowed to see their presence")
    return rules.content(load_record(target), now_ms)


ROW_WITH_TOKEN = "presence_row"  # the User attribute the token lookup fills (presence/apps.py)


def own_record(user: User) -> rules.PresenceRecord | None:
    """The user's presence record: as the request's token lookup loaded it, or read now."""
    try:
        row = getattr(user, ROW_WITH_TOKEN)
    except AttributeError:
        return load_record(user.pk)
    return row.record() if row is not None else None


def load_record(user_pk: int) -> rules.PresenceRecord | None:
    """The user's presence record, None without a row: one hand-written single-row SELECT, as it is
    read on every send (``presence.actions.record_activity``) and the ORM's compilation cost more."""
    row = fetch_one(_record_sql(), (user_pk,))
    return rules.PresenceRecord(*row) if row is not None else None


@cache
def _record_sql() -> str:
    n = _names()
    cols = ", ".join(n["p_" + c] for c in ("requested", "status_msg", "last_active_ms", "online_until_ms"))
    return f"SELECT {cols} FROM {n['presence']} WHERE {n['p_user_id']} = %s"


def shares_a_room(a_pk: int, b_pk: int) -> bool:
    """Whether both users are joined to some room (hand-written, like the other reads here)."""
    return fetch_one(_shares_sql(), (b_pk, a_pk)) is not None


@cache
def _shares_sql() -> str:
    n = _names()
    user, room, membership = n["m_user_id"], n["m_room_id"], n["m_membership"]
    return (
        f"SELECT 1 FROM {n['membership']} b WHERE b.{user} = %s AND b.{membership} = '{JOIN}' "
        f"AND b.{room} IN (SELECT a.{room} FROM {n['membership']} a "
        f"WHERE a.{user} = %s AND a.{membership} = '{JOIN}') LIMIT 1"
    )


def joined_rooms_of(user_pks: list[int]) -> list[str]:
    """The rooms whose members see these users' presence (where a change must wake /sync waiters).
    Hand-written, like the other reads here."""
    if not user_pks:
        return []
    n = _names()
    sql = (
        f"SELECT DISTINCT {n['m_room_id']} FROM {n['membership']} "
        f"WHERE {n['m_membership']} = '{JOIN}' AND {n['m_user_id']} IN ({marks(len(user_pks))})"
    )
    return sorted(room_id for (room_id,) in fetch_all(sql, list(user_pks)))
