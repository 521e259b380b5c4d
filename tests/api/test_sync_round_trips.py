"""How many round trips a /sync makes on PostgreSQL, and that the shortcuts behind the counts give the
answers the long way gives (sync.selectors._build).

* The access token and the stream head: one round trip.
* A worker remembers each user's joined rooms from their previous sync, and sends the reads that
  depend on them (ephemeral data, presence) with the memberships' read; a guess that turns out stale
  (the user joined a room meanwhile) is read again, so the answer is the same.
* A room joined since before ``since`` needs no membership history (``RoomVisibility.joined_throughout``).
* The rooms this worker's wake-ups named for new events since ``since`` (sync/recent.py) are guessed
  to be the rooms with news: their timeline and unread counts go with the memberships' read too.

On PostgreSQL every batch of statements is one execute, so Django's captured queries are the round
trips. SQLite makes no guesses (each statement is its own execute there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Device, User
from events.models import Event
from events.timeline import load_room_visibilities
from sync import recent, selectors
from sync.filters import Filter
from sync.selectors import build_sync_response
from tests.api.test_sync_batch import _stable
from tests.matrix_client import MatrixClient, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync, timeline_bodies

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="round trips: PostgreSQL's batches"),
]


@pytest.fixture(autouse=True)
def _no_wakeups_from_other_tests() -> None:
    recent.forget()


def _round_trips(matrix: MatrixClient, user: TestUser, since: str) -> tuple[int, dict[str, Any]]:
    sync(matrix, user, since=since)  # the device's last-seen write (once a minute) is out of the way
    with CaptureQueriesContext(connection) as captured:
        body = sync(matrix, user, since=since)
    return len(captured.captured_queries), body


def test_an_incremental_sync_takes_three_round_trips_and_an_empty_one_two(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]  # remembers bob's rooms on this worker
    matrix.send_text(alice, room, "hello")
    trips, body = _round_trips(matrix, bob, since)
    assert timeline_bodies(body, room) == ["hello"]
    # token + head; account data, E2EE, memberships, ephemeral, presence; timeline + unread counts
    assert trips == 3
    trips, body = _round_trips(matrix, bob, body["next_batch"])
    assert body["rooms"]["join"] == {}
    assert trips == 2

    selectors._JOINED_ROOMS.pop(User.objects.get(mxid=bob.user_id).pk)  # a worker that doesn't know bob
    with CaptureQueriesContext(connection) as captured:
        again = sync(matrix, bob, since=since)
    assert len(captured.captured_queries) == 4  # ephemeral and presence in a round trip of their own
    assert timeline_bodies(again, room) == ["hello"]


def _build(user: TestUser, since: str, *, guess: Any) -> dict[str, Any]:
    row = User.objects.get(mxid=user.user_id)
    if guess is None:
        selectors._JOINED_ROOMS.pop(row.pk, None)
    else:
        selectors._JOINED_ROOMS[row.pk] = guess
    device = Device.objects.get(user=row, device_id=user.device_id)
    result = build_sync_response(user=row, device_pk=device.pk, since=int(since[1:]), sync_filter=Filter())
    assert result.body is not None
    return _stable(result.body)


def test_a_stale_guess_of_the_rooms_is_read_again(
    matrix: MatrixClient, make_user: Any, alice: TestUser, bob: TestUser
) -> None:
    carol = make_user("carol")
    lobby = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    lobby_only = selectors._JOINED_ROOMS[User.objects.get(mxid=bob.user_id).pk]
    # after bob's sync: a room he joins, with someone new typing in it and someone new online
    side = joined_room_with(matrix, carol, bob)
    matrix.put(f"rooms/{q(side)}/typing/{q(carol.user_id)}", {"typing": True, "timeout": 30000}, token=carol)
    matrix.put(f"presence/{q(carol.user_id)}/status", {"presence": "online"}, token=carol)
    matrix.send_text(alice, lobby, "in the lobby")

    stale = _build(bob, since, guess=lobby_only)
    wrong = _build(bob, since, guess=(("!nowhere:localhost", 1),))
    none = _build(bob, since, guess=None)
    assert stale == none and wrong == none
    typing = [e for e in none["rooms"]["join"][side]["ephemeral"]["events"] if e["type"] == "m.typing"]
    assert typing and typing[0]["content"]["user_ids"] == [carol.user_id]
    assert carol.user_id in {e["sender"] for e in none["presence"]["events"]}
    assert timeline_bodies(none, lobby) == ["in the lobby"]


def test_a_room_joined_before_since_is_planned_without_its_membership_history(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room, "after since")
    asked: list[list[str]] = []
    real = selectors.room_visibilities_read

    def recording(user_mxid: str, room_ids: list[str]) -> Any:
        asked.append(list(room_ids))
        return real(user_mxid, room_ids)

    monkeypatch.setattr(selectors, "room_visibilities_read", recording)
    short = _build(bob, since, guess=None)
    assert asked == [[]]  # bob was in the room before ``since``: no history read
    monkeypatch.setattr(selectors.RoomVisibility, "joined_throughout", _full_history)
    long = _build(bob, since, guess=None)
    assert short == long  # the same answer with the room's real membership history
    assert timeline_bodies(short, room) == ["after since"]


def _full_history(room_id: str, user_mxid: str, join_pos: int) -> Any:
    return load_room_visibilities(user_mxid, [room_id])[room_id]


def _woken(event_id: str) -> None:
    """What this worker's notifier does with the wake-up of a new event (sync.waiter.Notifier.wake);
    the test client's requests don't run it."""
    event = Event.objects.get(event_id=event_id)
    recent.remember(event.stream_pos, [event.room_id])


def test_the_rooms_the_wakeups_named_have_their_timeline_read_with_the_memberships(
    matrix: MatrixClient, make_user: Any, alice: TestUser, bob: TestUser
) -> None:
    carol = make_user("carol")
    room = joined_room_with(matrix, alice, bob)
    other = joined_room_with(matrix, carol, bob)
    quiet = joined_room_with(matrix, alice, bob)
    matrix.send_text(alice, room, "before")
    since = sync(matrix, bob)["next_batch"]
    hello = matrix.send_text(alice, room, "hello")
    _woken(hello)
    matrix.send_text(alice, room, "look")
    from_carol = matrix.send_text(carol, other, "hi bob")
    trips, body = _round_trips(matrix, bob, since)
    assert trips == 3  # the wake-up for carol's message didn't come: a guess too short is read again
    recent.forget()
    long_way = _build(bob, since, guess=None)
    _woken(hello)
    _woken(from_carol)
    trips, body = _round_trips(matrix, bob, since)
    assert trips == 2  # token + head; everything else
    assert _stable(body) == long_way
    assert timeline_bodies(body, room) == ["hello", "look"]
    assert timeline_bodies(body, other) == ["hi bob"]
    assert body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 3  # none read
    assert quiet not in body["rooms"]["join"]


def test_a_wakeup_for_a_room_without_news_for_the_user_costs_a_round_trip_not_the_answer(
    matrix: MatrixClient, make_user: Any, alice: TestUser, bob: TestUser
) -> None:
    room = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    elsewhere = matrix.create_room(alice)  # bob isn't in it
    _woken(matrix.send_text(alice, elsewhere, "not for bob"))
    event_id = matrix.send_text(alice, room, "for bob")
    recent.remember(Event.objects.get(event_id=event_id).stream_pos, [matrix.create_room(alice)])
    trips, body = _round_trips(matrix, bob, since)
    assert trips == 3
    assert timeline_bodies(body, room) == ["for bob"]
