"""Reads of typing notifications and receipts for /sync (called by sync.selectors): one query,
whatever the number of rooms.

Typing and membership: only members who are joined *now* are shown typing. A user who leaves, is
kicked or banned while typing keeps a ``Typing`` row (``rooms`` may not import ``ephemeral``, and a
hook called from the membership write path would be a signal in disguise, DESIGN.md §4.1.6), so the
read checks each typer's current membership in the same query (a correlated ``EXISTS`` on the
``Membership`` unique key). A row of a departed typer that is not yet announced makes its room's
typing set count as changed, so the others get the set without them in the same sync that brings the
leave; and it is reported with the expired rows, so the sync view's ``expire_typing`` clears it at a
new position (which also keeps a quick re-join from showing the old row again).

The query is hand-written (``_ephemeral_sql``): it runs on every /sync with joined rooms, where the
ORM's compilation of the union cost more than the query itself (matrixsrv/rawsql.py)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from django.db import connection

from ephemeral.models import Receipt, Typing
from events.pdu import Membership as M
from matrixsrv.rawsql import Read, one_of
from rooms.models import Membership

TYPING = "m.typing"
RECEIPT = "m.receipt"
READ = "m.read"
READ_PRIVATE = "m.read.private"
_TYPING_ROW, _RECEIPT_ROW = 0, 1


@dataclass
class RoomEphemeral:
    """Each room's ephemeral events for one sync, and what the long-poll needs about typing expiry."""

    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The earliest expiry (ms since the epoch) of someone typing in these rooms: a waiting /sync must
    # re-read then, so the expiry reaches its client on time without any request to trigger it.
    next_expiry_ms: int | None = None
    # Rooms with typing rows that are expired, or of a user no longer joined, whose change is not
    # announced yet (ephemeral.actions.expire_typing clears them).
    expired_rooms: frozenset[str] = frozenset()


def room_ephemeral_read(
    *,
    user_mxid: str,
    room_ids: list[str],
    since: int | None,
    head: int,
    now_ms: int,
    ignored: frozenset[str] = frozenset(),
) -> Read[RoomEphemeral]:
    """``m.typing`` for the rooms whose typing set changed in ``(since, head]`` (initial sync: where
    someone is typing), with the whole current set; ``m.receipt`` with the receipts changed in
    ``(since, head]`` (initial sync: all of them, each being the user's latest). Private receipts go to
    their owner only; ignored users' typing and receipts are not sent. Only joined members are shown
    typing; a room whose typer left (unannounced) counts as changed (see the module docstring).
    A ``Read`` (matrixsrv/rawsql.py): /sync batches it with the other reads of a wake-up. Its
    statement does not name the user (others' private receipts are read and left out here), so the
    long-polls one message wakes, in the same rooms from the same ``since``, share it."""
    if not room_ids:
        return Read("", (), lambda rows: RoomEphemeral())

    # One query (UNION ALL): every typing row that may matter (active, or changed after ``since``)
    # and the receipts to send. Columns: kind, room, user, expiry | ts, position, type, thread, event,
    # and for typing rows whether the typer is joined now (receipts: always true, unused).
    rooms_in, rooms = one_of(room_ids)
    typing_sql, receipt_sql = _ephemeral_sql(since is None)
    sql = typing_sql.format(rooms=rooms_in) + " UNION ALL " + receipt_sql.format(rooms=rooms_in)
    params: list[Any] = [M.JOIN, *rooms]
    if since is not None:
        params.append(since)
    params += [*rooms, head]
    if since is not None:
        params.append(since)
    return Read(
        sql, params,
        partial(
            _parse_ephemeral, user_mxid=user_mxid, since=since, head=head, now_ms=now_ms, ignored=ignored
        ),
    )


def _parse_ephemeral(
    rows: list[tuple[Any, ...]],
    *,
    user_mxid: str,
    since: int | None,
    head: int,
    now_ms: int,
    ignored: frozenset[str],
) -> RoomEphemeral:
    result = RoomEphemeral()
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    typing_now: dict[str, list[str]] = defaultdict(list)
    changed: set[str] = set()
    expired: set[str] = set()
    next_expiry: int | None = None
    content: dict[str, dict[str, Any]] = defaultdict(dict)
    for kind, room_id, mxid, number, pos, receipt_type, thread_id, event_id, joined in sorted(
        rows, key=lambda r: r[4]
    ):
        if kind == _TYPING_ROW:
            if since is not None and since < pos <= head:
                changed.add(room_id)
            if not joined:
                if number > 0:  # left while typing, not announced yet: the set without them, now
                    changed.add(room_id)
                    expired.add(room_id)
            elif number > now_ms:
                next_expiry = number if next_expiry is None else min(next_expiry, number)
                if mxid not in ignored:
                    typing_now[room_id].append(mxid)
            elif number > 0:
                expired.add(room_id)
        elif mxid not in ignored and (receipt_type != READ_PRIVATE or mxid == user_mxid):
            data: dict[str, Any] = {"ts": number}
            if thread_id:
                data["thread_id"] = thread_id
            # Several threads' receipts of one user on one event: the last one written wins (rare).
            content[room_id].setdefault(event_id, {}).setdefault(receipt_type, {})[mxid] = data
    for room_id in sorted(set(typing_now) if since is None else changed):
        events[room_id].append({"type": TYPING, "content": {"user_ids": typing_now.get(room_id, [])}})
    for room_id, room_content in content.items():
        events[room_id].append({"type": RECEIPT, "content": room_content})

    result.events = dict(events)
    result.next_expiry_ms = next_expiry
    result.expired_rooms = frozenset(expired)
    return result


@cache
def _ephemeral_sql(initial: bool) -> tuple[str, str]:
    """The two halves of ``room_ephemeral_read``'s UNION ALL, each with a ``{rooms}`` slot for the
    rooms' condition (``rawsql.one_of``). Parameters, in order: ``join``, the room IDs, ``since``
    (incremental only); the room IDs, ``head``, ``since`` (incremental only). Built once per shape
    from the models' metadata."""
    quote = connection.ops.quote_name
    typing, receipt, member = (quote(model._meta.db_table) for model in (Typing, Receipt, Membership))

    def col(model: Any, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    t_room, t_mxid = col(Typing, "room"), col(Typing, "mxid")
    t_exp, t_pos = col(Typing, "expires_at_ms"), col(Typing, "stream_pos")
    r_room, r_pos = col(Receipt, "room"), col(Receipt, "stream_pos")
    r_type = col(Receipt, "receipt_type")
    m_room, m_mxid = col(Membership, "room"), col(Membership, "mxid")
    m_membership = col(Membership, "membership")
    joined_now = (
        f"EXISTS (SELECT 1 FROM {member} m WHERE m.{m_room} = t.{t_room} AND m.{m_mxid} = t.{t_mxid} "
        f"AND m.{m_membership} = %s)"
    )
    typing_sql = (
        f"SELECT {_TYPING_ROW}, t.{t_room}, t.{t_mxid}, t.{t_exp}, t.{t_pos}, '', '', '', {joined_now} "
        f"FROM {typing} t WHERE t.{t_room} {{rooms}} AND "
        + (f"t.{t_exp} > 0" if initial else f"(t.{t_exp} > 0 OR t.{t_pos} > %s)")
    )
    receipt_sql = (
        f"SELECT {_RECEIPT_ROW}, r.{r_room}, r.{col(Receipt, 'mxid')}, r.{col(Receipt, 'ts')}, r.{r_pos}, "
        f"r.{r_type}, r.{col(Receipt, 'thread_id')}, r.{col(Receipt, 'event_id')}, 1 = 1 "
        f"FROM {receipt} r WHERE r.{r_room} {{rooms}} AND r.{r_pos} <= %s"
        + ("" if initial else f" AND r.{r_pos} > %s")
    )
    return typing_sql, receipt_sql
