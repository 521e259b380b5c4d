"""Ignoring users (spec "Ignoring Users", ``m.ignored_user_list``): "servers must not send events from
ignored users to the client", state events excepted. /sync's timeline and invites and /messages are
covered in tests/api/test_account_data_sync.py; here: typing and receipts in /sync, /context and
/event, and the ignoring taking effect at once and ending at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.api.test_account_data_sync import ignore
from tests.api.test_receipts_api import receipts, send_receipt
from tests.api.test_typing_api import set_typing, typing_events
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import bodies, sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(make_user: Any) -> TestUser:
    return make_user("carol")


@pytest.fixture
def room(matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser) -> str:
    return joined_room_with(matrix, alice, bob, carol)


def context(matrix: MatrixClient, user: TestUser, room_id: str, event_id: str, **query: Any) -> Any:
    return matrix.get(f"rooms/{q(room_id)}/context/{q(event_id)}", token=user, query=query, expect=None)


# -- ephemeral data in /sync -----------------------------------------------------------------------------


def test_ignored_users_typing_is_not_sent(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, room: str
) -> None:
    ignore(matrix, bob, alice)
    since = sync(matrix, bob)["next_batch"]
    set_typing(matrix, alice, room)
    set_typing(matrix, carol, room)
    assert typing_events(sync(matrix, bob, since=since), room) == [[carol.user_id]]
    assert typing_events(sync(matrix, bob), room) == [[carol.user_id]]
    both = sorted([alice.user_id, carol.user_id])
    assert [sorted(ids) for ids in typing_events(sync(matrix, carol), room)] == [both]  # only Bob ignores
    ignore(matrix, bob)  # at once: the next initial sync shows Alice typing again
    assert [sorted(ids) for ids in typing_events(sync(matrix, bob), room)] == [both]


def test_ignored_users_receipts_are_not_sent(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, room: str
) -> None:
    event_id = matrix.send_text(bob, room, "read me")
    ignore(matrix, bob, alice)
    since = sync(matrix, bob)["next_batch"]
    send_receipt(matrix, alice, room, event_id)
    send_receipt(matrix, carol, room, event_id)
    for body in (sync(matrix, bob, since=since), sync(matrix, bob)):
        readers = receipts(body, room).get(event_id, {}).get("m.read", {})
        assert set(readers) == {carol.user_id}
    readers = receipts(sync(matrix, carol), room)[event_id]["m.read"]
    assert set(readers) == {alice.user_id, carol.user_id}


# -- /context and /event -----------------------------------------------------------------------------------


def test_context_leaves_out_ignored_users_messages_but_not_their_state(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, room: str
) -> None:
    matrix = any_prefix_client
    for i in range(3):
        matrix.send_text(alice, room, f"a{i}")
        matrix.send_text(carol, room, f"c{i}")
    middle = matrix.send_text(carol, room, "middle")
    matrix.send_state(alice, room, "m.room.topic", {"topic": "by alice"})
    for i in range(3, 6):
        matrix.send_text(alice, room, f"a{i}")
        matrix.send_text(carol, room, f"c{i}")
    unfiltered = context(matrix, bob, room, middle, limit=6).json()
    assert bodies(unfiltered["events_before"]) == ["c2", "a2", "c1"]  # newest first

    ignore(matrix, bob, alice)
    body = context(matrix, bob, room, middle, limit=6).json()
    assert body["event"]["content"]["body"] == "middle"
    assert bodies(body["events_before"]) == ["c2", "c1", "c0"]
    after = body["events_after"]
    assert [e["content"].get("body", e["content"].get("topic")) for e in after] == ["by alice", "c3", "c4"]
    assert all(e["sender"] != alice.user_id or "state_key" in e for e in body["events_before"] + after)
    # The state at the end still holds Alice's state (her membership, the topic).
    assert any(e["type"] == "m.room.topic" and e["sender"] == alice.user_id for e in body["state"])
    # Carol, who ignores nobody, sees everything.
    assert bodies(context(matrix, carol, room, middle, limit=6).json()["events_before"]) == ["c2", "a2", "c1"]


def test_an_ignored_users_message_is_not_found_through_context_or_event(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, room: str
) -> None:
    theirs = matrix.send_text(alice, room, "from alice")
    topic = matrix.send_state(alice, room, "m.room.topic", {"topic": "state stays"})
    event_path = f"rooms/{q(room)}/event/{q(theirs)}"
    assert matrix.get(event_path, token=bob).json()["content"]["body"] == "from alice"
    ignore(matrix, bob, alice)
    assert_matrix_error(context(matrix, bob, room, theirs), 404, "M_NOT_FOUND")
    assert_matrix_error(matrix.get(event_path, token=bob, expect=None), 404, "M_NOT_FOUND")
    # Their state events are still served; others still get the message.
    assert context(matrix, bob, room, topic).json()["event"]["content"] == {"topic": "state stays"}
    topic_path = f"rooms/{q(room)}/event/{q(topic)}"
    assert matrix.get(topic_path, token=bob).json()["content"] == {"topic": "state stays"}
    assert matrix.get(event_path, token=carol).json()["content"]["body"] == "from alice"
    assert context(matrix, carol, room, theirs).status_code == 200
    ignore(matrix, bob)  # un-ignored: served again at once
    assert matrix.get(event_path, token=bob).json()["content"]["body"] == "from alice"
