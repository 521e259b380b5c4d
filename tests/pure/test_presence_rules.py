"""presence.rules: the derived presence, its timers, and what a PUT or a /sync changes (pure)."""

from __future__ import annotations

import pytest

from presence.rules import (
    ACTIVE_MS,
    IDLE_MS,
    LEASE_SLACK_MS,
    OFFLINE,
    ONLINE,
    SYNC_ONLINE_TIMEOUT_MS,
    TICK_MS,
    UNAVAILABLE,
    PresenceRecord,
    Shown,
    content,
    due_ms,
    event,
    on_activity,
    on_put,
    on_sync,
    on_tick,
    shown,
)

T = 1_000_000_000  # "now" in the tables below
ONLINE_NOW = PresenceRecord(ONLINE, None, T, T + 90_000)


@pytest.mark.parametrize(
    ("record", "at", "expected"),
    [
        pytest.param(None, T, Shown(OFFLINE, False, None), id="no-record"),
        pytest.param(ONLINE_NOW, T, Shown(ONLINE, True, None), id="online-active"),
        pytest.param(ONLINE_NOW, T + ACTIVE_MS - 1, Shown(ONLINE, True, None), id="still-active"),
        pytest.param(ONLINE_NOW, T + ACTIVE_MS, Shown(ONLINE, False, None), id="no-longer-active"),
        pytest.param(ONLINE_NOW, T + 90_000, Shown(OFFLINE, False, None), id="lease-over"),
        pytest.param(
            PresenceRecord(ONLINE, "hi", T, T + IDLE_MS + 1), T + IDLE_MS, Shown(UNAVAILABLE, False, "hi"),
            id="idle",
        ),
        pytest.param(PresenceRecord(UNAVAILABLE, None, T, T + 1000), T, Shown(UNAVAILABLE, False, None),
                     id="unavailable"),
        pytest.param(PresenceRecord(OFFLINE, "away", T, T + 1000), T, Shown(OFFLINE, False, "away"),
                     id="offline-keeps-status"),
    ],
)
def test_shown(record: PresenceRecord | None, at: int, expected: Shown) -> None:
    assert shown(record, at) == expected


def test_due_is_the_next_instant_the_shown_presence_changes() -> None:
    record = PresenceRecord(ONLINE, None, T, T + 10 * IDLE_MS)
    assert due_ms(record, T) == T + ACTIVE_MS
    assert due_ms(record, T + ACTIVE_MS) == T + IDLE_MS
    assert due_ms(record, T + IDLE_MS) == T + 10 * IDLE_MS
    assert due_ms(record, T + 10 * IDLE_MS) is None  # offline: nothing changes by itself
    # Each due instant really changes what is shown, and nothing changes in between.
    instants = [T + ACTIVE_MS, T + IDLE_MS, T + 10 * IDLE_MS]
    for at in instants:
        assert shown(record, at - 1) != shown(record, at)
    assert due_ms(PresenceRecord(ONLINE, None, T, T + 5), T) == T + TICK_MS  # lease first (on the grid)
    assert due_ms(PresenceRecord(UNAVAILABLE, None, T, T + 5000), T) == T + 5000
    assert due_ms(PresenceRecord(OFFLINE, None, T, T + 5000), T) is None


@pytest.mark.parametrize("offset", [1, 1234, TICK_MS - 1, TICK_MS])
def test_changes_of_users_active_about_the_same_time_fall_due_together(offset: int) -> None:
    """T is on the grid: everyone last active in (T, T + TICK_MS] stops being currently active, goes
    idle and goes offline at the same instants, and not a millisecond before them."""
    assert T % TICK_MS == 0
    record = PresenceRecord(ONLINE, None, T + offset, T + offset + 10 * IDLE_MS)
    for instant in (T + TICK_MS + ACTIVE_MS, T + TICK_MS + IDLE_MS, T + TICK_MS + 10 * IDLE_MS):
        assert due_ms(record, instant - 1) == instant
        assert shown(record, instant - 1) != shown(record, instant)
    assert on_tick(T) == T and on_tick(T + 1) == on_tick(T + TICK_MS) == T + TICK_MS


def test_put_is_pro_active_and_sets_or_clears_the_status() -> None:
    first = on_put(None, presence=ONLINE, status_msg="lunch", now_ms=T)
    assert first == PresenceRecord(ONLINE, "lunch", T, T + SYNC_ONLINE_TIMEOUT_MS + LEASE_SLACK_MS)
    # ... so the next /sync (timeout 0) needs no write:
    assert on_sync(first, set_presence=ONLINE, now_ms=T + 1000, timeout_ms=0) is None
    later = on_put(first, presence=UNAVAILABLE, status_msg=None, now_ms=T + 5)
    assert later.status_msg is None and later.last_active_ms == T + 5 and later.requested == UNAVAILABLE
    assert on_put(first, presence=ONLINE, status_msg="", now_ms=T).status_msg is None
    # A long sync lease is not shortened by a PUT; offline keeps the lease as it was.
    leased = PresenceRecord(ONLINE, None, T, T + 10 * SYNC_ONLINE_TIMEOUT_MS)
    kept = on_put(leased, presence=ONLINE, status_msg=None, now_ms=T)
    assert kept.online_until_ms == leased.online_until_ms
    gone = on_put(leased, presence=OFFLINE, status_msg="bye", now_ms=T)
    assert shown(gone, T) == Shown(OFFLINE, False, "bye")


def test_sync_online_comes_online_then_writes_nothing_until_the_lease_runs_short() -> None:
    came = on_sync(None, set_presence=ONLINE, now_ms=T, timeout_ms=30_000)
    assert came == PresenceRecord(ONLINE, None, T, T + 30_000 + SYNC_ONLINE_TIMEOUT_MS + LEASE_SLACK_MS)
    assert shown(came, T) == Shown(ONLINE, True, None)
    # Already online, the lease covers this long-poll plus the grace period: nothing to write.
    for later in (T + 1, T + 10_000, T + LEASE_SLACK_MS):
        assert on_sync(came, set_presence=ONLINE, now_ms=later, timeout_ms=30_000) is None
    # The lease would run out during the next long-poll: renewed, and only the lease moves.
    renewed = on_sync(came, set_presence=ONLINE, now_ms=T + LEASE_SLACK_MS + 1, timeout_ms=30_000)
    assert renewed is not None and renewed.last_active_ms == T and renewed.requested == ONLINE
    assert renewed.online_until_ms > came.online_until_ms


def test_sync_is_not_activity_so_idle_sticks_until_a_pro_active_act() -> None:
    idle = PresenceRecord(ONLINE, None, T - IDLE_MS, T + 60_000)
    assert shown(idle, T).state == UNAVAILABLE
    assert on_sync(idle, set_presence=ONLINE, now_ms=T, timeout_ms=0) is None
    back = on_put(idle, presence=ONLINE, status_msg=None, now_ms=T)
    assert shown(back, T) == Shown(ONLINE, True, None)


def test_sync_changes_of_state() -> None:
    online = PresenceRecord(ONLINE, "x", T, T + 60_000)
    away = on_sync(online, set_presence=UNAVAILABLE, now_ms=T + 1, timeout_ms=0)
    assert away is not None and shown(away, T + 1) == Shown(UNAVAILABLE, False, "x")
    assert away.last_active_ms == T  # going idle is not activity
    back = on_sync(away, set_presence=ONLINE, now_ms=T + 2, timeout_ms=0)
    assert back is not None and back.last_active_ms == T + 2 and shown(back, T + 2).state == ONLINE
    assert on_sync(online, set_presence=OFFLINE, now_ms=T, timeout_ms=0) is None
    assert on_sync(None, set_presence=OFFLINE, now_ms=T, timeout_ms=0) is None
    gone = PresenceRecord(ONLINE, None, T - 100_000, T - 1)  # the lease ran out: offline
    again = on_sync(gone, set_presence=ONLINE, now_ms=T, timeout_ms=0)
    assert again is not None and again.last_active_ms == T


def test_content_is_formatted_as_synapse_does() -> None:
    record = PresenceRecord(ONLINE, "cupcakes", T - 1500, T + 60_000)
    assert content(record, T) == {
        "presence": ONLINE, "last_active_ago": 1500, "status_msg": "cupcakes", "currently_active": True
    }
    assert content(None, T) == {"presence": OFFLINE}
    assert content(PresenceRecord(UNAVAILABLE, None, T, T + 10), T + 1) == {
        "presence": UNAVAILABLE, "last_active_ago": 1
    }
    assert event(record, T, user_id="@a:hs") == {
        "type": "m.presence",
        "sender": "@a:hs",
        "content": {**content(record, T), "user_id": "@a:hs"},
    }


def test_activity_brings_the_user_back_online_and_is_coalesced() -> None:
    assert on_activity(None, now_ms=T) is None  # not connected: stays offline
    assert on_activity(PresenceRecord(ONLINE, None, T - 100_000, T - 1), now_ms=T) is None  # lease over
    fresh = PresenceRecord(ONLINE, None, T, T + 10 * IDLE_MS)
    assert on_activity(fresh, now_ms=T + ACTIVE_MS // 2 - 1) is None  # coalesced
    kept = on_activity(fresh, now_ms=T + ACTIVE_MS // 2)
    assert kept is not None and kept.last_active_ms == T + ACTIVE_MS // 2
    assert shown(fresh, T + ACTIVE_MS // 2) == shown(kept, T + ACTIVE_MS // 2)  # nothing visible changes
    idle = on_activity(fresh, now_ms=T + IDLE_MS)
    assert idle is not None and shown(idle, T + IDLE_MS) == Shown(ONLINE, True, None)
    away = PresenceRecord(UNAVAILABLE, "brb", T, T + 60_000)
    back = on_activity(away, now_ms=T + 1)
    assert back is not None and shown(back, T + 1) == Shown(ONLINE, True, "brb")
