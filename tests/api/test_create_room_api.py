"""POST /createRoom through the real routes (spec: client-server create_room.yaml)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from events.models import Event
from rooms.models import Room
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import event_count, room_events, state_by_key

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def _state(matrix: MatrixClient, user: TestUser, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    return state_by_key(matrix.room_state(user, room_id))


def test_create_room_returns_room_id_on_both_prefixes(any_prefix_client: MatrixClient) -> None:
    user = any_prefix_client.register("carol")
    body = any_prefix_client.post("createRoom", {}, token=user).json()
    assert set(body) == {"room_id"}
    assert body["room_id"].startswith("!")
    assert Room.objects.filter(room_id=body["room_id"]).exists()


def test_create_room_needs_a_token(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.post("createRoom", {}, expect=None), 401, "M_MISSING_TOKEN")


def test_initial_events_follow_the_spec_order(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice,
        preset="private_chat",
        room_alias_name="ordered",
        initial_state=[
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ],
        name="The name",
        topic="The topic",
        invite=[bob.user_id],
    )
    order = [(e.type, e.state_key) for e in room_events(room_id)]
    assert order == [
        ("m.room.create", ""),  # 1
        ("m.room.member", alice.user_id),  # 2
        ("m.room.power_levels", ""),  # 3
        ("m.room.canonical_alias", ""),  # 4
        ("m.room.join_rules", ""),  # 5 (preset)
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("m.room.encryption", ""),  # 6 (initial_state, in order)
        ("org.example.custom", "k"),
        ("m.room.name", ""),  # 7
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),  # 8 (invites)
    ]
    # Each event points at the one before it and has the next depth.
    events = room_events(room_id)
    for before, after in zip(events, events[1:]):
        assert after.prev_events == [before.event_id]
        assert after.depth == before.depth + 1
    # Positions are strictly increasing and the room's tip is the last event.
    room = Room.objects.get(room_id=room_id)
    assert room.last_event_id == events[-1].event_id
    assert room.last_stream_pos == events[-1].stream_pos


def test_the_creator_is_joined_and_has_top_power(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, room_version="11")
    state = _state(matrix, alice, room_id)
    assert state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    pl = state[("m.room.power_levels", "")]["content"]
    assert pl["users"] == {alice.user_id: 100}
    assert pl["state_default"] == 50 and pl["events_default"] == 0
    create = state[("m.room.create", "")]
    assert create["sender"] == alice.user_id
    assert create["content"]["room_version"] == "11"
    assert "creator" not in create["content"]  # v11 removed it: the sender is the creator
    assert matrix.get("joined_rooms", token=alice).json() == {"joined_rooms": [room_id]}


@pytest.mark.parametrize(
    ("preset", "join_rule", "history", "guest"),
    [
        ("private_chat", "invite", "shared", "can_join"),
        ("trusted_private_chat", "invite", "shared", "can_join"),
        ("public_chat", "public", "shared", "forbidden"),
    ],
)
def test_presets_set_the_spec_state(
    matrix: MatrixClient, alice: TestUser, preset: str, join_rule: str, history: str, guest: str
) -> None:
    room_id = matrix.create_room(alice, preset=preset)
    assert matrix.get_state(alice, room_id, "m.room.join_rules") == {"join_rule": join_rule}
    assert matrix.get_state(alice, room_id, "m.room.history_visibility") == {"history_visibility": history}
    assert matrix.get_state(alice, room_id, "m.room.guest_access") == {"guest_access": guest}


@pytest.mark.parametrize(
    ("visibility", "join_rule"), [("public", "public"), ("private", "invite"), (None, "invite")]
)
def test_visibility_picks_the_preset_when_none_is_given(
    matrix: MatrixClient, alice: TestUser, visibility: str | None, join_rule: str
) -> None:
    body = {"visibility": visibility} if visibility else {}
    room_id = matrix.create_room(alice, **body)
    assert matrix.get_state(alice, room_id, "m.room.join_rules")["join_rule"] == join_rule


def test_public_visibility_publishes_the_room(matrix: MatrixClient, alice: TestUser) -> None:
    public = matrix.create_room(alice, visibility="public", name="Pub")
    private = matrix.create_room(alice, name="Hidden")
    listed = [r["room_id"] for r in matrix.get("publicRooms", token=alice).json()["chunk"]]
    assert public in listed and private not in listed
    assert matrix.get(f"directory/list/room/{q(public)}").json() == {"visibility": "public"}
    assert matrix.get(f"directory/list/room/{q(private)}").json() == {"visibility": "private"}


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_each_supported_room_version_can_be_created(
    matrix: MatrixClient, alice: TestUser, version: str
) -> None:
    room_id = matrix.create_room(alice, room_version=version)
    create = matrix.get_state(alice, room_id, "m.room.create")
    assert create["room_version"] == version
    assert Room.objects.get(room_id=room_id).version == version
    if version == "10":
        assert create["creator"] == alice.user_id
    # The room works: the creator can talk in it.
    matrix.send_text(alice, room_id, "hello")


def test_the_default_room_version_is_12(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    assert matrix.get_state(alice, room_id, "m.room.create")["room_version"] == "12"


def test_v12_room_id_is_the_create_event_hash(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, room_version="12")
    assert ":" not in room_id  # no server part
    create = Event.objects.get(room_id=room_id, type="m.room.create")
    assert room_id == "!" + create.event_id[1:]
    assert create.auth_events == [] and create.prev_events == []
    # v12: the create event is not among any other event's auth_events.
    for event in room_events(room_id)[1:]:
        assert create.event_id not in event.auth_events
    # The creator has infinite power, so is not listed in the power levels.
    assert matrix.get_state(alice, room_id, "m.room.power_levels")["users"] == {}
    # v12: the tombstone level is explicitly above state_default.
    pl = matrix.get_state(alice, room_id, "m.room.power_levels")
    assert pl["events"]["m.room.tombstone"] > pl["state_default"]


@pytest.mark.parametrize("version", ["10", "11"])
def test_legacy_room_ids_carry_the_server_name(matrix: MatrixClient, alice: TestUser, version: str) -> None:
    room_id = matrix.create_room(alice, room_version=version)
    assert room_id.endswith(":test.local")
    create = Event.objects.get(room_id=room_id, type="m.room.create")
    assert room_id != "!" + create.event_id[1:]


@pytest.mark.parametrize("version", ["1", "9", "13", "org.example.v99", ""])
def test_unknown_room_version_is_rejected(matrix: MatrixClient, alice: TestUser, version: str) -> None:
    before = event_count()
    resp = matrix.post("createRoom", {"room_version": version}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_UNSUPPORTED_ROOM_VERSION")
    assert event_count() == before and Room.objects.count() == 0


def test_room_alias_name_creates_the_alias(matrix: MatrixClient, alice: TestUser) -> None:
    body = matrix.post("createRoom", {"room_alias_name": "pub"}, token=alice).json()
    assert body["room_alias"] == "#pub:test.local"
    room_id = body["room_id"]
    assert matrix.get(f"directory/room/{q('#pub:test.local')}").json()["room_id"] == room_id
    assert matrix.get_state(alice, room_id, "m.room.canonical_alias") == {"alias": "#pub:test.local"}
    assert Room.objects.get(room_id=room_id).canonical_alias == "#pub:test.local"


def test_taken_alias_is_m_room_in_use_and_creates_nothing(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    matrix.create_room(alice, room_alias_name="taken")
    rooms, events = Room.objects.count(), event_count()
    resp = matrix.post("createRoom", {"room_alias_name": "taken"}, token=bob, expect=None)
    assert_matrix_error(resp, 400, "M_ROOM_IN_USE")
    assert Room.objects.count() == rooms and event_count() == events


@pytest.mark.parametrize("localpart", ["a:b", "with space", "tab\there", "", "#hash"])
def test_invalid_alias_name_is_m_invalid_param(matrix: MatrixClient, alice: TestUser, localpart: str) -> None:
    resp = matrix.post("createRoom", {"room_alias_name": localpart}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert Room.objects.count() == 0


def test_name_and_topic(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, name="Lounge", topic="Chat about anything")
    assert matrix.get_state(alice, room_id, "m.room.name") == {"name": "Lounge"}
    topic = matrix.get_state(alice, room_id, "m.room.topic")
    assert topic["topic"] == "Chat about anything"
    assert topic["m.topic"]["m.text"][0] == {"mimetype": "text/plain", "body": "Chat about anything"}
    room = Room.objects.get(room_id=room_id)
    assert (room.name, room.topic) == ("Lounge", "Chat about anything")


def test_name_and_topic_override_initial_state(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(
        alice,
        name="From name",
        initial_state=[{"type": "m.room.name", "content": {"name": "From initial_state"}}],
    )
    assert matrix.get_state(alice, room_id, "m.room.name") == {"name": "From name"}


def test_invite_gives_invitees_an_invite(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    carol = make_user("carol")
    room_id = matrix.create_room(alice, invite=[bob.user_id, carol.user_id])
    state = _state(matrix, alice, room_id)
    for user in (bob, carol):
        member = state[("m.room.member", user.user_id)]
        assert member["content"]["membership"] == "invite"
        assert member["sender"] == alice.user_id
        assert "is_direct" not in member["content"]
    # The invitee can accept.
    matrix.join(bob, room_id)
    assert matrix.get_state(alice, room_id, "m.room.member", bob.user_id)["membership"] == "join"


def test_is_direct_marks_the_invites(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, invite=[bob.user_id], is_direct=True, preset="trusted_private_chat")
    member = matrix.get_state(alice, room_id, "m.room.member", bob.user_id)
    assert member["membership"] == "invite" and member["is_direct"] is True
    # The creator's own join is not marked.
    assert "is_direct" not in matrix.get_state(alice, room_id, "m.room.member", alice.user_id)


def test_inviting_an_unknown_local_user_fails_and_creates_nothing(
    matrix: MatrixClient, alice: TestUser
) -> None:
    resp = matrix.post("createRoom", {"invite": ["@nobody:test.local"]}, token=alice, expect=None)
    assert resp.status_code in (400, 404), resp.content
    assert Room.objects.count() == 0 and event_count() == 0


def test_initial_state_overrides_the_preset_event(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(
        alice,
        preset="public_chat",
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
    )
    assert matrix.get_state(alice, room_id, "m.room.history_visibility") == {"history_visibility": "joined"}
    # Only one history_visibility event: the preset's was replaced, not sent and overwritten.
    events = room_events(room_id)
    assert [e.type for e in events].count("m.room.history_visibility") == 1
    assert matrix.get_state(alice, room_id, "m.room.join_rules") == {"join_rule": "public"}  # rest of preset
    assert Room.objects.get(room_id=room_id).history_visibility == "joined"


def test_creation_content_is_merged_and_server_keys_win(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(
        alice,
        room_version="10",
        creation_content={
            "m.federate": False,
            "creator": "@mallory:test.local",
            "room_version": "1",
            "type": "m.space",
        },
    )
    create = matrix.get_state(alice, room_id, "m.room.create")
    assert create["m.federate"] is False
    assert create["creator"] == alice.user_id
    assert create["room_version"] == "10"
    assert create["type"] == "m.space"
    assert Room.objects.get(room_id=room_id).room_type == "m.space"


def test_creation_content_creator_is_dropped_from_v11(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(
        alice, room_version="11", creation_content={"creator": "@mallory:test.local"}
    )
    assert "creator" not in matrix.get_state(alice, room_id, "m.room.create")


def test_power_level_content_override(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice,
        room_version="11",
        preset="public_chat",
        power_level_content_override={"events_default": 10, "users": {alice.user_id: 100, bob.user_id: 10}},
    )
    pl = matrix.get_state(alice, room_id, "m.room.power_levels")
    assert pl["events_default"] == 10
    assert pl["users"] == {alice.user_id: 100, bob.user_id: 10}
    assert pl["state_default"] == 50  # the rest of the default content stays


def test_override_that_locks_out_the_creator_is_invalid_room_state(
    matrix: MatrixClient, alice: TestUser
) -> None:
    resp = matrix.post(
        "createRoom",
        {
            "room_version": "11",
            "name": "x",
            "power_level_content_override": {"users": {alice.user_id: 0}},
        },
        token=alice,
        expect=None,
    )
    assert_matrix_error(resp, 400, "M_INVALID_ROOM_STATE")
    assert Room.objects.count() == 0 and event_count() == 0


def test_v12_override_cannot_list_the_creator(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.post(
        "createRoom",
        {
            "room_version": "12",
            "power_level_content_override": {"users": {alice.user_id: 100}},
        },
        token=alice,
        expect=None,
    )
    assert_matrix_error(resp, 400, "M_INVALID_ROOM_STATE")
    assert Room.objects.count() == 0


def test_trusted_private_chat_v12_makes_invitees_additional_creators(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    carol = make_user("carol")
    room_id = matrix.create_room(
        alice,
        room_version="12",
        preset="trusted_private_chat",
        invite=[bob.user_id],
        creation_content={"additional_creators": [carol.user_id, bob.user_id]},
    )
    create = matrix.get_state(alice, room_id, "m.room.create")
    assert sorted(create["additional_creators"]) == sorted([carol.user_id, bob.user_id])  # deduplicated
    assert matrix.get_state(alice, room_id, "m.room.power_levels")["users"] == {}
    # bob, once joined, has creator power: he may change the power levels.
    matrix.join(bob, room_id)
    matrix.send_state(bob, room_id, "m.room.name", {"name": "bob was here"})
    pl = matrix.get_state(bob, room_id, "m.room.power_levels")
    pl["events_default"] = 5
    matrix.send_state(bob, room_id, "m.room.power_levels", pl)


def test_trusted_private_chat_v11_gives_invitees_creator_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(
        alice, room_version="11", preset="trusted_private_chat", invite=[bob.user_id]
    )
    pl = matrix.get_state(alice, room_id, "m.room.power_levels")
    assert pl["users"] == {alice.user_id: 100, bob.user_id: 100}
    assert "additional_creators" not in matrix.get_state(alice, room_id, "m.room.create")


def test_private_chat_v12_does_not_add_creators(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, room_version="12", preset="private_chat", invite=[bob.user_id])
    assert "additional_creators" not in matrix.get_state(alice, room_id, "m.room.create")


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5},
        {"topic": ["x"]},
        {"invite": "@bob:test.local"},
        {"invite": [1]},
        {"initial_state": {"type": "m.room.name"}},
        {"initial_state": [{"content": {}}]},
        {"initial_state": [{"type": "m.room.name", "content": "x"}]},
        {"initial_state": [{"type": "m.room.name", "state_key": 3, "content": {}}]},
        {"creation_content": []},
        {"power_level_content_override": "x"},
        {"is_direct": "yes"},
        {"room_version": 12},
        {"room_alias_name": 7},
        {"visibility": 1},
        {"preset": ["public_chat"]},
    ],
)
def test_bad_body_types_are_m_bad_json(matrix: MatrixClient, alice: TestUser, body: dict[str, Any]) -> None:
    assert_matrix_error(matrix.post("createRoom", body, token=alice, expect=None), 400, "M_BAD_JSON")
    assert Room.objects.count() == 0


def test_body_must_be_a_json_object(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(matrix.post("createRoom", [1], token=alice, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(
        matrix.request("POST", "createRoom", raw=b"{nope", token=alice, expect=None), 400, "M_NOT_JSON"
    )


def test_unknown_preset_and_visibility_are_invalid_param(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(
        matrix.post("createRoom", {"preset": "secret"}, token=alice, expect=None), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(
        matrix.post("createRoom", {"visibility": "hidden"}, token=alice, expect=None), 400, "M_INVALID_PARAM"
    )


def test_create_event_cannot_come_from_initial_state(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.post(
        "createRoom", {"initial_state": [{"type": "m.room.create", "content": {}}]}, token=alice, expect=None
    )
    assert resp.status_code == 400, resp.content
    assert Room.objects.count() == 0


def test_identical_v12_rooms_created_in_the_same_millisecond_get_different_ids(
    matrix: MatrixClient, alice: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The v12 room ID is the create event's hash: same creator, content and timestamp → same ID.
    from events import actions as event_actions

    monkeypatch.setattr(event_actions, "_now_ms", lambda: 1_700_000_000_000)
    first = matrix.post("createRoom", {"preset": "private_chat"}, token=alice).json()["room_id"]
    second = matrix.post("createRoom", {"preset": "private_chat"}, token=alice).json()["room_id"]
    assert first != second
    assert matrix.get("joined_rooms", token=alice).json()["joined_rooms"] == sorted([first, second])
