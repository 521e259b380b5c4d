"""History visibility (client-server spec, "Room History Visibility") on /messages, /context and
/event, through the real routes.

One scenario per visibility setting, with one user in each situation the spec distinguishes:

    E1 "early"      alice alone (plus the room's setup)
    -- alice invites carol and dave
    E2 "invited"    carol and dave are invited
    -- bob joins (a public room: no invite)
    E3 "bob-in"     bob is joined
    -- bob leaves
    E4 "bob-out"    bob has left
    -- carol joins
    E5 "carol-in"   carol is joined; dave is still only invited; eve never had anything to do with it
"""

from __future__ import annotations

from typing import Any

import pytest

from events.models import Event
from events.timeline import filter_visible_events
from tests.api.test_messages_api import (
    bodies,
    create_room,
    invite,
    join,
    leave,
    messages,
    page_through,
    send,
    set_visibility,
)
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.matrix_client import TestUser as User

ALL = ["early", "invited", "bob-in", "bob-out", "carol-in"]
FORBIDDEN = None  # /messages answers 403: the user may read nothing of the room

EXPECTED: dict[str, dict[str, list[str] | None]] = {
    "shared": {
        "carol": ALL,  # joined later: everything before, including before her invite (rule 3)
        "dave": [],  # invited but never joined: nothing (rule 3 needs a join)
        "bob": ["early", "invited", "bob-in"],  # up to his leave, not after
        "eve": FORBIDDEN,
    },
    "invited": {
        "carol": ["invited", "bob-in", "bob-out", "carol-in"],  # from her invite on (rule 4, then 2)
        "dave": ["invited", "bob-in", "bob-out", "carol-in"],  # invited, not joined: still rule 4
        "bob": ["bob-in"],  # never invited: only while joined
        "eve": FORBIDDEN,
    },
    "joined": {
        "carol": ["carol-in"],
        "dave": [],
        "bob": ["bob-in"],
        "eve": FORBIDDEN,
    },
    "world_readable": {"carol": ALL, "dave": ALL, "bob": ALL, "eve": ALL},
}


class Scenario:
    def __init__(self, matrix: MatrixClient, make_user: Any, visibility: str) -> None:
        self.matrix = matrix
        self.users = {name: make_user(name) for name in ("alice", "bob", "carol", "dave", "eve")}
        alice = self.users["alice"]
        self.room_id = create_room(matrix, alice, preset="public_chat", visibility=visibility)
        self.ids = {"early": send(matrix, alice, self.room_id, "early")}
        invite(matrix, alice, self.room_id, self.users["carol"])
        invite(matrix, alice, self.room_id, self.users["dave"])
        self.ids["invited"] = send(matrix, alice, self.room_id, "invited")
        join(matrix, self.users["bob"], self.room_id)
        self.ids["bob-in"] = send(matrix, alice, self.room_id, "bob-in")
        leave(matrix, self.users["bob"], self.room_id)
        self.ids["bob-out"] = send(matrix, alice, self.room_id, "bob-out")
        join(matrix, self.users["carol"], self.room_id)
        self.ids["carol-in"] = send(matrix, alice, self.room_id, "carol-in")


@pytest.fixture(params=list(EXPECTED))
def scenario(request: pytest.FixtureRequest, matrix: MatrixClient, make_user: Any) -> Scenario:
    return Scenario(matrix, make_user, request.param)


CASES = [
    pytest.param(visibility, name, id=f"{visibility}-{name}")
    for visibility, by_user in EXPECTED.items()
    for name in by_user
]
OWN_MEMBERSHIPS = {"carol": ["invite", "join"], "dave": ["invite"], "bob": ["join", "leave"], "eve": []}


@pytest.mark.django_db
@pytest.mark.parametrize(("visibility", "name"), CASES)
@pytest.mark.parametrize("direction", ["b", "f"])
def test_messages_shows_what_the_visibility_rules_allow(
    matrix: MatrixClient, make_user: Any, visibility: str, name: str, direction: str
) -> None:
    s = Scenario(matrix, make_user, visibility)
    expected = EXPECTED[visibility][name]
    user = s.users[name]
    if expected is FORBIDDEN:
        assert_matrix_error(messages(matrix, user, s.room_id, expect=403), 403, "M_FORBIDDEN")
        return
    events, _ = page_through(matrix, user, s.room_id, dir=direction, limit=2)
    in_order = expected if direction == "f" else expected[::-1]
    assert bodies(events) == in_order
    # A user's own membership events are always visible to them.
    own = [
        e["content"]["membership"]
        for e in events
        if e["type"] == "m.room.member" and e["state_key"] == user.user_id
    ]
    assert own == (OWN_MEMBERSHIPS[name] if direction == "f" else OWN_MEMBERSHIPS[name][::-1])


@pytest.mark.django_db
@pytest.mark.parametrize(("visibility", "name"), CASES)
def test_event_and_context_apply_the_same_rules(
    matrix: MatrixClient, make_user: Any, visibility: str, name: str
) -> None:
    s = Scenario(matrix, make_user, visibility)
    expected = EXPECTED[visibility][name]
    user = s.users[name]
    for label, event_id in s.ids.items():
        visible = expected is not FORBIDDEN and label in expected
        event_path = f"rooms/{q(s.room_id)}/event/{q(event_id)}"
        context_path = f"rooms/{q(s.room_id)}/context/{q(event_id)}"
        if visible:
            assert matrix.get(event_path, token=user).json()["content"]["body"] == label
            context = matrix.get(context_path, token=user, query={"limit": 40}).json()
            assert context["event"]["event_id"] == event_id
            assert (
                bodies(context["events_before"])[::-1] + [label] + bodies(context["events_after"]) == expected
            )
        else:
            assert_matrix_error(matrix.get(event_path, token=user, expect=404), 404, "M_NOT_FOUND")
            status, errcode = (403, "M_FORBIDDEN") if expected is FORBIDDEN else (404, "M_NOT_FOUND")
            assert_matrix_error(matrix.get(context_path, token=user, expect=status), status, errcode)


@pytest.mark.django_db
def test_sql_and_python_visibility_agree(matrix: MatrixClient, scenario: Scenario) -> None:
    """/messages filters visibility in SQL; filter_visible_events decides it in Python, event by event.
    For every user, both select exactly the same events (history visibility and member events too)."""
    every_event = list(Event.objects.filter(room_id=scenario.room_id).order_by("stream_pos"))
    for name, user in scenario.users.items():
        python = [
            e.event_id
            for e in filter_visible_events(every_event, user_mxid=user.user_id, room_id=scenario.room_id)
        ]
        response = messages(matrix, user, scenario.room_id, dir="f", limit=1000, expect=None)
        if response.status_code == 403:
            assert not [e for e in python if Event.objects.get(event_id=e).type == "m.room.message"]
            continue
        assert [e["event_id"] for e in response.json()["chunk"]] == python, name


# -- visibility changes in the middle of the room -------------------------------------------------


@pytest.mark.django_db
def test_events_before_a_change_keep_the_earlier_setting(
    matrix: MatrixClient, alice: User, bob: User, make_user: Any
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="shared")
    send(matrix, alice, room_id, "shared-1")
    to_joined = set_visibility(matrix, alice, room_id, "joined")
    send(matrix, alice, room_id, "joined-1")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "joined-2")

    events, _ = page_through(matrix, bob, room_id, dir="b", limit=3)
    assert bodies(events) == ["joined-2", "shared-1"]
    # The change itself: visible if the value before (shared, and bob joined later) allows it.
    assert to_joined in [e["event_id"] for e in events]


@pytest.mark.django_db
def test_a_world_readable_window_is_visible_to_everyone(
    matrix: MatrixClient, alice: User, bob: User, make_user: Any
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="joined")
    hidden = send(matrix, alice, room_id, "joined-1")
    opened = set_visibility(matrix, alice, room_id, "world_readable")
    public = send(matrix, alice, room_id, "readable-1")
    closed = set_visibility(matrix, alice, room_id, "joined")
    later = send(matrix, alice, room_id, "joined-2")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "joined-3")

    events, _ = page_through(matrix, bob, room_id, dir="f", limit=2)
    assert bodies(events) == ["readable-1", "joined-3"]
    ids = [e["event_id"] for e in events]
    assert opened in ids and closed in ids  # after (opened) or before (closed) was world_readable

    # A stranger: /messages is 403 (the room is not world-readable now), but the events of the
    # world-readable window can be fetched one by one.
    eve = make_user("eve")
    assert_matrix_error(messages(matrix, eve, room_id, expect=403), 403, "M_FORBIDDEN")
    for event_id in (opened, public, closed):
        assert matrix.get(f"rooms/{q(room_id)}/event/{q(event_id)}", token=eve).json()["event_id"] == event_id
    for event_id in (hidden, later):
        matrix.get(f"rooms/{q(room_id)}/event/{q(event_id)}", token=eve, expect=404)


@pytest.mark.django_db
def test_a_room_that_becomes_world_readable_opens_to_strangers_from_then_on(
    matrix: MatrixClient, alice: User, make_user: Any
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="shared")
    send(matrix, alice, room_id, "private")
    set_visibility(matrix, alice, room_id, "world_readable")
    send(matrix, alice, room_id, "public")
    eve = make_user("eve")
    events, _ = page_through(matrix, eve, room_id, dir="b", limit=5)
    assert bodies(events) == ["public"]
    assert events[-1]["type"] == "m.room.history_visibility"


@pytest.mark.django_db
def test_a_departed_user_sees_later_world_readable_events_only(
    matrix: MatrixClient, alice: User, bob: User
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="shared")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "while-joined")
    leave(matrix, bob, room_id)
    for i in range(30):
        send(matrix, alice, room_id, f"after-leave-{i}")
    set_visibility(matrix, alice, room_id, "world_readable")
    send(matrix, alice, room_id, "readable")

    page = messages(matrix, bob, room_id, limit=2)
    assert bodies(page["chunk"]) == ["readable"]
    events, _ = page_through(matrix, bob, room_id, dir="b", limit=2)
    assert bodies(events) == ["readable", "while-joined"]


@pytest.mark.django_db
def test_rejoining_restores_access_to_the_gap_under_shared(
    matrix: MatrixClient, alice: User, bob: User
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="shared")
    join(matrix, bob, room_id)
    leave(matrix, bob, room_id)
    send(matrix, alice, room_id, "gap")
    assert bodies(page_through(matrix, bob, room_id, dir="b", limit=5)[0]) == []
    join(matrix, bob, room_id)
    assert bodies(page_through(matrix, bob, room_id, dir="b", limit=5)[0]) == ["gap"]


@pytest.mark.django_db
def test_banned_users_see_nothing_after_the_ban(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="joined")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "before-ban")
    matrix.post(f"rooms/{q(room_id)}/ban", {"user_id": bob.user_id}, token=alice)
    send(matrix, alice, room_id, "after-ban")
    events, _ = page_through(matrix, bob, room_id, dir="b", limit=5)
    assert bodies(events) == ["before-ban"]
    assert events[0]["type"] == "m.room.member" and events[0]["content"]["membership"] == "ban"


@pytest.mark.django_db
def test_timestamp_to_event_skips_events_the_user_may_not_see(
    matrix: MatrixClient, alice: User, bob: User
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="joined")
    send(matrix, alice, room_id, "hidden")
    join(matrix, bob, room_id)
    seen = send(matrix, alice, room_id, "seen")
    path = f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event"
    hidden_ts = Event.objects.get(content__body="hidden").origin_server_ts
    found = matrix.get(path, token=bob, query={"ts": hidden_ts, "dir": "f"}).json()
    bobs_join = Event.objects.get(room_id=room_id, type="m.room.member", state_key=bob.user_id)
    assert found == {"event_id": bobs_join.event_id, "origin_server_ts": bobs_join.origin_server_ts}
    ts = Event.objects.get(event_id=seen).origin_server_ts
    assert matrix.get(path, token=bob, query={"ts": ts, "dir": "b"}).json()["event_id"] == seen
    assert (
        matrix.get(path, token=alice, query={"ts": hidden_ts, "dir": "f"}).json()["event_id"]
        != bobs_join.event_id
    )
