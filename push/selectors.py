"""Push reads: a user's effective push rules, their pushers, their notifications (``GET
/notifications``) and the unread counts /sync reports (``load_unread_counts``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.models import User
from ephemeral.models import Receipt
from events.models import Event
from matrixsrv.errors import InvalidParam
from matrixsrv.rawsql import InMerge, Read, marks
from push.models import PushAction, Pusher, PushRuleState
from push.rules import merge_ruleset
from rooms.models import Membership


def get_ruleset(user: User) -> dict[str, Any]:
    """The user's rule set in the ``GET /pushrules/`` shape: the defaults with the user's changes
    and rules merged in (one query)."""
    state = PushRuleState.objects.filter(user=user).only("overrides", "custom").first()
    if state is None:
        return merge_ruleset(user.mxid, {}, [])
    return merge_ruleset(user.mxid, state.overrides, state.custom)


def format_pusher(pusher: Pusher) -> dict[str, Any]:
    """A pusher in the ``GET /pushers`` shape; ``profile_tag`` only when set."""
    out: dict[str, Any] = {
        "pushkey": pusher.pushkey,
        "kind": pusher.kind,
        "app_id": pusher.app_id,
        "app_display_name": pusher.app_display_name,
        "device_display_name": pusher.device_display_name,
        "lang": pusher.lang,
        "data": pusher.data,
    }
    if pusher.profile_tag is not None:
        out["profile_tag"] = pusher.profile_tag
    return out


def list_pushers(user: User) -> list[dict[str, Any]]:
    """The user's pushers, oldest first, in the ``GET /pushers`` shape (one query)."""
    return [format_pusher(p) for p in Pusher.objects.filter(user=user).order_by("created_at", "id")]


# -- notifications and unread counts ------------------------------------------------------------------

MAIN_THREAD = "main"
# Receipts that mark notifications read (push.md, "Marking notifications as read"): whichever of
# the two is further ahead counts.
READ_RECEIPT_TYPES = ("m.read", "m.read.private")
DEFAULT_NOTIFICATIONS_LIMIT = 50
MAX_NOTIFICATIONS_LIMIT = 1000


def _read_upto() -> Coalesce:
    """Per push-action row: the furthest event position a read receipt covering the row's thread
    points at (an unthreaded receipt covers every thread, a threaded one only its own: receipts.md
    "Threaded read receipts"), 0 without one. A correlated subquery on the receipts' unique index."""
    receipts = (
        Receipt.objects.filter(
            user_id=OuterRef("user_id"),
            room_id=OuterRef("room_id"),
            receipt_type__in=READ_RECEIPT_TYPES,
        )
        .filter(Q(thread_id="") | Q(thread_id=OuterRef("thread_id")))
        .order_by()
        .values("user_id")
        .annotate(upto=Max("event_pos"))
        .values("upto")
    )
    return Coalesce(Subquery(receipts, output_field=BigIntegerField()), Value(0))


@dataclass(frozen=True)
class UnreadCounts:
    """A room's unread counts per thread (``"main"`` or a thread root): ``(notifications, highlights)``."""

    by_thread: dict[str, tuple[int, int]]

    def total(self) -> dict[str, int]:
        """Everything in one count: what a client that does not ask for threaded counts gets."""
        return _counts(
            sum(n for n, _ in self.by_thread.values()), sum(h for _, h in self.by_thread.values())
        )

    def main(self) -> dict[str, int]:
        return _counts(*self.by_thread.get(MAIN_THREAD, (0, 0)))

    def threads(self) -> dict[str, dict[str, int]]:
        """The threads with anything unread, keyed by thread root."""
        return {
            thread: _counts(n, h)
            for thread, (n, h) in sorted(self.by_thread.items())
            if thread != MAIN_THREAD and (n or h)
        }


def _counts(notifications: int, highlights: int) -> dict[str, int]:
    return {"notification_count": notifications, "highlight_count": highlights}


NO_UNREAD = UnreadCounts({})


def unread_counts_read(*, user_pk: int, room_ids: list[str], head: int) -> Read[dict[str, UnreadCounts]]:
    """The unread notification counts of the user's joined rooms ``room_ids``, in one grouped query.

    A notification is unread when its position is after the read receipts covering its thread
    (``_read_upto``) and after the user's current membership event: notifications from before the
    user (re)joined (an invite's, an earlier stay's) never count. Rows above ``head`` belong to the
    next sync (a count never runs ahead of the timeline it comes with); receipts are read as they
    are now, since a receipt row only moves forward. Hand-written (``_unread_sql``): it runs on most
    /syncs, and the ORM's compilation cost more than the query. A ``Read`` (matrixsrv/rawsql.py):
    /sync batches it with the other reads of a wake-up.
    """
    if not room_ids:
        return Read("", (), lambda rows: {})
    rooms = marks(len(room_ids))
    return Read(
        _unread_sql().format(rooms=rooms, user="= %s"),
        [head, *READ_RECEIPT_TYPES, user_pk, *room_ids],
        _parse_unread_counts,
        # users with the same rooms: one statement (the long-polls one message wakes)
        InMerge(_unread_sql(merged=True).format(rooms=rooms, user="IN ({keys})"),
                before=(head, *READ_RECEIPT_TYPES), after=tuple(room_ids)),
        user_pk,
    )


def _parse_unread_counts(rows: list[tuple[Any, ...]]) -> dict[str, UnreadCounts]:
    by_room: dict[str, dict[str, tuple[int, int]]] = {}
    for room_id, thread_id, notifications, highlights in rows:
        by_room.setdefault(room_id, {})[thread_id] = (notifications, highlights)
    return {room_id: UnreadCounts(threads) for room_id, threads in by_room.items()}


@cache
def _unread_sql(merged: bool = False) -> str:
    """``unread_counts_read``'s statement, ``{rooms}`` left for the rooms' placeholders and ``{user}``
    for the user's condition. Params: ``head``, the read receipt types, the user, the rooms.
    ``merged``: each row led by its user (several users: ``{user}`` is an ``IN``). The correlated
    subquery is ``_read_upto``'s. From the user's membership rows (their current join), each room's
    notifications after it (a LATERAL join: per (user, room) one range of the (user, room, position)
    index, the order the planner also took before it had statistics, which it didn't always)."""
    quote = connection.ops.quote_name

    def names(model: Any) -> dict[str, str]:
        return {f.attname: quote(f.column) for f in model._meta.concrete_fields}

    a, r, m = names(PushAction), names(Receipt), names(Membership)
    t_action, t_receipt = quote(PushAction._meta.db_table), quote(Receipt._meta.db_table)
    t_member = quote(Membership._meta.db_table)
    read_upto = (
        f"COALESCE((SELECT MAX(r.{r['event_pos']}) FROM {t_receipt} r "
        f"WHERE r.{r['room_id']} = a.{a['room_id']} AND r.{r['user_id']} = a.{a['user_id']} "
        f"AND r.{r['receipt_type']} IN ({', '.join(['%s'] * len(READ_RECEIPT_TYPES))}) "
        f"AND (r.{r['thread_id']} = '' OR r.{r['thread_id']} = a.{a['thread_id']})), 0)"
    )
    user = f"m.{m['user_id']}, " if merged else ""
    notifications = (
        f"a.{a['user_id']} = m.{m['user_id']} AND a.{a['room_id']} = m.{m['room_id']} "
        f"AND a.{a['stream_pos']} <= %s AND a.{a['stream_pos']} > m.{m['stream_pos']} "
        f"AND a.{a['stream_pos']} > {read_upto}"
    )
    if connection.vendor == "postgresql":
        joined = (
            f"JOIN LATERAL (SELECT a.{a['thread_id']}, a.{a['highlight']} FROM {t_action} a "
            f"WHERE {notifications}) a ON TRUE"
        )
    else:  # no LATERAL in SQLite; the same conditions, in the same order
        joined = f"JOIN {t_action} a ON {notifications}"
    return (
        f"SELECT {user}m.{m['room_id']}, a.{a['thread_id']}, COUNT(*), "
        f"COUNT(CASE WHEN a.{a['highlight']} THEN 1 END) FROM {t_member} m {joined} "
        f"WHERE m.{m['user_id']} {{user}} AND m.{m['room_id']} IN ({{rooms}}) "
        f"GROUP BY {user}m.{m['room_id']}, a.{a['thread_id']}"
    )


@dataclass(frozen=True)
class Notification:
    """One entry of ``GET /notifications``; the view puts ``event`` in the client format."""

    actions: list[Any]
    event: Event
    read: bool
    room_id: str
    ts: int


@dataclass(frozen=True)
class NotificationPage:
    notifications: list[Notification]
    next_token: str | None


def list_notifications(
    *, user: User, from_token: str | None, limit: int | None, only_highlight: bool
) -> NotificationPage:
    """``GET /notifications``: the user's notifications, newest first, ``limit`` per page (default
    50, at most 1000). The token is the position of the last one returned; the next page continues
    below it. ``read``: a read receipt covering the notification's thread is at or past it.
    One query (with its events)."""
    size = DEFAULT_NOTIFICATIONS_LIMIT if limit is None else min(limit, MAX_NOTIFICATIONS_LIMIT)
    rows = PushAction.objects.filter(user=user)
    if from_token is not None:
        rows = rows.filter(stream_pos__lt=parse_notifications_token(from_token))
    if only_highlight:
        rows = rows.filter(highlight=True)
    page = list(
        rows.annotate(read_upto=_read_upto())
        .select_related("event")
        .order_by("-stream_pos")[: size + 1]
    )
    notifications = [
        Notification(
            actions=row.actions,
            event=row.event,
            read=row.stream_pos <= row.read_upto,
            room_id=row.room_id,
            ts=row.ts,
        )
        for row in page[:size]
    ]
    more = len(page) > size and size > 0
    return NotificationPage(notifications, str(page[size - 1].stream_pos) if more else None)


def parse_notifications_token(token: str) -> int:
    """A ``next_token`` of ours: a position in canonical decimal; anything else is 400."""
    if not token.isascii() or not token.isdigit() or (len(token) > 1 and token[0] == "0") or len(token) > 18:
        raise InvalidParam("Invalid 'from' token")
    return int(token)
