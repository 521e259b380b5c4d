"""Typing notifications (spec "Typing Notifications"): PUT /rooms/{roomId}/typing/{userId}, and
``m.typing`` in /sync's ephemeral section, including expiry delivered to a waiting long-poll with no
request to trigger it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from ephemeral import actions as ephemeral_actions
from ephemeral.models import Typing
from tests.api import test_sync_longpoll as longpoll
from tests.api.test_sync_longpoll import SLOW, ReadCounter, async_sync, in_thread, run
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import room_entry, sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

# The long-poll tests' fixtures: both ways /sync reads the database, and its read counter.
db_mode, reads = longpoll.db_mode, longpoll.reads

pytestmark = pytest.mark.django_db


def typing_path(room_id: str, user: TestUser) -> str:
    return f"rooms/{q(room_id)}/typing/{q(user.user_id)}"


def set_typing(
    matrix: MatrixClient,
    user: TestUser,
    room_id: str,
    typing: bool = True,
    timeout: int = 30_000,
    expect: int = 200,
) -> Any:
    body: dict[str, Any] = {"typing": typing}
    if typing:
        body["timeout"] = timeout
    return matrix.put(typing_path(room_id, user), body, token=user, expect=expect)


def typing_events(body: dict[str, Any], room_id: str) -> list[list[str]]:
    entry = body["rooms"]["join"].get(room_id)
    if entry is None:
        return []
    return [e["content"]["user_ids"] for e in entry["ephemeral"]["events"] if e["type"] == "m.typing"]


@pytest.fixture
def room(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> str:
    return joined_room_with(matrix, alice, bob)


def test_typing_shows_in_initial_and_incremental_sync(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    matrix = any_prefix_client
    since = sync(matrix, bob)["next_batch"]
    assert typing_events(sync(matrix, bob), room) == []  # nobody typing: no m.typing
    set_typing(matrix, alice, room)
    assert typing_events(sync(matrix, bob, since=since), room) == [[alice.user_id]]
    initial = sync(matrix, bob)
    assert typing_events(initial, room) == [[alice.user_id]]
    assert room_entry(initial, room)["ephemeral"]["events"][0] == {
        "type": "m.typing",
        "content": {"user_ids": [alice.user_id]},
    }
    # Nothing changed since: no m.typing (and no room) in the next incremental sync.
    again = sync(matrix, bob, since=initial["next_batch"])
    assert typing_events(again, room) == []
    # Stopping is a change: an empty set is sent.
    set_typing(matrix, alice, room, typing=False)
    stopped = sync(matrix, bob, since=initial["next_batch"])
    assert typing_events(stopped, room) == [[]]
    assert typing_events(sync(matrix, bob), room) == []


def test_renewing_typing_takes_no_new_position(matrix: MatrixClient, alice: TestUser, room: str) -> None:
    set_typing(matrix, alice, room)
    first = Typing.objects.get(room_id=room, mxid=alice.user_id)
    set_typing(matrix, alice, room, timeout=20_000)
    renewed = Typing.objects.get(room_id=room, mxid=alice.user_id)
    assert renewed.stream_pos == first.stream_pos
    set_typing(matrix, alice, room, typing=False)
    set_typing(matrix, alice, room, typing=False)  # not typing: no change
    assert Typing.objects.get(room_id=room, mxid=alice.user_id).expires_at_ms == 0


def test_typing_for_another_user_is_forbidden(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    resp = matrix.put(typing_path(room, bob), {"typing": True, "timeout": 1000}, token=alice, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


def test_typing_needs_membership(matrix: MatrixClient, alice: TestUser, make_user: Any) -> None:
    room = matrix.create_room(alice)
    carol = make_user("carol")
    assert_matrix_error(set_typing(matrix, carol, room, expect=403), 403, "M_FORBIDDEN")
    assert_matrix_error(set_typing(matrix, carol, "!nope:localhost", expect=403), 403, "M_FORBIDDEN")


def test_typing_body_is_validated(matrix: MatrixClient, alice: TestUser, room: str) -> None:
    path = typing_path(room, alice)
    assert_matrix_error(matrix.put(path, {"timeout": 1000}, token=alice, expect=None), 400, "M_MISSING_PARAM")
    assert_matrix_error(matrix.put(path, {"typing": "yes"}, token=alice, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(
        matrix.put(path, {"typing": True, "timeout": "soon"}, token=alice, expect=None), 400, "M_BAD_JSON"
    )
    assert_matrix_error(matrix.put(path, [1], token=alice, expect=None), 400, "M_BAD_JSON")
    matrix.put(path, {"typing": False}, token=alice)  # timeout may be left out when stopping


def test_typing_timeout_is_capped(matrix: MatrixClient, alice: TestUser, room: str) -> None:
    before = int(time.time() * 1000)
    set_typing(matrix, alice, room, timeout=10**9)
    row = Typing.objects.get(room_id=room, mxid=alice.user_id)
    assert row.expires_at_ms <= int(time.time() * 1000) + ephemeral_actions.MAX_TYPING_TIMEOUT_MS
    assert row.expires_at_ms >= before + ephemeral_actions.MAX_TYPING_TIMEOUT_MS


def test_expired_typing_is_not_shown_and_its_end_is_announced(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    since = sync(matrix, bob)["next_batch"]
    set_typing(matrix, alice, room, timeout=50)
    time.sleep(0.08)
    body = sync(matrix, bob, since=since)  # the row expired before this read: the change shows nothing
    assert typing_events(body, room) in ([], [[]])
    # The read announced the expiry (a new position): the next sync sends the empty set.
    row = Typing.objects.get(room_id=room, mxid=alice.user_id)
    assert row.expires_at_ms == 0
    assert typing_events(sync(matrix, bob, since=body["next_batch"]), room) == [[]]
    assert typing_events(sync(matrix, bob), room) == []
    assert ephemeral_actions.expire_typing(room_ids=[room]) is None  # idempotent: nothing left


def test_ephemeral_filter_drops_typing(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    set_typing(matrix, alice, room)
    assert (
        typing_events(sync(matrix, bob, filter={"room": {"ephemeral": {"not_types": ["m.typing"]}}}), room)
        == []
    )
    assert typing_events(sync(matrix, bob, filter={"room": {"ephemeral": {"not_rooms": [room]}}}), room) == []
    assert typing_events(
        sync(matrix, bob, filter={"room": {"ephemeral": {"types": ["m.typing"]}}}), room
    ) == [[alice.user_id]]


# -- long-polls ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_typing_from_another_thread_wakes_the_long_poll(
    db_mode: str,
    reads: ReadCounter,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
) -> None:
    room = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000))
        await reads.until(1)
        await asyncio.sleep(0.05)
        assert not pending.done()
        await in_thread(set_typing, matrix, alice, room)
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert elapsed < SLOW
    assert typing_events(body, room) == [[alice.user_id]]


@pytest.mark.django_db(transaction=True)
def test_typing_expiry_reaches_a_waiting_long_poll_without_any_request(
    db_mode: str,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
) -> None:
    room = joined_room_with(matrix, alice, bob)
    set_typing(matrix, alice, room, timeout=300)
    seen = sync(matrix, bob)
    assert typing_events(seen, room) == [[alice.user_id]]

    async def scenario() -> tuple[float, dict[str, Any]]:
        return await async_sync(bob, since=seen["next_batch"], timeout=10_000)

    elapsed, body = run(scenario)
    assert elapsed < SLOW  # returned at the expiry (~0.3 s), not at the 10 s timeout
    assert typing_events(body, room) == [[]]


@pytest.mark.django_db(transaction=True)
def test_typing_expiry_wakes_a_long_poll_that_skipped_its_read(
    db_mode: str,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
) -> None:
    """sync/quiet.py: the second long-poll from an unchanged position parks without reading, on the
    expiry the first one's read reported; the typing notice still ends on time."""
    room = joined_room_with(matrix, alice, bob)
    set_typing(matrix, alice, room, timeout=1_000)
    seen = sync(matrix, bob)
    assert typing_events(seen, room) == [[alice.user_id]]

    async def scenario() -> tuple[dict[str, Any], float, dict[str, Any]]:
        _, first = await async_sync(bob, since=seen["next_batch"], timeout=50)
        elapsed, body = await async_sync(bob, since=first["next_batch"], timeout=10_000)
        return first, elapsed, body

    first, elapsed, body = run(scenario)
    assert typing_events(first, room) == []  # nothing new yet: an empty answer at its timeout
    assert elapsed < SLOW  # returned at the expiry (~1 s after it was set), not at the 10 s timeout
    assert typing_events(body, room) == [[]]
