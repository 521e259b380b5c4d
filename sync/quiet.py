"""What a long-poll's read found, remembered per worker so the next long-poll from the same position
can skip its first read (DESIGN.md §4.5: the database stays the source of truth).

A client's sync loop asks again at once from the ``next_batch`` it was just given. If the stream
head has not moved since that position, nothing the client could be sent exists yet: every change a
/sync shows takes a position from the one counter (events/stream.py). Only time can change an answer
without a position (a typing notice or presence that expires), and the read reported when: its
``next_expiry_ms``. So when the head still equals ``since`` and that instant lies ahead, the read
would find nothing, and the long-poll parks at once on what this read remembered (the user's rooms,
the next expiry, the user's own presence record).

Never used to *answer*: a waiter that is woken reads the database, and one that times out reads it
too before answering (so its answer has fresh key counts, and a wake-up lost on the way costs no
more than one timeout, as before). Entries are keyed by the access token (random, never reused; a
logout makes the next request fail authentication first) and the ``filter`` parameter, bounded in
number, and only consulted for a ``since`` equal to the remembered position.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from presence.rules import PresenceRecord

MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class QuietRead:
    """A read at ``pos`` with nothing left to announce (no expired typing, no overdue presence)."""

    pos: int
    joined_room_ids: frozenset[str]
    next_expiry_ms: int | None
    own_presence: PresenceRecord | None


_entries: OrderedDict[tuple[str, str], QuietRead] = OrderedDict()
_lock = threading.Lock()  # the reads run in pooled threads


def remember(key: tuple[str, str], read: QuietRead) -> None:
    with _lock:
        _entries[key] = read
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)


def recall(key: tuple[str, str], *, since: int, now_ms: int) -> QuietRead | None:
    """The read remembered at exactly ``since``, unless an expiry it reported is due by now."""
    with _lock:
        read = _entries.get(key)
    if read is None or read.pos != since:
        return None
    if read.next_expiry_ms is not None and read.next_expiry_ms <= now_ms:
        return None
    return read


def forget_all() -> None:
    """For tests."""
    with _lock:
        _entries.clear()
