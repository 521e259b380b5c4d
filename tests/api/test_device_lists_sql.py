"""The hand-written device-list SQL of ``e2ee.selectors`` (shared by /sync ``device_lists`` and
/keys/changes): one query for /keys/changes, and windows that mix several membership changes."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from e2ee.selectors import device_list_changes
from events.stream import current_stream_position
from tests.matrix_client import MatrixClient
from tests.matrix_client import TestUser as Account
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import pos, sync

pytestmark = pytest.mark.django_db


def key_changes(matrix: MatrixClient, viewer: Account, since: str, to: str) -> dict[str, Any]:
    return matrix.get("keys/changes", query={"from": since, "to": to}, token=viewer).json()


def test_keys_changes_reads_device_lists_in_one_query(
    matrix: MatrixClient, alice: Account, bob: Account, django_assert_num_queries: Any
) -> None:
    room = joined_room_with(matrix, alice, bob)
    since = pos(sync(matrix, alice)["next_batch"])
    matrix.leave(bob, room)
    user = User.objects.get(mxid=alice.user_id)
    upto = current_stream_position()

    with django_assert_num_queries(1):
        changes = device_list_changes(user, since, upto)

    assert changes == ([], [bob.user_id])


def test_a_window_with_shares_gained_and_lost(
    matrix: MatrixClient, alice: Account, bob: Account, make_user: Any
) -> None:
    carol, dave = make_user(), make_user()
    first = joined_room_with(matrix, alice, bob, carol)
    second = joined_room_with(matrix, alice, bob)
    open_room = matrix.create_room(alice, preset="public_chat")
    since = sync(matrix, alice)["next_batch"]

    matrix.leave(bob, first)  # bob still shares `second` ...
    matrix.leave(alice, second)  # ... until alice leaves it: bob is left
    matrix.leave(carol, first)  # carol leaves and comes back: changed, not left
    matrix.join(carol, first)
    matrix.join(dave, open_room)  # dave comes to share a room: changed

    body = sync(matrix, alice, since=since)
    want = {"changed": sorted([carol.user_id, dave.user_id]), "left": [bob.user_id]}
    assert body["device_lists"] == want
    assert key_changes(matrix, alice, since, body["next_batch"]) == want
