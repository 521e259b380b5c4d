"""sync/recent.py: the rooms that recent wake-ups named for new room events (a guess for /sync)."""

from __future__ import annotations

import pytest

from sync import recent
from sync.waiter import Notifier


@pytest.fixture(autouse=True)
def _empty() -> None:
    recent.forget()


@pytest.mark.parametrize(
    ("since", "head", "expected"),
    [
        (0, 4, {"!a", "!b", "!c"}),
        (1, 4, {"!b", "!c"}),
        (1, 2, {"!b"}),
        (3, 4, {"!b", "!c"}),
        (4, 9, set()),  # nothing after ``since``
        (2, 3, set()),  # a position without a wake-up
    ],
)
def test_rooms_between(since: int, head: int, expected: set[str]) -> None:
    recent.remember(1, ["!a"])
    recent.remember(2, ["!b"])
    recent.remember(4, ["!c", "!b"])
    assert recent.rooms_between(since, head) == expected


def test_only_the_newest_positions_are_remembered() -> None:
    for pos in range(1, recent.MAX_REMEMBERED + 11):
        recent.remember(pos, [f"!r{pos}"])
    assert recent.rooms_between(0, 10) == set()  # forgotten: no guess, the long way
    assert recent.rooms_between(recent.MAX_REMEMBERED + 8, 10**9) == {
        f"!r{recent.MAX_REMEMBERED + 9}", f"!r{recent.MAX_REMEMBERED + 10}"
    }


def test_the_notifier_remembers_wakeups_for_room_events_only() -> None:
    notifier = Notifier()
    notifier.wake({"type": "stream.advanced", "pos": 7, "rooms": ["!typing"], "users": []})  # no events
    notifier.wake({"type": "stream.advanced", "pos": 8, "rooms": ["!talk"], "users": [3], "events": 1})
    notifier.wake({"type": "stream.advanced", "pos": 9, "rooms": [], "users": [3], "events": 0})
    assert recent.rooms_between(6, 9) == {"!talk"}
