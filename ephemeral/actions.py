"""Writing typing notifications, receipts and read markers (layer 3).

Every change takes a position from the one stream counter (events/stream.py) inside its transaction
and wakes the room's /sync waiters after commit (a private receipt or a read marker: only its owner's).
The position is taken *before* the rows' read-modify-write: its lock, held until commit, serializes
writers, so upserts never race on the unique keys; what follows is a few small indexed statements.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from accounts.models import AccountData, User
from ephemeral.models import Receipt, Typing
from ephemeral.selectors import READ, READ_PRIVATE
from events.models import Event
from events.notify import notify_on_commit
from events.pdu import Membership as M
from events.stream import next_stream_position
from matrixsrv.errors import NotFound
from rooms.models import Membership
from rooms.selectors import require_joined

FULLY_READ = "m.fully_read"
RECEIPT_TYPES = frozenset({READ, READ_PRIVATE})
# A client's typing timeout is capped, so a crashed client's "typing" ends soon (Synapse: 30 s too).
MAX_TYPING_TIMEOUT_MS = 30_000
DEFAULT_TYPING_TIMEOUT_MS = 30_000


def now_ms() -> int:
    return int(time.time() * 1000)


def set_typing(*, user: User, room_id: str, typing: bool, timeout_ms: int | None = None) -> int | None:
    """Start (or renew) or stop ``user`` typing in the room; the position of the change, or None when
    the room's typing set does not change (renewing an active row only moves its expiry; stopping
    when not typing does nothing). 403 unless joined."""
    require_joined(room_id, user.mxid)
    now = now_ms()
    if typing:
        timeout = DEFAULT_TYPING_TIMEOUT_MS if timeout_ms is None else timeout_ms
        expires = now + max(0, min(timeout, MAX_TYPING_TIMEOUT_MS))
        # Still typing: only the expiry moves (the update re-checks the row, so an expiry announced
        # concurrently falls through to a real change below).
        if expires > now and Typing.objects.filter(room_id=room_id, user=user, expires_at_ms__gt=now).update(
            expires_at_ms=expires
        ):
            return None
        if expires <= now:
            expires = 0  # a zero timeout: not typing
    else:
        expires = 0
    with transaction.atomic(savepoint=False):
        if (
            not expires
            and not Typing.objects.filter(room_id=room_id, user=user, expires_at_ms__gt=0).exists()
        ):
            return None  # not typing and not shown as typing: nothing changes
        pos = next_stream_position()
        if not Typing.objects.filter(room_id=room_id, user=user).update(
            expires_at_ms=expires, stream_pos=pos
        ):
            Typing.objects.create(
                room_id=room_id, user=user, mxid=user.mxid, expires_at_ms=expires, stream_pos=pos
            )
        notify_on_commit(pos=pos, rooms=[room_id])
    return pos


def expire_typing(*, room_ids: list[str] | frozenset[str]) -> int | None:
    """Announce the typing rows of these rooms whose timeout has passed, or whose user is no longer
    joined (left, kicked or banned while typing: ephemeral.selectors explains why this is read-side):
    one new position for all of them, and a wake-up for everyone in those rooms, so every waiting
    /sync re-reads and sends the smaller typing set. Idempotent: when another worker announced them
    first there is nothing left to change and no position is taken (None)."""
    now = now_ms()
    joined = Exists(
        Membership.objects.filter(room_id=OuterRef("room_id"), mxid=OuterRef("mxid"), membership=M.JOIN)
    )
    expired = Typing.objects.filter(room_id__in=sorted(room_ids), expires_at_ms__gt=0).filter(
        Q(expires_at_ms__lte=now) | ~joined
    )
    if not expired.exists():
        return None
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()
        # Under the stream lock: a concurrent expirer has committed (and is seen here) or waits for us.
        rooms = sorted(set(expired.values_list("room_id", flat=True)))
        if not rooms:
            return None  # announced meanwhile; the position is a harmless gap
        expired.update(expires_at_ms=0, stream_pos=pos)
        notify_on_commit(pos=pos, rooms=rooms)
    return pos


@dataclass(frozen=True)
class ReceiptUpdate:
    receipt_type: str  # m.read or m.read.private
    event_id: str
    thread_id: str = ""  # "" unthreaded, "main" or a thread root's event ID


def _event_pos(room_id: str, event_id: str) -> int:
    pos = (
        Event.objects.filter(event_id=event_id, room_id=room_id).values_list("stream_pos", flat=True).first()
    )
    if pos is None:
        raise NotFound(f"Event {event_id} not found in this room")
    return pos


def set_receipts(
    *, user: User, room_id: str, receipts: Sequence[ReceiptUpdate] = (), fully_read: str | None = None
) -> int | None:
    """Set the user's receipts in the room, and its read marker (``m.fully_read`` room account data,
    content ``{"event_id": ...}``), in one transaction at one position. A receipt never moves back to
    an older event (that one is ignored). 403 unless joined; 404 for an event not in the room."""
    require_joined(room_id, user.mxid)
    event_positions = {r.event_id: _event_pos(room_id, r.event_id) for r in receipts}
    if fully_read is not None:
        _event_pos(room_id, fully_read)
    if not receipts and fully_read is None:
        return None
    ts = now_ms()
    with transaction.atomic(savepoint=False):
        pos = next_stream_position()  # first: serializes the read-modify-write below
        changed, public = fully_read is not None, False
        for r in receipts:
            key = {"room_id": room_id, "user": user, "receipt_type": r.receipt_type, "thread_id": r.thread_id}
            event_pos = event_positions[r.event_id]
            current = Receipt.objects.filter(**key).values_list("event_pos", flat=True).first()
            if current is not None and current >= event_pos:
                continue  # not ahead of the receipt the user has
            values = {"event_id": r.event_id, "event_pos": event_pos, "ts": ts, "stream_pos": pos}
            if current is None:
                Receipt.objects.create(mxid=user.mxid, **key, **values)
            else:
                Receipt.objects.filter(**key).update(**values)
            changed = True
            public = public or r.receipt_type != READ_PRIVATE
        if fully_read is not None:
            content = {"event_id": fully_read}
            if not AccountData.objects.filter(user=user, room_id=room_id, type=FULLY_READ).update(
                content=content, stream_pos=pos
            ):
                AccountData.objects.create(
                    user=user, room_id=room_id, type=FULLY_READ, content=content, stream_pos=pos
                )
        if not changed:
            return None  # every receipt was behind the user's: the position is a harmless gap
        notify_on_commit(pos=pos, rooms=[room_id] if public else [], users=[user.pk])
    return pos
