"""Membership through the real routes: invite, join, leave, forget, kick, ban, unban, knock, and the
member lists (joined_rooms, members, joined_members)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from accounts.actions import set_displayname
from accounts.models import User
from events.models import Event
from rooms.models import Membership, Room
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import event_count, joined_room_with, room_events, set_power_levels

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def _membership(matrix: MatrixClient, viewer: TestUser, room_id: str, user: TestUser) -> dict[str, Any]:
    return matrix.get_state(viewer, room_id, "m.room.member", user.user_id)


def _member_event(room_id: str, user: TestUser) -> Event:
    return Event.objects.filter(room_id=room_id, type="m.room.member", state_key=user.user_id).latest(
        "stream_pos"
    )


@pytest.fixture
def carol(make_user) -> TestUser:
    return make_user("carol")


# -- invite -------------------------------------------------------------------------------------------


def test_invite_gives_the_target_an_invite(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice, bob = matrix.register("alice"), matrix.register("bob")
    room_id = matrix.create_room(alice)
    assert matrix.invite(alice, room_id, bob.user_id).json() == {}
    member = _membership(matrix, alice, room_id, bob)
    assert member["membership"] == "invite"
    event = _member_event(room_id, bob)
    assert event.sender == alice.user_id
    assert Membership.objects.get(room_id=room_id, mxid=bob.user_id).membership == "invite"
    assert Room.objects.get(room_id=room_id).invited_count == 1


def test_invite_with_reason_and_is_direct(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice)
    matrix.invite(alice, room_id, bob.user_id, reason="come chat", is_direct=True)
    content = _membership(matrix, alice, room_id, bob)
    assert content["reason"] == "come chat" and content["is_direct"] is True


def test_non_member_cannot_invite(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    before = event_count()
    assert_matrix_error(matrix.invite(bob, room_id, carol.user_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before


def test_invite_needs_the_invite_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)  # public_chat: invite level 50
    before = event_count()
    assert_matrix_error(matrix.invite(bob, room_id, carol.user_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    set_power_levels(matrix, alice, room_id, invite=0)
    matrix.invite(bob, room_id, carol.user_id)


@pytest.mark.parametrize("state", ["join", "ban"])
def test_cannot_invite_a_joined_or_banned_user(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, state: str
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    if state == "ban":
        matrix.ban(alice, room_id, bob.user_id)
    assert_matrix_error(matrix.invite(alice, room_id, bob.user_id, expect=None), 403, "M_FORBIDDEN")


def test_invite_request_errors(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    path = f"rooms/{q(room_id)}/invite"
    assert_matrix_error(matrix.post(path, {}, token=alice, expect=None), 400, "M_MISSING_PARAM")
    assert_matrix_error(matrix.post(path, {"user_id": 5}, token=alice, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(
        matrix.post(path, {"user_id": "bob"}, token=alice, expect=None), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(
        matrix.post(path, {"user_id": "@nobody:test.local"}, token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    # This server does not federate.
    assert_matrix_error(
        matrix.post(path, {"user_id": "@bob:elsewhere.example"}, token=alice, expect=None), 403, "M_FORBIDDEN"
    )
    assert_matrix_error(
        matrix.invite(alice, "!nosuch:test.local", alice.user_id, expect=None), 404, "M_NOT_FOUND"
    )


def test_only_the_invited_user_can_accept(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="private_chat")
    matrix.invite(alice, room_id, bob.user_id)
    before = event_count()
    assert_matrix_error(matrix.join(carol, room_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    # Nobody can join on bob's behalf through the state API either.
    resp = matrix.send_state(
        carol, room_id, "m.room.member", {"membership": "join"}, state_key=bob.user_id, expect=None
    )
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert matrix.join(bob, room_id).json() == {"room_id": room_id}
    assert _membership(matrix, alice, room_id, bob)["membership"] == "join"
    room = Room.objects.get(room_id=room_id)
    assert (room.joined_count, room.invited_count) == (2, 0)


# -- join ---------------------------------------------------------------------------------------------


def test_join_by_room_id(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice, bob = matrix.register("alice"), matrix.register("bob")
    room_id = matrix.create_room(alice, preset="public_chat")
    resp = matrix.post(f"rooms/{q(room_id)}/join", {}, token=bob)
    assert resp.json() == {"room_id": room_id}
    assert _membership(matrix, alice, room_id, bob)["membership"] == "join"


def test_join_by_room_id_or_alias(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat", room_alias_name="lobby")
    assert matrix.join(bob, room_id).json() == {"room_id": room_id}
    assert matrix.join(carol, "#lobby:test.local").json() == {"room_id": room_id}
    assert _membership(matrix, alice, room_id, carol)["membership"] == "join"


def test_join_with_an_empty_or_form_body(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.request(
        "POST", f"join/{q(room_id)}", raw=b"", token=bob, content_type="application/x-www-form-urlencoded"
    )
    assert _membership(matrix, alice, room_id, bob)["membership"] == "join"


def test_join_unknown_alias_or_room(matrix: MatrixClient, alice: TestUser) -> None:
    before = event_count()
    assert_matrix_error(matrix.join(alice, "#nosuch:test.local", expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(matrix.join(alice, "!nosuch:test.local", expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(matrix.join(alice, "nosuch", expect=None), 400, "M_INVALID_PARAM")
    assert_matrix_error(matrix.join(alice, "#bad", expect=None), 400, "M_INVALID_PARAM")
    assert event_count() == before


def test_joining_an_invite_only_room_without_invite_is_forbidden(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="private_chat")
    before = event_count()
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")
    assert_matrix_error(
        matrix.post(f"rooms/{q(room_id)}/join", {}, token=bob, expect=None), 403, "M_FORBIDDEN"
    )
    assert event_count() == before
    assert not Membership.objects.filter(room_id=room_id, mxid=bob.user_id).exists()


def test_joining_again_changes_nothing(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.join(bob, room_id)
    before = event_count()
    assert matrix.join(bob, room_id).json() == {"room_id": room_id}
    assert matrix.join(alice, room_id).json() == {"room_id": room_id}
    assert event_count() == before
    assert Room.objects.get(room_id=room_id).joined_count == 2


def test_join_reason_is_stored(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.join(bob, room_id, reason="hello all")
    assert _membership(matrix, alice, room_id, bob)["reason"] == "hello all"


def test_join_carries_the_display_name(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    set_displayname(user=User.objects.get(mxid=bob.user_id), displayname="Bobby")
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.join(bob, room_id)
    assert _membership(matrix, alice, room_id, bob)["displayname"] == "Bobby"
    joined = matrix.get(f"rooms/{q(room_id)}/joined_members", token=alice).json()["joined"]
    assert joined[bob.user_id]["display_name"] == "Bobby"


# -- leave and forget ------------------------------------------------------------------------------


def test_leave(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    assert matrix.leave(bob, room_id, reason="bye").json() == {}
    member = _membership(matrix, alice, room_id, bob)
    assert member == {"membership": "leave", "reason": "bye"}
    assert _member_event(room_id, bob).sender == bob.user_id
    assert matrix.get("joined_rooms", token=bob).json() == {"joined_rooms": []}
    assert Room.objects.get(room_id=room_id).joined_count == 1


def test_leaving_twice_writes_nothing(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    before = event_count()
    matrix.leave(bob, room_id)
    assert event_count() == before


def test_leaving_a_room_never_joined_is_forbidden(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    assert_matrix_error(matrix.leave(bob, room_id, expect=None), 403, "M_FORBIDDEN")
    assert_matrix_error(matrix.leave(bob, "!nosuch:test.local", expect=None), 404, "M_NOT_FOUND")


def test_rejecting_an_invite_by_leaving(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice)
    matrix.invite(alice, room_id, bob.user_id)
    matrix.leave(bob, room_id, reason="no thanks")
    assert _membership(matrix, alice, room_id, bob) == {"membership": "leave", "reason": "no thanks"}
    assert Room.objects.get(room_id=room_id).invited_count == 0
    # Now bob can no longer join the invite-only room.
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")


def test_banned_user_cannot_leave(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.ban(alice, room_id, bob.user_id)
    assert_matrix_error(matrix.leave(bob, room_id, expect=None), 403, "M_FORBIDDEN")


def test_forget_only_after_leaving(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    path = f"rooms/{q(room_id)}/forget"
    before = event_count()
    assert_matrix_error(matrix.post(path, {}, token=bob, expect=None), 400, "M_UNKNOWN")
    matrix.leave(bob, room_id)
    assert matrix.post(path, {}, token=bob).json() == {}
    assert Membership.objects.get(room_id=room_id, mxid=bob.user_id).forgotten is True
    assert event_count() == before + 1  # the leave; forgetting sends no event
    # Forgetting twice is fine.
    matrix.post(path, {}, token=bob)


def test_forget_while_invited_or_never_member(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = matrix.create_room(alice, invite=[bob.user_id])
    assert_matrix_error(
        matrix.post(f"rooms/{q(room_id)}/forget", {}, token=bob, expect=None), 400, "M_UNKNOWN"
    )
    resp = matrix.post(f"rooms/{q(room_id)}/forget", {}, token=carol, expect=None)
    assert resp.status_code in (400, 404), resp.content


def test_rejoining_unforgets(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    matrix.post(f"rooms/{q(room_id)}/forget", {}, token=bob)
    matrix.join(bob, room_id)
    assert Membership.objects.get(room_id=room_id, mxid=bob.user_id).forgotten is False


# -- kick, ban, unban ------------------------------------------------------------------------------


def test_kick(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    assert matrix.kick(alice, room_id, bob.user_id, reason="spam").json() == {}
    assert _membership(matrix, alice, room_id, bob) == {"membership": "leave", "reason": "spam"}
    assert _member_event(room_id, bob).sender == alice.user_id
    # A kick from a public room is not a ban.
    matrix.join(bob, room_id)


def test_kick_needs_power(matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob, carol)
    before = event_count()
    assert_matrix_error(matrix.kick(bob, room_id, carol.user_id, expect=None), 403, "M_FORBIDDEN")
    assert_matrix_error(matrix.kick(bob, room_id, alice.user_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    # Power equal to the target's is not enough.
    set_power_levels(matrix, alice, room_id, kick=0)
    assert_matrix_error(matrix.kick(bob, room_id, carol.user_id, expect=None), 403, "M_FORBIDDEN")
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 10})
    matrix.kick(bob, room_id, carol.user_id)


def test_kick_of_a_non_member_is_forbidden(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice)
    assert_matrix_error(matrix.kick(alice, room_id, bob.user_id, expect=None), 403, "M_FORBIDDEN")
    assert_matrix_error(matrix.kick(alice, room_id, "not-a-user", expect=None), 400, "M_INVALID_PARAM")


def test_kick_withdraws_an_invite(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, invite=[bob.user_id])
    matrix.kick(alice, room_id, bob.user_id)
    assert _membership(matrix, alice, room_id, bob)["membership"] == "leave"
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")


def test_ban_and_unban(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    assert matrix.ban(alice, room_id, bob.user_id, reason="abuse").json() == {}
    assert _membership(matrix, alice, room_id, bob) == {"membership": "ban", "reason": "abuse"}
    before = event_count()
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")
    assert_matrix_error(
        matrix.send(bob, room_id, "m.room.message", {"body": "x"}, expect=None), 403, "M_FORBIDDEN"
    )
    assert event_count() == before
    assert matrix.unban(alice, room_id, bob.user_id, reason="second chance").json() == {}
    assert _membership(matrix, alice, room_id, bob) == {"membership": "leave", "reason": "second chance"}
    matrix.join(bob, room_id)


def test_ban_someone_who_never_joined(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.ban(alice, room_id, bob.user_id)
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")


def test_ban_and_unban_need_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, carol)
    before = event_count()
    assert_matrix_error(matrix.ban(bob, room_id, carol.user_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    matrix.ban(alice, room_id, carol.user_id)
    assert_matrix_error(matrix.unban(bob, room_id, carol.user_id, expect=None), 403, "M_FORBIDDEN")
    # A non-member cannot ban.
    room2 = matrix.create_room(alice, preset="public_chat")
    assert_matrix_error(matrix.ban(bob, room2, carol.user_id, expect=None), 403, "M_FORBIDDEN")


def test_unban_of_a_user_who_is_not_banned(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    before = event_count()
    assert_matrix_error(matrix.unban(alice, room_id, bob.user_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    assert _membership(matrix, alice, room_id, bob)["membership"] == "join"


def test_membership_request_body_errors(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    for action in ("kick", "ban", "unban"):
        path = f"rooms/{q(room_id)}/{action}"
        assert_matrix_error(matrix.post(path, {}, token=alice, expect=None), 400, "M_MISSING_PARAM")
        assert_matrix_error(
            matrix.post(path, {"user_id": alice.user_id, "reason": 5}, token=alice, expect=None),
            400,
            "M_BAD_JSON",
        )
    assert_matrix_error(
        matrix.post(f"rooms/{q(room_id)}/leave", [], token=alice, expect=None), 400, "M_BAD_JSON"
    )


# -- knock --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_knock_then_invite_then_join(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, version: str
) -> None:
    room_id = matrix.create_room(
        alice,
        room_version=version,
        room_alias_name=f"knock{version}",
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
    )
    # Knocking doesn't let bob in.
    assert_matrix_error(matrix.join(bob, room_id, expect=None), 403, "M_FORBIDDEN")
    resp = matrix.post(f"knock/{q(f'#knock{version}:test.local')}", {"reason": "let me in"}, token=bob)
    assert resp.json() == {"room_id": room_id}
    assert _membership(matrix, alice, room_id, bob)["membership"] == "knock"
    assert _membership(matrix, alice, room_id, bob)["reason"] == "let me in"
    # The invite that follows a knock lets bob in.
    matrix.invite(alice, room_id, bob.user_id)
    assert _membership(matrix, alice, room_id, bob)["membership"] == "invite"
    matrix.join(bob, room_id)
    assert _membership(matrix, alice, room_id, bob)["membership"] == "join"


def test_knock_by_room_id_and_withdraw(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    matrix.post(f"knock/{q(room_id)}", {}, token=bob)
    matrix.leave(bob, room_id)  # withdraw the knock
    assert _membership(matrix, alice, room_id, bob)["membership"] == "leave"


def test_knock_on_a_room_without_knocking(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="private_chat")
    before = event_count()
    assert_matrix_error(matrix.post(f"knock/{q(room_id)}", {}, token=bob, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    assert_matrix_error(
        matrix.post(f"knock/{q('#nosuch:test.local')}", {}, token=bob, expect=None), 404, "M_NOT_FOUND"
    )


def test_knock_when_joined_or_banned(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    assert_matrix_error(matrix.post(f"knock/{q(room_id)}", {}, token=alice, expect=None), 403, "M_FORBIDDEN")
    matrix.ban(alice, room_id, bob.user_id)
    assert_matrix_error(matrix.post(f"knock/{q(room_id)}", {}, token=bob, expect=None), 403, "M_FORBIDDEN")


def test_knock_can_be_denied_with_a_kick(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(
        alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    matrix.post(f"knock/{q(room_id)}", {}, token=bob)
    matrix.kick(alice, room_id, bob.user_id, reason="denied")
    assert _membership(matrix, alice, room_id, bob) == {"membership": "leave", "reason": "denied"}


# -- lists --------------------------------------------------------------------------------------------


def test_joined_rooms_lists_only_joined_rooms(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    joined = joined_room_with(matrix, alice, bob)
    left = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, left)
    invited = matrix.create_room(alice, invite=[bob.user_id])
    assert invited and matrix.get("joined_rooms", token=bob).json() == {"joined_rooms": [joined]}
    assert sorted(matrix.get("joined_rooms", token=alice).json()["joined_rooms"]) == sorted(
        [joined, left, invited]
    )
    assert_matrix_error(matrix.get("joined_rooms", expect=None), 401, "M_MISSING_TOKEN")


def _members(matrix: MatrixClient, user: TestUser, room_id: str, expect: int = 200, **query: Any) -> Any:
    resp = matrix.get(f"rooms/{q(room_id)}/members", token=user, query=query or None, expect=expect)
    if expect != 200:
        return resp
    return {e["state_key"]: e["content"]["membership"] for e in resp.json()["chunk"]}


def _everyone(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, dave: TestUser, eve: TestUser
) -> str:
    """alice joined, bob joined, carol invited, dave left, eve banned."""
    room_id = joined_room_with(matrix, alice, bob, dave)
    matrix.invite(alice, room_id, carol.user_id)
    matrix.leave(dave, room_id)
    matrix.ban(alice, room_id, eve.user_id)
    return room_id


def test_members_and_filters(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, make_user
) -> None:
    dave, eve = make_user("dave"), make_user("eve")
    room_id = _everyone(matrix, alice, bob, carol, dave, eve)
    everyone = {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "invite",
        dave.user_id: "leave",
        eve.user_id: "ban",
    }
    assert _members(matrix, alice, room_id) == everyone
    chunk = matrix.get(f"rooms/{q(room_id)}/members", token=alice).json()["chunk"]
    assert all(e["type"] == "m.room.member" and e["room_id"] == room_id and "event_id" in e for e in chunk)
    assert _members(matrix, alice, room_id, membership="join") == {alice.user_id: "join", bob.user_id: "join"}
    assert _members(matrix, alice, room_id, membership="ban") == {eve.user_id: "ban"}
    assert _members(matrix, alice, room_id, not_membership="leave") == {
        k: v for k, v in everyone.items() if v != "leave"
    }
    # Spec: given both, "either the membership *is* the same as membership **or** *is not* the same as
    # not_membership".
    assert _members(matrix, alice, room_id, membership="leave", not_membership="join") == {
        k: v for k, v in everyone.items() if v == "leave" or v != "join"
    }
    assert _members(matrix, alice, room_id, membership="join", not_membership="join") == everyone
    assert _members(matrix, alice, room_id, membership="ban", not_membership="ban") == everyone
    assert_matrix_error(
        _members(matrix, alice, room_id, expect=400, membership="joined"), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(
        _members(matrix, alice, room_id, expect=400, not_membership="x"), 400, "M_INVALID_PARAM"
    )


def test_members_at_a_stream_token(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    at = f"s{Room.objects.get(room_id=room_id).last_stream_pos}"
    matrix.join(carol, room_id)
    matrix.leave(bob, room_id)
    assert _members(matrix, alice, room_id, at=at) == {alice.user_id: "join", bob.user_id: "join"}
    assert _members(matrix, alice, room_id) == {
        alice.user_id: "join",
        bob.user_id: "leave",
        carol.user_id: "join",
    }
    assert_matrix_error(_members(matrix, alice, room_id, expect=400, at="bogus"), 400, "M_INVALID_PARAM")


def test_former_member_sees_members_at_their_leave(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    matrix.join(carol, room_id)
    assert _members(matrix, bob, room_id) == {alice.user_id: "join", bob.user_id: "leave"}
    # A later `at` does not reach past the leave.
    at = f"s{Room.objects.get(room_id=room_id).last_stream_pos}"
    assert _members(matrix, bob, room_id, at=at) == {alice.user_id: "join", bob.user_id: "leave"}


def test_members_is_forbidden_to_outsiders(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat", invite=[carol.user_id])
    assert_matrix_error(_members(matrix, bob, room_id, expect=403), 403, "M_FORBIDDEN")
    assert_matrix_error(_members(matrix, carol, room_id, expect=403), 403, "M_FORBIDDEN")  # only invited
    # Rejected an invite without ever joining: never a member either.
    matrix.leave(carol, room_id)
    assert_matrix_error(_members(matrix, carol, room_id, expect=403), 403, "M_FORBIDDEN")
    assert_matrix_error(_members(matrix, alice, "!nosuch:test.local", expect=404), 404, "M_NOT_FOUND")


def test_joined_members(matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser) -> None:
    set_displayname(user=User.objects.get(mxid=alice.user_id), displayname="Alice A.")
    room_id = matrix.create_room(alice, preset="public_chat", invite=[carol.user_id])
    matrix.join(bob, room_id)
    joined = matrix.get(f"rooms/{q(room_id)}/joined_members", token=bob).json()["joined"]
    assert set(joined) == {alice.user_id, bob.user_id}
    assert joined[alice.user_id]["display_name"] == "Alice A."
    assert_matrix_error(
        matrix.get(f"rooms/{q(room_id)}/joined_members", token=carol, expect=None), 403, "M_FORBIDDEN"
    )


def test_membership_events_appear_once_each_in_order(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.join(bob, room_id)
    matrix.leave(bob, room_id)
    matrix.join(bob, room_id)
    bobs = [e.membership for e in room_events(room_id) if e.state_key == bob.user_id]
    assert bobs == ["join", "leave", "join"]
