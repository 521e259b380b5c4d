"""Writing presence (layer 3): PUT /presence, /sync's ``set_presence``, and the announcement of
changes that happen by themselves (idle, offline, ``currently_active`` ending).

Every change clients should see takes a position from the one stream counter (events/stream.py)
inside its transaction, *first*, so its lock serializes presence writers (the row is re-read under
it: no lost update between a PUT and a sync), and wakes, after commit, the /sync waiters of everyone
in the user's joined rooms and the user's own. Changes nobody sees (a renewed connection lease, a
moved ``due_ms``) are a single conditional UPDATE with no position and no wake-up.

How idle and offline reach other clients with no request from the user (the same mechanism as typing
expiry, ``ephemeral.actions.expire_typing``): a row stores ``due_ms``, the instant its derived
presence next changes (``rules.due_ms``). Every /sync read reports the earliest ``due_ms`` among the
users it can see, and the waiting long-poll wakes up then (sync/views.py); the read after that finds
the row overdue (``due_ms <= now``) and the view calls ``announce_due_presence``, which gives the
change a position and wakes everyone who shares a room with the user. Any number of workers may do
this at once: it is idempotent (the rows are re-read under the stream lock; an announced row is no
longer due), so the change is announced once. A user nobody is syncing with is announced at the next
read that sees them; GET /presence derives the state at request time anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import transaction
from django.db.models import Case, F, Value, When

from accounts.models import User
from events.notify import notify_on_commit
from events.stream import next_stream_position
from presence import rules
from presence.models import Presence
from presence.selectors import joined_rooms_of, load_record, own_record


def now_ms() -> int:
    return int(time.time() * 1000)


def _save(*, user: User, exists: bool, record: rules.PresenceRecord, pos: int, now: int) -> None:
    view = rules.shown(record, now)
    values = {
        "requested": record.requested,
        "status_msg": record.status_msg,
        "last_active_ms": record.last_active_ms,
        "online_until_ms": record.online_until_ms,
        "shown_state": view.state,
        "shown_active": view.currently_active,
        "due_ms": rules.due_ms(record, now),
        "stream_pos": pos,
    }
    if exists:
        Presence.objects.filter(user_id=user.pk).update(**values)
    else:
        Presence.objects.create(user_id=user.pk, mxid=user.mxid, **values)


def set_presence(*, user: User, presence: str, status_msg: str | None) -> int:
    """PUT /presence/{userId}/status for ``user`` (the view checks it is the caller): always a change
    clients see (the state, the status message, and the activity time, which the spec says a PUT
    updates)."""
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()  # first: serializes presence writers; the row is read under it
        current = load_record(user.pk)
        now = now_ms()
        record = rules.on_put(current, presence=presence, status_msg=status_msg, now_ms=now)
        _save(user=user, exists=current is not None, record=record, pos=pos, now=now)
        notify_on_commit(pos=pos, rooms=joined_rooms_of([user.pk]), users=[user.pk])
    return pos


def record_sync(
    *,
    user: User,
    set_presence: str,
    timeout_ms: int,
    own: rules.PresenceRecord | None,
) -> tuple[int, rules.PresenceRecord] | None:
    """A /sync with ``set_presence`` (the default is online), given the user's record as that sync's
    read found it (``SyncPresence.own``). Nothing is written, and no query made, when the user is
    already in that state with a lease that outlasts this long-poll (``rules.on_sync``); a lease
    renewal is one silent UPDATE; a change others see (coming online, going unavailable) takes a
    position and wakes the user's rooms. The position and the new record, or None."""
    now = now_ms()

    def decide(current: rules.PresenceRecord | None) -> rules.PresenceRecord | None:
        return rules.on_sync(current, set_presence=set_presence, now_ms=now, timeout_ms=timeout_ms)

    wanted = decide(own)
    if wanted is None:
        return None
    return _apply(user=user, own=own, wanted=wanted, now=now, decide=decide)


def record_activity(*, user: User) -> tuple[int, rules.PresenceRecord] | None:
    """A pro-active act of ``user`` (e.g. sending a message; ``rules.on_activity``): back online from
    idle or an explicit ``unavailable``, and ``currently_active`` kept up. One read (hand-written:
    ``selectors.load_record``, as it runs on every send); a write at most every ``ACTIVE_MS // 2`` per
    user, with a position only when what clients see changes. The position and the new record, or None.
    The record is the one the request's token lookup loaded (``selectors.own_record``): no read."""
    own = own_record(user)
    now = now_ms()

    def decide(current: rules.PresenceRecord | None) -> rules.PresenceRecord | None:
        return rules.on_activity(current, now_ms=now)

    wanted = decide(own)
    if wanted is None:
        return None
    return _apply(user=user, own=own, wanted=wanted, now=now, decide=decide)


def _apply(
    *,
    user: User,
    own: rules.PresenceRecord | None,
    wanted: rules.PresenceRecord,
    now: int,
    decide: Callable[[rules.PresenceRecord | None], rules.PresenceRecord | None],
) -> tuple[int, rules.PresenceRecord] | None:
    """Write ``wanted`` (decided on ``own``, the row as last read). Nothing clients see changes: one
    silent UPDATE, conditional on the row being as read (a concurrent PUT wins; the next request
    decides again), and a due change not announced yet stays due. Otherwise a position, the row
    re-read under its lock and ``decide`` run again on it, and a wake-up for the user's rooms."""
    if own is not None and rules.shown(own, now) == rules.shown(wanted, now):
        new_due = rules.due_ms(wanted, now)
        Presence.objects.filter(
            user_id=user.pk,
            requested=own.requested,
            last_active_ms=own.last_active_ms,
            online_until_ms=own.online_until_ms,
        ).update(
            requested=wanted.requested,
            last_active_ms=wanted.last_active_ms,
            online_until_ms=wanted.online_until_ms,
            due_ms=Case(When(due_ms__lte=now, then=F("due_ms")), default=Value(new_due)),
        )
        return None
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()
        current = load_record(user.pk)
        record = decide(current)
        if record is None:
            return None  # a concurrent request did it; the position is a harmless gap
        _save(user=user, exists=current is not None, record=record, pos=pos, now=now)
        notify_on_commit(pos=pos, rooms=joined_rooms_of([user.pk]), users=[user.pk])
    return pos, record


def announce_due_presence(*, user_pks: frozenset[int] | list[int]) -> int | None:
    """Announce the presence changes of these users that happened by themselves (``due_ms`` passed):
    one position for all of them, and a wake-up for everyone sharing a room with them. Idempotent:
    when another worker announced them first, nothing is due any more and no position is taken."""
    now = now_ms()
    due = Presence.objects.filter(user_id__in=sorted(user_pks), due_ms__lte=now)
    if not due.exists():
        return None
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()
        rows = list(due)  # under the stream lock: a concurrent announcer has committed, or waits for us
        changed: list[Presence] = []
        quiet: list[Presence] = []
        for row in rows:
            record = row.record()
            view = rules.shown(record, now)
            row.due_ms = rules.due_ms(record, now)
            if (view.state, view.currently_active) != (row.shown_state, row.shown_active):
                row.shown_state, row.shown_active, row.stream_pos = view.state, view.currently_active, pos
                changed.append(row)
            else:
                quiet.append(row)  # nothing visible (e.g. a lease renewed meanwhile): only re-arm
        if changed:
            Presence.objects.bulk_update(changed, ["shown_state", "shown_active", "due_ms", "stream_pos"])
        if quiet:
            Presence.objects.bulk_update(quiet, ["due_ms"])
        if not changed:
            return None  # the position is a harmless gap
        pks = [row.pk for row in changed]
        notify_on_commit(pos=pos, rooms=joined_rooms_of(pks), users=pks)
    return pos
