"""Room state: PUT/GET /rooms/{roomId}/state/{eventType}/{stateKey} and GET /rooms/{roomId}/state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from events.models import CurrentState
from rooms.models import Room
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import event_count, event_row, joined_room_with, set_power_levels, state_by_key

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def test_put_then_get_state_with_a_key(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice = matrix.register("carol")
    room_id = matrix.create_room(alice)
    event_id = matrix.send_state(alice, room_id, "org.example.state", {"v": 1}, state_key="k1")
    assert event_id.startswith("$")
    assert matrix.get_state(alice, room_id, "org.example.state", "k1") == {"v": 1}
    event = event_row(event_id)
    assert (event.type, event.state_key, event.room_id) == ("org.example.state", "k1", room_id)
    assert CurrentState.objects.get(room_id=room_id, type="org.example.state", state_key="k1").event == event


@pytest.mark.parametrize("put_path", ["state/m.room.topic", "state/m.room.topic/"])
@pytest.mark.parametrize("get_path", ["state/m.room.topic", "state/m.room.topic/"])
def test_empty_state_key_with_and_without_trailing_slash(
    matrix: MatrixClient, alice: TestUser, put_path: str, get_path: str
) -> None:
    room_id = matrix.create_room(alice)
    event_id = matrix.put(f"rooms/{q(room_id)}/{put_path}", {"topic": "t"}, token=alice).json()["event_id"]
    assert event_row(event_id).state_key == ""
    assert matrix.get(f"rooms/{q(room_id)}/{get_path}", token=alice).json() == {"topic": "t"}
    assert Room.objects.get(room_id=room_id).topic == "t"


@pytest.mark.parametrize(
    "state_key",
    ["a/b", "/leading", "trailing/", "a//b", "with space", "q?x=1&y", "50%", "#hash", "é✓", "a%2Fb"],
)
def test_state_keys_with_reserved_characters(matrix: MatrixClient, alice: TestUser, state_key: str) -> None:
    # The test percent-encodes the key (a '/' becomes %2F); Django's test client, like an ASGI
    # server, hands the view the decoded path, so the routes must take a key containing '/'.
    room_id = matrix.create_room(alice)
    event_id = matrix.send_state(alice, room_id, "org.example.state", {"key": state_key}, state_key=state_key)
    assert event_row(event_id).state_key == state_key
    assert matrix.get_state(alice, room_id, "org.example.state", state_key) == {"key": state_key}
    state = state_by_key(matrix.room_state(alice, room_id))
    assert state[("org.example.state", state_key)]["content"] == {"key": state_key}


def test_a_slash_key_does_not_collide_with_its_parts(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    matrix.send_state(alice, room_id, "org.example.state", {"which": "a/b"}, state_key="a/b")
    matrix.get_state(alice, room_id, "org.example.state", "a", expect=404)
    matrix.get_state(alice, room_id, "org.example.state", "", expect=404)


def test_unknown_state_is_m_not_found(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    assert_matrix_error(matrix.get_state(alice, room_id, "m.room.topic", expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.get_state(alice, room_id, "org.example.none", "k", expect=None), 404, "M_NOT_FOUND"
    )


def test_get_full_state_returns_the_current_state(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, name="first")
    matrix.send_state(alice, room_id, "m.room.name", {"name": "second"})
    state = matrix.room_state(alice, room_id)
    keys = [(e["type"], e["state_key"]) for e in state]
    assert len(keys) == len(set(keys))  # one event per key
    assert set(keys) == set(CurrentState.objects.filter(room_id=room_id).values_list("type", "state_key"))
    by_key = state_by_key(state)
    assert by_key[("m.room.name", "")]["content"] == {"name": "second"}
    assert by_key[("m.room.member", bob.user_id)]["content"]["membership"] == "join"
    for event in state:
        assert event["room_id"] == room_id
        assert {"event_id", "sender", "origin_server_ts", "unsigned", "content", "type"} <= set(event)
    # Message events are not state.
    matrix.send_text(alice, room_id, "not state")
    assert len(matrix.room_state(alice, room_id)) == len(state)


def test_format_event_returns_the_whole_event(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, name="old")
    new_id = matrix.send_state(alice, room_id, "m.room.name", {"name": "new"})
    event = matrix.get_state(alice, room_id, "m.room.name", format="event")
    assert event["event_id"] == new_id
    assert (event["type"], event["state_key"], event["sender"], event["room_id"]) == (
        "m.room.name",
        "",
        alice.user_id,
        room_id,
    )
    assert event["content"] == {"name": "new"}
    assert event["unsigned"]["prev_content"] == {"name": "old"}
    assert matrix.get_state(alice, room_id, "m.room.name", format="content") == {"name": "new"}
    assert_matrix_error(
        matrix.get_state(alice, room_id, "m.room.name", format="xml", expect=None), 400, "M_INVALID_PARAM"
    )


def test_non_member_cannot_read_state(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat", name="n")
    assert_matrix_error(matrix.get_state(bob, room_id, "m.room.name", expect=None), 403, "M_FORBIDDEN")
    assert_matrix_error(matrix.get(f"rooms/{q(room_id)}/state", token=bob, expect=None), 403, "M_FORBIDDEN")


def test_invited_user_cannot_read_state_yet(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, invite=[bob.user_id])
    assert_matrix_error(matrix.get(f"rooms/{q(room_id)}/state", token=bob, expect=None), 403, "M_FORBIDDEN")


def test_world_readable_state_is_readable_by_anyone(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(
        alice,
        name="open",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}
        ],
    )
    assert matrix.get_state(bob, room_id, "m.room.name") == {"name": "open"}
    assert len(matrix.room_state(bob, room_id)) > 0


def test_former_member_sees_the_state_as_of_their_leave(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, topic="before")
    matrix.leave(bob, room_id)
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "after"})
    matrix.send_state(alice, room_id, "org.example.later", {"x": 1})
    assert matrix.get_state(bob, room_id, "m.room.topic")["topic"] == "before"
    assert_matrix_error(matrix.get_state(bob, room_id, "org.example.later", expect=None), 404, "M_NOT_FOUND")
    state = state_by_key(matrix.room_state(bob, room_id))
    assert state[("m.room.topic", "")]["content"]["topic"] == "before"
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "leave"
    assert ("org.example.later", "") not in state
    # Alice (joined) sees the current state.
    assert matrix.get_state(alice, room_id, "m.room.topic")["topic"] == "after"


def test_kicked_and_banned_members_see_the_state_at_removal(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, name="one")
    matrix.ban(alice, room_id, bob.user_id)
    matrix.send_state(alice, room_id, "m.room.name", {"name": "two"})
    assert matrix.get_state(bob, room_id, "m.room.name") == {"name": "one"}


def test_state_needs_state_default(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    before = event_count()
    resp = matrix.send_state(bob, room_id, "m.room.topic", {"topic": "mine"}, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert event_count() == before
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 50})
    matrix.send_state(bob, room_id, "m.room.topic", {"topic": "mine"})


def test_per_type_state_level(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    set_power_levels(matrix, alice, room_id, events={"m.room.topic": 0})
    matrix.send_state(bob, room_id, "m.room.topic", {"topic": "anyone"})
    # m.room.name stays at its level (50).
    matrix.send_state(bob, room_id, "m.room.name", {"name": "x"}, expect=403)


def test_non_member_cannot_send_state(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice, preset="public_chat", power_level_content_override={"state_default": 0}
    )
    assert_matrix_error(matrix.send_state(bob, room_id, "org.example.s", {}, expect=None), 403, "M_FORBIDDEN")


def test_user_id_state_keys_belong_to_that_user(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob, power_level_content_override={"state_default": 0})
    matrix.send_state(bob, room_id, "org.example.profile", {"x": 1}, state_key=bob.user_id)
    resp = matrix.send_state(
        bob, room_id, "org.example.profile", {"x": 1}, state_key=alice.user_id, expect=None
    )
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


def test_unknown_room(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = "!unknown:test.local"
    assert_matrix_error(
        matrix.send_state(alice, room_id, "m.room.topic", {"topic": "x"}, expect=None), 404, "M_NOT_FOUND"
    )
    assert_matrix_error(matrix.get_state(alice, room_id, "m.room.topic", expect=None), 404, "M_NOT_FOUND")


def test_post_on_a_state_path_is_unrecognized(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    resp = matrix.post(f"rooms/{q(room_id)}/state/m.room.topic/", {"topic": "x"}, token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")


def test_state_body_must_be_an_object(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    resp = matrix.request(
        "PUT", matrix.state_path(room_id, "m.room.topic"), raw=b"[]", token=alice, expect=None
    )
    assert_matrix_error(resp, 400, "M_BAD_JSON")


def test_state_put_updates_the_room_summary(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    matrix.send_state(alice, room_id, "m.room.name", {"name": "Lobby"})
    matrix.send_state(alice, room_id, "m.room.avatar", {"url": "mxc://test.local/abc"})
    matrix.send_state(alice, room_id, "m.room.join_rules", {"join_rule": "public"})
    room = Room.objects.get(room_id=room_id)
    assert (room.name, room.avatar_url, room.join_rule) == ("Lobby", "mxc://test.local/abc", "public")
    matrix.send_state(alice, room_id, "m.room.name", {})
    assert Room.objects.get(room_id=room_id).name is None


def test_power_levels_change_is_checked(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob, room_version="11")
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 60}, events={"m.room.power_levels": 50})
    pl = matrix.get_state(bob, room_id, "m.room.power_levels")
    pl["users"][bob.user_id] = 100  # above his own level
    assert_matrix_error(
        matrix.send_state(bob, room_id, "m.room.power_levels", pl, expect=None), 403, "M_FORBIDDEN"
    )


# -- m.room.canonical_alias -----------------------------------------------------------------------


def _alias(matrix: MatrixClient, user: TestUser, alias: str, room_id: str) -> None:
    matrix.put(f"directory/room/{q(alias)}", {"room_id": room_id}, token=user)


def test_canonical_alias_must_point_at_the_room(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    other = matrix.create_room(alice)
    _alias(matrix, alice, "#here:test.local", room_id)
    _alias(matrix, alice, "#there:test.local", other)
    matrix.send_state(alice, room_id, "m.room.canonical_alias", {"alias": "#here:test.local"})
    before = event_count()
    for content in (
        {"alias": "#there:test.local"},
        {"alias": "#nowhere:test.local"},
        {"alias": "#here:test.local", "alt_aliases": ["#there:test.local"]},
        {"alias": "#here:elsewhere.example"},
    ):
        resp = matrix.send_state(alice, room_id, "m.room.canonical_alias", content, expect=None)
        assert_matrix_error(resp, 400, "M_BAD_ALIAS")
    assert event_count() == before
    assert Room.objects.get(room_id=room_id).canonical_alias == "#here:test.local"


def test_canonical_alias_with_invalid_syntax_is_invalid_param(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    for content in (
        {"alias": "not-an-alias"},
        {"alt_aliases": ["#nocolon"]},
        {"alt_aliases": "#a:test.local"},
        {"alias": 5},
    ):
        resp = matrix.send_state(alice, room_id, "m.room.canonical_alias", content, expect=None)
        assert resp.status_code == 400 and resp.json()["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON"), (
            resp.content
        )


def test_canonical_alias_keeps_aliases_already_in_the_event(matrix: MatrixClient, alice: TestUser) -> None:
    # Spec: "Servers do not validate aliases which are being removed or are already present".
    room_id = matrix.create_room(alice, room_alias_name="kept")
    _alias(matrix, alice, "#alt:test.local", room_id)
    matrix.send_state(
        alice,
        room_id,
        "m.room.canonical_alias",
        {"alias": "#kept:test.local", "alt_aliases": ["#alt:test.local"]},
    )
    # #alt's mapping is removed directly (not through DELETE), then the event is re-sent.
    from rooms.models import RoomAlias

    RoomAlias.objects.filter(alias="#alt:test.local").delete()
    matrix.send_state(
        alice,
        room_id,
        "m.room.canonical_alias",
        {"alias": "#kept:test.local", "alt_aliases": ["#alt:test.local"], "x": 1},
    )
    # Removing everything is always fine.
    matrix.send_state(alice, room_id, "m.room.canonical_alias", {})
    assert Room.objects.get(room_id=room_id).canonical_alias is None
