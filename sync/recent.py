"""The rooms that recent wake-ups named for new room events, by stream position (per process).

A hint for ``sync.selectors._build``: an incremental sync from ``since`` at ``head`` most likely
has news in exactly the rooms the wake-ups of ``(since, head]`` named, so it can send its timeline
and unread-count reads with its first reads, one round trip earlier. The hint is never trusted:
those reads count only if they are the very statements the sync would have made once it knew its
rooms; otherwise it makes them as before. A lost, late or stale wake-up (another worker's, not
arrived yet; a test's rolled-back position) costs that round trip back, never an answer.
"""

from __future__ import annotations

import threading
from collections import deque

# Positions remembered: a sync's window is usually a few positions; a longer one is not guessed.
MAX_REMEMBERED = 4096

_lock = threading.Lock()
_recent: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=MAX_REMEMBERED)


def remember(pos: int, rooms: list[str]) -> None:
    """A wake-up for room events at ``pos`` in ``rooms`` (on the worker's loop)."""
    with _lock:
        _recent.append((pos, tuple(rooms)))


def rooms_between(since: int, head: int) -> frozenset[str]:
    """The rooms named for positions in ``(since, head]`` (from any thread)."""
    found: set[str] = set()
    with _lock:
        for pos, rooms in reversed(_recent):
            if pos <= since:
                break  # (wake-ups come in about in order; a straggler only makes a worse guess)
            if pos <= head:
                found.update(rooms)
    return frozenset(found)


def forget() -> None:
    """For tests."""
    with _lock:
        _recent.clear()
