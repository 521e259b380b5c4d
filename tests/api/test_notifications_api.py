"""GET /notifications (notifications.yaml): the events the user was notified about, newest first,
paginated with ``from``/``next_token``, ``only=highlight``, each with its actions, its event (client
format without room_id), whether it is read, its room and when it was made."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(make_user) -> TestUser:
    return make_user("carol")


@pytest.fixture
def group(matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser) -> str:
    return joined_room_with(matrix, alice, bob, carol)


def notifications(matrix: MatrixClient, user: TestUser, **query: Any) -> dict[str, Any]:
    return matrix.get("notifications", token=user, query=query).json()


def bodies(page: dict[str, Any]) -> list[str]:
    return [n["event"]["content"].get("body") for n in page["notifications"]]


def test_lists_notifications_newest_first_in_the_spec_shape(
    any_prefix_client: MatrixClient, make_user
) -> None:
    matrix = any_prefix_client
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    before = int(time.time() * 1000)
    first = matrix.send_text(alice, room_id, "first")
    matrix.send(alice, room_id, "m.room.message", {"msgtype": "m.text", "body": "second",
                                                   "m.mentions": {"user_ids": [bob.user_id]}})
    page = notifications(matrix, bob)
    assert bodies(page) == ["second", "first"]
    assert "next_token" not in page
    newest, oldest = page["notifications"]
    assert set(newest) == {"actions", "event", "read", "room_id", "ts"}
    sound, highlight = {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}
    assert newest["actions"] == ["notify", sound, highlight]  # .m.rule.is_user_mention
    assert oldest["actions"] == ["notify"]
    assert oldest["room_id"] == room_id and oldest["read"] is False
    assert before <= oldest["ts"] <= int(time.time() * 1000)
    event = oldest["event"]
    assert (event["event_id"], event["sender"], event["type"]) == (first, alice.user_id, "m.room.message")
    assert "room_id" not in event and "age" in event["unsigned"]
    assert notifications(matrix, alice) == {"notifications": []}  # own events never notify


def test_read_follows_the_users_receipt(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str
) -> None:
    first = matrix.send_text(alice, group, "one")
    matrix.send_text(alice, group, "two")
    matrix.post(f"rooms/{q(group)}/receipt/m.read.private/{q(first)}", {}, token=bob)
    assert [n["read"] for n in notifications(matrix, bob)["notifications"]] == [False, True]


def test_pages_with_from_and_limit(matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str) -> None:
    for i in range(5):
        matrix.send_text(alice, group, f"m{i}")
    page = notifications(matrix, bob, limit=2)
    assert bodies(page) == ["m4", "m3"]
    page = notifications(matrix, bob, limit=2, **{"from": page["next_token"]})
    assert bodies(page) == ["m2", "m1"]
    page = notifications(matrix, bob, limit=2, **{"from": page["next_token"]})
    assert bodies(page) == ["m0"] and "next_token" not in page
    assert bodies(notifications(matrix, bob, limit=5)) == ["m4", "m3", "m2", "m1", "m0"]
    assert "next_token" not in notifications(matrix, bob, limit=5)


def test_only_highlight(matrix: MatrixClient, alice: TestUser, bob: TestUser, group: str) -> None:
    matrix.send_text(alice, group, "plain")
    matrix.send(alice, group, "m.room.message", {"msgtype": "m.text", "body": "hey bob",
                                                 "m.mentions": {"user_ids": [bob.user_id]}})
    matrix.send_text(alice, group, "plain again")
    assert bodies(notifications(matrix, bob, only="highlight")) == ["hey bob"]
    assert len(notifications(matrix, bob)["notifications"]) == 3


def test_an_invite_is_a_notification_of_the_invitee(matrix: MatrixClient, alice: TestUser, make_user) -> None:
    dave = make_user("dave")
    room_id = matrix.create_room(alice, preset="private_chat")
    matrix.invite(alice, room_id, dave.user_id)
    (notification,) = notifications(matrix, dave)["notifications"]
    assert notification["room_id"] == room_id
    assert notification["event"]["type"] == "m.room.member"
    assert notification["event"]["state_key"] == dave.user_id
    assert notification["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]


def test_bad_parameters_and_no_token(matrix: MatrixClient, bob: TestUser) -> None:
    for query in ({"from": "abc"}, {"from": "-1"}, {"limit": "x"}, {"limit": "-1"}):
        resp = matrix.get("notifications", token=bob, query=query, expect=None)
        assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert_matrix_error(matrix.get("notifications", expect=None), 401, "M_MISSING_TOKEN")
