"""Blocked rooms (moderation.actions.block_room / unblock_room): the one write path refuses every
event with 403 M_FORBIDDEN except members going (leave, kick, ban) and the moderator's own events."""

from __future__ import annotations

import pytest

from accounts.models import User
from events.models import Event
from moderation import actions
from moderation.models import AuditLogEntry
from rooms.models import Membership, Room
from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync

pytestmark = pytest.mark.django_db

MODERATOR = "@moderator:test.local"
BLOCKED = "This room has been blocked on this server"
TEXT = {"msgtype": "m.text", "body": "hello"}


def forbidden(response) -> None:  # type: ignore[no-untyped-def]
    body = assert_matrix_error(response, 403, "M_FORBIDDEN")
    assert body["error"] == BLOCKED


@pytest.fixture
def admin(make_user) -> User:
    user = make_user("admin")
    User.objects.filter(mxid=user.user_id).update(is_staff=True)
    return User.objects.get(mxid=user.user_id)


def test_blocked_room_refuses_joins_sends_state_invites_and_knocks(
    any_prefix_client: MatrixClient, admin: User
) -> None:
    matrix = any_prefix_client
    alice, bob, carol, dave = (matrix.register(n) for n in ("alice", "bob", "carol", "dave"))
    room_id = matrix.create_room(alice, preset="public_chat", room_alias_name="blockme")
    matrix.join(bob, room_id)
    knock_room = matrix.create_room(alice, preset="private_chat", room_version="12",
                                    initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}])
    actions.block_room(actor=admin, room_id=room_id, reason="raid")
    actions.block_room(actor=admin, room_id=knock_room, reason="raid")
    before = Event.objects.count()

    forbidden(matrix.join(carol, room_id, expect=None))
    forbidden(matrix.join(carol, "#blockme:test.local", expect=None))
    forbidden(matrix.post(f"rooms/{q(room_id)}/join", {}, token=carol, expect=None))
    forbidden(matrix.send(bob, room_id, "m.room.message", TEXT, expect=None))
    forbidden(matrix.send_state(alice, room_id, "m.room.topic", {"topic": "x"}, expect=None))
    forbidden(matrix.invite(alice, room_id, dave.user_id, expect=None))
    forbidden(matrix.post(f"knock/{q(knock_room)}", {}, token=carol, expect=None))
    assert Event.objects.count() == before
    room = Room.objects.get(pk=room_id)
    assert room.blocked and room.blocked_reason == "raid"


def test_blocked_room_still_lets_members_leave_and_be_kicked_or_banned(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user, admin: User
) -> None:
    carol, dave = make_user("carol"), make_user("dave")
    room_id = joined_room_with(matrix, alice, bob, carol, dave)
    actions.block_room(actor=admin, room_id=room_id)
    since = sync(matrix, alice)["next_batch"]
    matrix.leave(bob, room_id)
    matrix.kick(alice, room_id, carol.user_id)
    matrix.ban(alice, room_id, dave.user_id)
    events = sync(matrix, alice, since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    assert [(e["sender"], e["state_key"], e["content"]["membership"]) for e in events] == [
        (bob.user_id, bob.user_id, "leave"),
        (alice.user_id, carol.user_id, "leave"),
        (alice.user_id, dave.user_id, "ban"),
    ]


def test_the_moderator_can_act_in_a_blocked_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User
) -> None:
    room_id = matrix.create_room(alice, preset="private_chat")
    matrix.invite(alice, room_id, bob.user_id)
    matrix.join(bob, room_id)
    actions.block_room(actor=admin, room_id=room_id)
    # The moderator's invite (by alice) and power raise are part of the action; its own events pass.
    actions.set_room_name(actor=admin, room_id=room_id, name="Blocked")
    assert Room.objects.get(pk=room_id).name == "Blocked"
    assert Membership.objects.get(room_id=room_id, mxid=MODERATOR).membership == "join"
    # ...but alice herself still can't send anything.
    forbidden(matrix.send(alice, room_id, "m.room.message", TEXT, expect=None))


def test_unblock_lifts_the_block(matrix: MatrixClient, alice: TestUser, bob: TestUser, admin: User) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    actions.block_room(actor=admin, room_id=room_id, reason="check")
    forbidden(matrix.join(bob, room_id, expect=None))
    actions.unblock_room(actor=admin, room_id=room_id, reason="all clear")
    matrix.join(bob, room_id)
    matrix.send_text(bob, room_id, "back")
    room = Room.objects.get(pk=room_id)
    assert not room.blocked and room.blocked_reason == ""
    assert [(e.action, e.reason) for e in AuditLogEntry.objects.order_by("id")] == [
        ("block_room", "check"), ("unblock_room", "all clear")
    ]


def test_blocking_an_unknown_room_is_not_found(admin: User) -> None:
    with pytest.raises(Exception) as raised:
        actions.block_room(actor=admin, room_id="!nope:test.local")
    assert raised.value.errcode == "M_NOT_FOUND"  # type: ignore[attr-defined]
    assert not AuditLogEntry.objects.exists()
