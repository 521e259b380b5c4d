"""Room aliases and the published room directory: /directory/room/{alias}, /rooms/{id}/aliases,
/directory/list/room/{id} and /publicRooms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from rooms.models import Room, RoomAlias
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import event_count, joined_room_with, set_power_levels

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def _alias_path(alias: str) -> str:
    return f"directory/room/{q(alias)}"


def _put_alias(
    matrix: MatrixClient, user: TestUser, alias: str, room_id: str, expect: int | None = 200
) -> Any:
    return matrix.put(_alias_path(alias), {"room_id": room_id}, token=user, expect=expect)


# -- /directory/room/{roomAlias} ---------------------------------------------------------------------


def test_put_get_delete_alias(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice = matrix.register("alice")
    room_id = matrix.create_room(alice)
    assert _put_alias(matrix, alice, "#office:test.local", room_id).json() == {}
    assert matrix.get(_alias_path("#office:test.local")).json() == {
        "room_id": room_id,
        "servers": ["test.local"],
    }
    assert matrix.get(f"rooms/{q(room_id)}/aliases", token=alice).json() == {
        "aliases": ["#office:test.local"]
    }
    assert matrix.delete(_alias_path("#office:test.local"), token=alice).json() == {}
    assert_matrix_error(matrix.get(_alias_path("#office:test.local"), expect=None), 404, "M_NOT_FOUND")
    assert matrix.get(f"rooms/{q(room_id)}/aliases", token=alice).json() == {"aliases": []}


def test_taken_alias_is_409(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    other = matrix.create_room(alice)
    _put_alias(matrix, alice, "#taken:test.local", room_id)
    resp = _put_alias(matrix, alice, "#taken:test.local", other, expect=None)
    assert_matrix_error(resp, 409, "M_UNKNOWN")
    assert matrix.get(_alias_path("#taken:test.local")).json()["room_id"] == room_id
    # Also when createRoom took it.
    matrix.create_room(alice, room_alias_name="fromcreate")
    assert_matrix_error(
        _put_alias(matrix, alice, "#fromcreate:test.local", other, expect=None), 409, "M_UNKNOWN"
    )


@pytest.mark.parametrize(
    "alias", ["#office:elsewhere.example", "#office", "office:test.local", "#:test.local", "#a:bad server"]
)
def test_bad_or_foreign_alias_is_invalid_param(matrix: MatrixClient, alice: TestUser, alias: str) -> None:
    room_id = matrix.create_room(alice)
    assert_matrix_error(_put_alias(matrix, alice, alias, room_id, expect=None), 400, "M_INVALID_PARAM")
    assert RoomAlias.objects.count() == 0


@pytest.mark.parametrize("alias", ["#office", "office:test.local"])
def test_get_and_delete_of_an_invalid_alias_is_invalid_param(
    matrix: MatrixClient, alice: TestUser, alias: str
) -> None:
    assert_matrix_error(matrix.get(_alias_path(alias), expect=None), 400, "M_INVALID_PARAM")
    assert_matrix_error(matrix.delete(_alias_path(alias), token=alice, expect=None), 400, "M_INVALID_PARAM")


def test_unknown_alias_is_not_found(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(matrix.get(_alias_path("#nothing:test.local"), expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.delete(_alias_path("#nothing:test.local"), token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    # An alias of another server can't be resolved by a server that doesn't federate.
    assert_matrix_error(matrix.get(_alias_path("#x:elsewhere.example"), expect=None), 404, "M_NOT_FOUND")


def test_put_alias_request_errors(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice)
    path = _alias_path("#x:test.local")
    assert_matrix_error(matrix.put(path, {}, token=alice, expect=None), 400, "M_MISSING_PARAM")
    assert_matrix_error(matrix.put(path, {"room_id": 5}, token=alice, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(
        matrix.put(path, {"room_id": "!nosuch:test.local"}, token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    assert_matrix_error(matrix.put(path, {"room_id": room_id}, expect=None), 401, "M_MISSING_TOKEN")
    # Only members may name a room.
    assert_matrix_error(_put_alias(matrix, bob, "#x:test.local", room_id, expect=None), 403, "M_FORBIDDEN")
    assert RoomAlias.objects.count() == 0


def test_delete_by_the_alias_creator_without_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    _put_alias(matrix, bob, "#bobs:test.local", room_id)
    matrix.delete(_alias_path("#bobs:test.local"), token=bob)
    assert not RoomAlias.objects.filter(alias="#bobs:test.local").exists()


def test_delete_by_the_room_admin(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    _put_alias(matrix, bob, "#bobs:test.local", room_id)
    matrix.delete(_alias_path("#bobs:test.local"), token=alice)
    assert not RoomAlias.objects.filter(alias="#bobs:test.local").exists()


def test_delete_is_forbidden_to_others(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob)
    _put_alias(matrix, alice, "#alices:test.local", room_id)
    for user in (bob, carol):  # a member without power, an outsider
        resp = matrix.delete(_alias_path("#alices:test.local"), token=user, expect=None)
        assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert RoomAlias.objects.filter(alias="#alices:test.local").exists()
    assert_matrix_error(matrix.delete(_alias_path("#alices:test.local"), expect=None), 401, "M_MISSING_TOKEN")


def test_deleting_the_canonical_alias_updates_the_event(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, room_alias_name="main")
    _put_alias(matrix, alice, "#alt:test.local", room_id)
    matrix.send_state(
        alice,
        room_id,
        "m.room.canonical_alias",
        {"alias": "#main:test.local", "alt_aliases": ["#alt:test.local"]},
    )
    matrix.delete(_alias_path("#main:test.local"), token=alice)
    assert matrix.get_state(alice, room_id, "m.room.canonical_alias") == {"alt_aliases": ["#alt:test.local"]}
    assert Room.objects.get(room_id=room_id).canonical_alias is None
    matrix.delete(_alias_path("#alt:test.local"), token=alice)
    assert matrix.get_state(alice, room_id, "m.room.canonical_alias") == {"alt_aliases": []}


def test_deleting_a_non_canonical_alias_sends_no_event(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, room_alias_name="main")
    _put_alias(matrix, alice, "#other:test.local", room_id)
    before = event_count()
    matrix.delete(_alias_path("#other:test.local"), token=alice)
    assert event_count() == before
    assert matrix.get_state(alice, room_id, "m.room.canonical_alias") == {"alias": "#main:test.local"}


def test_alias_creator_without_power_deletes_the_canonical_alias(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    # Spec: delete the alias "and return a successful response even if the user does not have
    # permission to update the m.room.canonical_alias event".
    room_id = joined_room_with(matrix, alice, bob)
    _put_alias(matrix, bob, "#bobs:test.local", room_id)
    matrix.send_state(alice, room_id, "m.room.canonical_alias", {"alias": "#bobs:test.local"})
    before = event_count()
    matrix.delete(_alias_path("#bobs:test.local"), token=bob)
    assert not RoomAlias.objects.filter(alias="#bobs:test.local").exists()
    assert event_count() == before
    assert matrix.get_state(alice, room_id, "m.room.canonical_alias") == {"alias": "#bobs:test.local"}


def test_room_aliases_list(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, room_alias_name="b")
    _put_alias(matrix, alice, "#a:test.local", room_id)
    assert matrix.get(f"rooms/{q(room_id)}/aliases", token=alice).json() == {
        "aliases": ["#a:test.local", "#b:test.local"]
    }
    assert_matrix_error(matrix.get(f"rooms/{q(room_id)}/aliases", token=bob, expect=None), 403, "M_FORBIDDEN")
    matrix.send_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "world_readable"})
    assert len(matrix.get(f"rooms/{q(room_id)}/aliases", token=bob).json()["aliases"]) == 2


# -- /directory/list/room/{roomId} --------------------------------------------------------------------


def test_directory_visibility(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob, visibility="private")
    path = f"directory/list/room/{q(room_id)}"
    assert matrix.get(path).json() == {"visibility": "private"}
    assert_matrix_error(
        matrix.put(path, {"visibility": "public"}, token=bob, expect=None), 403, "M_FORBIDDEN"
    )
    assert matrix.get(path).json() == {"visibility": "private"}
    assert matrix.put(path, {"visibility": "public"}, token=alice).json() == {}
    assert matrix.get(path).json() == {"visibility": "public"}
    assert room_id in [r["room_id"] for r in matrix.get("publicRooms").json()["chunk"]]
    matrix.put(path, {"visibility": "private"}, token=alice)
    assert room_id not in [r["room_id"] for r in matrix.get("publicRooms").json()["chunk"]]


def test_directory_visibility_power_can_be_granted(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, visibility="private")
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 50})
    matrix.put(f"directory/list/room/{q(room_id)}", {"visibility": "public"}, token=bob)


def test_directory_visibility_errors(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    unknown = f"directory/list/room/{q('!nosuch:test.local')}"
    assert_matrix_error(matrix.get(unknown, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.put(unknown, {"visibility": "public"}, token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    path = f"directory/list/room/{q(room_id)}"
    assert_matrix_error(
        matrix.put(path, {"visibility": "secret"}, token=alice, expect=None), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(matrix.put(path, {"visibility": "public"}, expect=None), 401, "M_MISSING_TOKEN")


# -- /publicRooms -------------------------------------------------------------------------------------


def _published(matrix: MatrixClient, owner: TestUser, n: int, members: list[TestUser]) -> list[str]:
    """n public rooms; room i has i+1 joined members (so the directory order is known)."""
    rooms = []
    for i in range(n):
        room_id = matrix.create_room(owner, visibility="public", name=f"Room {i}", topic=f"topic {i}")
        for member in members[:i]:
            matrix.join(member, room_id)
        rooms.append(room_id)
    return rooms


def test_public_rooms_entries(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice,
        visibility="public",
        name="Pub",
        topic="Beer",
        room_alias_name="pub",
        initial_state=[{"type": "m.room.avatar", "content": {"url": "mxc://test.local/a"}}],
    )
    matrix.join(bob, room_id)
    matrix.create_room(alice, visibility="private", name="Hidden")
    body = matrix.get("publicRooms").json()  # no token needed for GET
    assert body["total_room_count_estimate"] == 1
    assert body["chunk"] == [
        {
            "room_id": room_id,
            "name": "Pub",
            "topic": "Beer",
            "canonical_alias": "#pub:test.local",
            "avatar_url": "mxc://test.local/a",
            "num_joined_members": 2,
            "world_readable": False,
            "guest_can_join": False,
            "join_rule": "public",
        }
    ]
    assert "next_batch" not in body and "prev_batch" not in body
    assert matrix.post("publicRooms", {}, token=alice).json() == body


def test_public_rooms_post_needs_a_token(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.post("publicRooms", {}, expect=None), 401, "M_MISSING_TOKEN")


def test_public_rooms_order_and_counts(matrix: MatrixClient, alice: TestUser, make_user) -> None:
    members = [make_user() for _ in range(3)]
    rooms = _published(matrix, alice, 4, members)
    chunk = matrix.get("publicRooms").json()["chunk"]
    assert [r["room_id"] for r in chunk] == list(reversed(rooms))  # largest first
    assert [r["num_joined_members"] for r in chunk] == [4, 3, 2, 1]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_public_rooms_paging(matrix: MatrixClient, alice: TestUser, make_user, method: str) -> None:
    members = [make_user() for _ in range(4)]
    rooms = list(reversed(_published(matrix, alice, 5, members)))

    def page(limit: int, since: str | None = None) -> dict[str, Any]:
        if method == "GET":
            return matrix.get("publicRooms", query={"limit": limit, "since": since}).json()
        body: dict[str, Any] = {"limit": limit}
        if since:
            body["since"] = since
        return matrix.post("publicRooms", body, token=alice).json()

    first = page(2)
    assert [r["room_id"] for r in first["chunk"]] == rooms[:2]
    assert first["total_room_count_estimate"] == 5
    assert "prev_batch" not in first
    second = page(2, first["next_batch"])
    assert [r["room_id"] for r in second["chunk"]] == rooms[2:4]
    third = page(2, second["next_batch"])
    assert [r["room_id"] for r in third["chunk"]] == rooms[4:]
    assert "next_batch" not in third
    # prev_batch goes back one page.
    back = page(2, third["prev_batch"])
    assert [r["room_id"] for r in back["chunk"]] == rooms[2:4]
    assert [r["room_id"] for r in page(2, second["prev_batch"])["chunk"]] == rooms[:2]


def test_public_rooms_bad_paging_parameters(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(
        matrix.get("publicRooms", query={"since": "garbage"}, expect=None), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(
        matrix.get("publicRooms", query={"limit": "ten"}, expect=None), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(matrix.get("publicRooms", query={"limit": "-1"}, expect=None), 400, "M_INVALID_PARAM")
    assert_matrix_error(
        matrix.post("publicRooms", {"limit": "5"}, token=alice, expect=None), 400, "M_BAD_JSON"
    )
    assert_matrix_error(
        matrix.post("publicRooms", {"filter": []}, token=alice, expect=None), 400, "M_BAD_JSON"
    )
    assert_matrix_error(
        matrix.post("publicRooms", {"since": "x"}, token=alice, expect=None), 400, "M_INVALID_PARAM"
    )


def test_public_rooms_generic_search_term(matrix: MatrixClient, alice: TestUser) -> None:
    by_name = matrix.create_room(alice, visibility="public", name="Gardening Club")
    by_topic = matrix.create_room(alice, visibility="public", name="Other", topic="all about GARDENS")
    by_alias = matrix.create_room(alice, visibility="public", room_alias_name="gardenparty")
    matrix.create_room(alice, visibility="public", name="Cooking")
    matrix.create_room(alice, visibility="private", name="Secret garden")
    body = matrix.post("publicRooms", {"filter": {"generic_search_term": "garden"}}, token=alice).json()
    assert {r["room_id"] for r in body["chunk"]} == {by_name, by_topic, by_alias}
    assert body["total_room_count_estimate"] == 3
    body = matrix.post(
        "publicRooms", {"filter": {"generic_search_term": "garden"}, "limit": 1}, token=alice
    ).json()
    assert len(body["chunk"]) == 1 and "next_batch" in body
    nothing = matrix.post("publicRooms", {"filter": {"generic_search_term": "zzz"}}, token=alice).json()
    assert nothing["chunk"] == [] and nothing["total_room_count_estimate"] == 0


def test_public_rooms_room_types_filter(matrix: MatrixClient, alice: TestUser) -> None:
    space = matrix.create_room(alice, visibility="public", creation_content={"type": "m.space"})
    room = matrix.create_room(alice, visibility="public")

    def listed(room_types: list[Any]) -> set[str]:
        body = matrix.post("publicRooms", {"filter": {"room_types": room_types}}, token=alice).json()
        return {r["room_id"] for r in body["chunk"]}

    assert listed(["m.space"]) == {space}
    assert listed([None]) == {room}
    assert listed([None, "m.space"]) == {space, room}
    chunk = matrix.get("publicRooms").json()["chunk"]
    assert {r["room_id"]: r.get("room_type") for r in chunk} == {space: "m.space", room: None}


def test_blocked_rooms_are_not_listed(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, visibility="public")
    Room.objects.filter(room_id=room_id).update(blocked=True)
    assert matrix.get("publicRooms").json()["chunk"] == []


def test_public_rooms_num_joined_members_follows_membership(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, visibility="public")
    matrix.join(bob, room_id)
    assert matrix.get("publicRooms").json()["chunk"][0]["num_joined_members"] == 2
    matrix.leave(bob, room_id)
    assert matrix.get("publicRooms").json()["chunk"][0]["num_joined_members"] == 1
