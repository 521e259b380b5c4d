"""Redaction: PUT /rooms/{roomId}/redact/{eventId}/{txnId} and PUT /send/m.room.redaction/{txnId}."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from accounts.actions import set_displayname
from accounts.models import User
from events.models import Event
from rooms.models import Room
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import event_count, event_row, joined_room_with, set_power_levels, state_by_key

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def test_redacting_your_own_message(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice, bob = matrix.register("alice"), matrix.register("bob")
    room_id = joined_room_with(matrix, alice, bob)
    target = matrix.send_text(bob, room_id, "oops")
    redaction_id = matrix.redact(bob, room_id, target, reason="typo")
    redaction = event_row(redaction_id)
    assert (redaction.type, redaction.sender, redaction.redacts, redaction.room_id) == (
        "m.room.redaction",
        bob.user_id,
        target,
        room_id,
    )
    assert redaction.content["reason"] == "typo"
    pruned = event_row(target)
    assert pruned.content == {}
    assert pruned.redacted_because["event_id"] == redaction_id
    assert pruned.redacted_because["type"] == "m.room.redaction"
    assert pruned.redacted_because["sender"] == bob.user_id


def test_redacting_someone_elses_event_needs_redact_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    mine = matrix.send_text(alice, room_id, "alice's")
    before = event_count()
    assert_matrix_error(matrix.redact(bob, room_id, mine, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    assert event_row(mine).content["body"] == "alice's"
    # The room admin may redact bob's.
    theirs = matrix.send_text(bob, room_id, "bob's")
    matrix.redact(alice, room_id, theirs)
    assert event_row(theirs).content == {}
    # So may bob once he has the redact level.
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 50})
    matrix.redact(bob, room_id, mine)
    assert event_row(mine).content == {}


def test_redaction_level_for_own_events(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    # Spec: "Any user with a power level greater than or equal to the m.room.redaction event power
    # level may send redactions for their own events".
    room_id = joined_room_with(matrix, alice, bob)
    target = matrix.send_text(bob, room_id, "mine")
    set_power_levels(matrix, alice, room_id, events={"m.room.redaction": 10})
    assert_matrix_error(matrix.redact(bob, room_id, target, expect=None), 403, "M_FORBIDDEN")


def test_non_member_cannot_redact(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    target = matrix.send_text(bob, room_id, "hi")
    matrix.leave(bob, room_id)
    assert_matrix_error(matrix.redact(bob, room_id, target, expect=None), 403, "M_FORBIDDEN")


def test_redaction_is_idempotent_by_txn_id(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    target = matrix.send_text(alice, room_id, "x")
    first = matrix.redact(alice, room_id, target, txn_id="r1")
    before = event_count()
    assert matrix.redact(alice, room_id, target, txn_id="r1") == first
    assert event_count() == before
    assert Event.objects.filter(room_id=room_id, type="m.room.redaction").count() == 1
    # The same txn ID for another target is not a retry.
    other = matrix.send_text(alice, room_id, "y")
    assert_matrix_error(
        matrix.redact(alice, room_id, other, txn_id="r1", expect=None), 400, "M_INVALID_PARAM"
    )


def test_redacted_state_event_is_served_redacted(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, topic="secret topic")
    topic_id = matrix.get_state(alice, room_id, "m.room.topic", format="event")["event_id"]
    redaction_id = matrix.redact(alice, room_id, topic_id, reason="leak")
    event = matrix.get_state(alice, room_id, "m.room.topic", format="event")
    assert event["event_id"] == topic_id
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction_id and because["content"]["reason"] == "leak"
    assert matrix.get_state(alice, room_id, "m.room.topic") == {}
    state = state_by_key(matrix.room_state(alice, room_id))
    assert state[("m.room.topic", "")]["unsigned"]["redacted_because"]["event_id"] == redaction_id
    assert Room.objects.get(room_id=room_id).topic is None


def test_replacing_state_sees_the_redacted_prev_content(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, name="first")
    first_id = matrix.get_state(alice, room_id, "m.room.name", format="event")["event_id"]
    matrix.send_state(alice, room_id, "m.room.name", {"name": "second"})
    matrix.redact(alice, room_id, first_id)
    event = matrix.get_state(alice, room_id, "m.room.name", format="event")
    assert event["content"] == {"name": "second"}
    assert event["unsigned"]["prev_content"] == {}
    assert Room.objects.get(room_id=room_id).name == "second"  # the current name isn't touched


def test_redacting_a_member_event_drops_the_profile(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    set_displayname(user=User.objects.get(mxid=bob.user_id), displayname="Rude Name")
    room_id = joined_room_with(matrix, alice, bob)
    member_id = matrix.get_state(alice, room_id, "m.room.member", bob.user_id, format="event")["event_id"]
    matrix.redact(alice, room_id, member_id)
    assert matrix.get_state(alice, room_id, "m.room.member", bob.user_id) == {"membership": "join"}
    joined = matrix.get(f"rooms/{q(room_id)}/joined_members", token=alice).json()["joined"]
    assert joined[bob.user_id].get("display_name") is None
    # Bob is still in the room.
    matrix.send_text(bob, room_id, "still here")


@pytest.mark.parametrize(("version", "keeps_invite"), [("10", False), ("11", True), ("12", True)])
def test_redaction_algorithm_follows_the_room_version(
    matrix: MatrixClient, alice: TestUser, version: str, keeps_invite: bool
) -> None:
    room_id = matrix.create_room(alice, room_version=version)
    pl_id = matrix.get_state(alice, room_id, "m.room.power_levels", format="event")["event_id"]
    matrix.redact(alice, room_id, pl_id)
    pl = matrix.get_state(alice, room_id, "m.room.power_levels")
    assert ("invite" in pl) is keeps_invite
    assert "notifications" not in pl and "historical" not in pl
    assert "users" in pl and "state_default" in pl


def test_v10_redaction_has_top_level_redacts(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, room_version="10", topic="t")
    topic_id = matrix.get_state(alice, room_id, "m.room.topic", format="event")["event_id"]
    redaction_id = matrix.redact(alice, room_id, topic_id, reason="r")
    because = matrix.get_state(alice, room_id, "m.room.topic", format="event")["unsigned"]["redacted_because"]
    assert because["redacts"] == topic_id
    assert because["content"] == {"reason": "r"}  # v10: not in content
    assert event_row(redaction_id).redacts == topic_id


@pytest.mark.parametrize("version", ["11", "12"])
def test_v11_redaction_has_redacts_in_content(matrix: MatrixClient, alice: TestUser, version: str) -> None:
    room_id = matrix.create_room(alice, room_version=version, topic="t")
    topic_id = matrix.get_state(alice, room_id, "m.room.topic", format="event")["event_id"]
    matrix.redact(alice, room_id, topic_id)
    because = matrix.get_state(alice, room_id, "m.room.topic", format="event")["unsigned"]["redacted_because"]
    assert because["content"]["redacts"] == topic_id


@pytest.mark.parametrize("version", ["10", "11", "12"])
def test_redaction_through_send(matrix: MatrixClient, alice: TestUser, version: str) -> None:
    # Spec (room_send.yaml): servers MUST accept m.room.redaction on /send for all room versions,
    # and move content.redacts to the top level in versions before 11.
    room_id = matrix.create_room(alice, room_version=version)
    target = matrix.send_text(alice, room_id, "bye")
    redaction_id = matrix.send(
        alice, room_id, "m.room.redaction", {"redacts": target, "reason": "r"}, txn_id="s1"
    )["event_id"]
    redaction = event_row(redaction_id)
    assert redaction.redacts == target
    assert ("redacts" in redaction.content) is (version != "10")
    assert event_row(target).content == {}
    # A retry is a replay.
    again = matrix.send(alice, room_id, "m.room.redaction", {"redacts": target, "reason": "r"}, txn_id="s1")
    assert again["event_id"] == redaction_id


def test_redaction_through_send_needs_redacts(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    before = event_count()
    resp = matrix.send(alice, room_id, "m.room.redaction", {"reason": "r"}, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")
    assert event_count() == before


def test_redacting_an_event_of_another_room_leaves_it_alone(matrix: MatrixClient, alice: TestUser) -> None:
    room_a = matrix.create_room(alice)
    room_b = matrix.create_room(alice)
    target = matrix.send_text(alice, room_a, "keep me")
    matrix.redact(alice, room_b, target)
    assert event_row(target).content["body"] == "keep me"


def test_redacting_an_unknown_event_needs_redact_power(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    assert_matrix_error(matrix.redact(bob, room_id, "$unknown", expect=None), 403, "M_FORBIDDEN")
    matrix.redact(alice, room_id, "$unknown")


def test_the_create_event_cannot_be_redacted(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, room_version="10")
    create_id = Event.objects.get(room_id=room_id, type="m.room.create").event_id
    before = event_count()
    assert_matrix_error(matrix.redact(alice, room_id, create_id, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before


def test_redact_body_errors(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    target = matrix.send_text(alice, room_id, "x")
    path = f"rooms/{q(room_id)}/redact/{q(target)}/t1"
    assert_matrix_error(matrix.put(path, {"reason": 5}, token=alice, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(matrix.request("PUT", path, raw=b"[]", token=alice, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(
        matrix.put(f"rooms/{q('!nosuch:test.local')}/redact/{q(target)}/t1", {}, token=alice, expect=None),
        404,
        "M_NOT_FOUND",
    )
