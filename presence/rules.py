"""Presence as a pure state machine (spec "Presence"; Synapse's timers for reference). Stdlib only.

A user's stored presence (``PresenceRecord``) holds what was *asked for* and the clocks; what other
users see (``Shown``) is derived from it and the time:

* ``requested``: the state last set by PUT /presence or by /sync's ``set_presence``;
* ``last_active_ms``: the last pro-active act (a PUT /presence, or a /sync that brought the user
  online); 0 means never;
* ``online_until_ms``: the connection lease. A /sync with ``set_presence`` online or unavailable
  keeps the user connected for its long-poll plus ``SYNC_ONLINE_TIMEOUT_MS``, a PUT for
  ``SYNC_ONLINE_TIMEOUT_MS`` (both plus ``LEASE_SLACK_MS``): past the lease the user is offline (Synapse: offline 30 s after the last
  sync or activity).

Derived (``shown``): offline when asked for, or past the lease; else ``unavailable`` when asked for,
or when ``online`` was asked for but nothing pro-active happened for ``IDLE_MS`` (5 min, Synapse's
IDLE_TIMER); else online, ``currently_active`` while the last act is under ``ACTIVE_MS`` old (60 s,
Synapse's LAST_ACTIVE_GRANULARITY).

Why a /sync with ``set_presence=online`` of a user already online is *not* activity: it would keep
every connected client active forever, so the idle timer could never fire, and it would cost a write
per sync. It renews the lease only, and only when the lease would run out during this long-poll plus
the grace period: then by ``LEASE_SLACK_MS`` more, so a syncing client writes at most every ~30 s, a
single silent UPDATE (no stream position, nobody woken). A user who went idle stays idle while only
syncing; any pro-active act (a PUT) brings them back. Explicitly set ``unavailable`` is left by a
/sync with ``set_presence=online`` (the client says the user is back).

The derived state changes at fixed instants (lease end, last active + 60 s, + 5 min), each rounded
up to the next multiple of ``TICK_MS`` (``on_tick``): ``due_ms(record, now)`` is the next one.
Stored with the row, it lets a reader find the rows whose change is not announced yet
(``due_ms <= now``) and the time a waiting long-poll must wake up. The ticks make the changes of
users who were active about the same time due at the same instant, announced with one position and
one wake-up of their rooms (as Synapse's timeout handler, every 5 s, does): measured, a room of 100
users who came online over a few seconds had 100 announcements a minute later, each waking all 100
long-polls of the room.

Known limit: presence is per user, not per device: two devices syncing with different
``set_presence`` values take turns (Synapse merges device states, "most online wins").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

ONLINE, UNAVAILABLE, OFFLINE = "online", "unavailable", "offline"
STATES = (ONLINE, UNAVAILABLE, OFFLINE)
PRESENCE = "m.presence"

SYNC_ONLINE_TIMEOUT_MS = 30_000  # offline this long after the last sync (or PUT) ends
ACTIVE_MS = 60_000  # currently_active while the last pro-active act is younger than this
IDLE_MS = 5 * 60_000  # online -> unavailable after this long without a pro-active act
LEASE_SLACK_MS = 30_000  # a renewed lease reaches this far beyond what the sync needs: coalescing
TICK_MS = 5_000  # changes that happen by themselves happen on this grid
MAX_STATUS_MSG_LENGTH = 4096


@dataclass(frozen=True)
class Shown:
    """What clients see of a user's presence (the part whose change is announced)."""

    state: str
    currently_active: bool
    status_msg: str | None


@dataclass(frozen=True)
class PresenceRecord:
    requested: str = OFFLINE
    status_msg: str | None = None
    last_active_ms: int = 0
    online_until_ms: int = 0


def on_tick(instant_ms: int) -> int:
    """``instant_ms`` rounded up to the grid the changes happen on (``TICK_MS``)."""
    return -(-instant_ms // TICK_MS) * TICK_MS


def shown(record: PresenceRecord | None, now_ms: int) -> Shown:
    """The presence derived from the record at ``now_ms`` (no record: offline, never active)."""
    if record is None:
        return Shown(OFFLINE, False, None)
    if record.requested == OFFLINE or now_ms >= on_tick(record.online_until_ms):
        return Shown(OFFLINE, False, record.status_msg)
    if record.requested == UNAVAILABLE:
        return Shown(UNAVAILABLE, False, record.status_msg)
    if now_ms >= on_tick(record.last_active_ms + IDLE_MS):
        return Shown(UNAVAILABLE, False, record.status_msg)
    return Shown(ONLINE, now_ms < on_tick(record.last_active_ms + ACTIVE_MS), record.status_msg)


def due_ms(record: PresenceRecord, now_ms: int) -> int | None:
    """The next instant after ``now_ms`` at which ``shown`` may change by itself (None: never)."""
    current = shown(record, now_ms)
    if current.state == OFFLINE:
        return None
    instants = [record.online_until_ms]
    if current.state == ONLINE:
        instants.append(record.last_active_ms + IDLE_MS)
        if current.currently_active:
            instants.append(record.last_active_ms + ACTIVE_MS)
    return min(t for t in map(on_tick, instants) if t > now_ms)


def on_put(
    record: PresenceRecord | None, *, presence: str, status_msg: str | None, now_ms: int
) -> PresenceRecord:
    """PUT /presence/{userId}/status: the state asked for, the status message set (absent: cleared, as
    Synapse does), and the act is pro-active (spec: "the activity time is updated"). Online or
    unavailable also keeps the user connected for SYNC_ONLINE_TIMEOUT_MS plus LEASE_SLACK_MS (the slack
    a /sync renewal gives too, so the client's next /sync needs no write)."""
    old = record or PresenceRecord()
    lease = old.online_until_ms
    if presence != OFFLINE:
        lease = max(lease, now_ms + SYNC_ONLINE_TIMEOUT_MS + LEASE_SLACK_MS)
    return PresenceRecord(presence, status_msg or None, now_ms, lease)


def on_sync(
    record: PresenceRecord | None, *, set_presence: str, now_ms: int, timeout_ms: int
) -> PresenceRecord | None:
    """A /sync with ``set_presence``: the new record, or None when nothing needs writing (the common
    case: connected, with a lease that outlasts this long-poll and the grace period)."""
    if set_presence == OFFLINE:
        return None  # spec: "the client is not marked as being online"
    needed = now_ms + timeout_ms + SYNC_ONLINE_TIMEOUT_MS
    renewed = needed + LEASE_SLACK_MS
    current = shown(record, now_ms)
    old = record or PresenceRecord()
    if current.state == OFFLINE or old.requested != set_presence:
        if set_presence == ONLINE and (current.state == OFFLINE or old.requested != ONLINE):
            # Coming online (or back from an explicit "unavailable") is pro-active.
            return replace(old, requested=ONLINE, last_active_ms=now_ms, online_until_ms=renewed)
        return replace(old, requested=set_presence, online_until_ms=renewed)
    if old.online_until_ms < needed:
        return replace(old, online_until_ms=renewed)
    return None


def on_activity(record: PresenceRecord | None, *, now_ms: int) -> PresenceRecord | None:
    """A pro-active act other than PUT /presence (e.g. sending a message): the new record, or None.
    The spec: activity "will cause the server to automatically set their presence to online" (from
    idle, or an explicit ``unavailable``). A user shown offline is not connected and stays offline.
    Coalesced: an online user's activity time moves at most every ``ACTIVE_MS // 2``, often enough
    that ``currently_active`` never lapses while they keep acting, and without a change clients see."""
    current = shown(record, now_ms)
    if record is None or current.state == OFFLINE:
        return None
    if current.state == ONLINE and now_ms - record.last_active_ms < ACTIVE_MS // 2:
        return None
    return replace(record, requested=ONLINE, last_active_ms=now_ms)


def content(record: PresenceRecord | None, now_ms: int, *, user_id: str | None = None) -> dict[str, Any]:
    """The ``m.presence`` content (and GET /presence body without ``user_id``), as Synapse formats it:
    ``last_active_ago`` when the user was ever active, ``currently_active`` only when online,
    ``status_msg`` when set."""
    view = shown(record, now_ms)
    out: dict[str, Any] = {"presence": view.state}
    if user_id is not None:
        out["user_id"] = user_id
    if record is not None and record.last_active_ms:
        out["last_active_ago"] = max(0, now_ms - record.last_active_ms)
    if view.status_msg:
        out["status_msg"] = view.status_msg
    if view.state == ONLINE:
        out["currently_active"] = view.currently_active
    return out


def event(record: PresenceRecord | None, now_ms: int, *, user_id: str) -> dict[str, Any]:
    return {"type": PRESENCE, "sender": user_id, "content": content(record, now_ms, user_id=user_id)}
