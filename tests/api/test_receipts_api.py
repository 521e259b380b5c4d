"""Receipts and read markers (spec "Receipts", "Fully read markers"): POST
/rooms/{roomId}/receipt/{receiptType}/{eventId}, POST /rooms/{roomId}/read_markers, ``m.receipt`` in
/sync's ephemeral section and ``m.fully_read`` in the room's account data."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from ephemeral.models import Receipt
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


def receipt_path(room_id: str, receipt_type: str, event_id: str) -> str:
    return f"rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}"


def send_receipt(
    matrix: MatrixClient,
    user: TestUser,
    room_id: str,
    event_id: str,
    receipt_type: str = "m.read",
    body: dict[str, Any] | None = None,
    expect: int | None = 200,
) -> Any:
    return matrix.post(receipt_path(room_id, receipt_type, event_id), body or {}, token=user, expect=expect)


def receipts(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    """The room's m.receipt content merged (event -> type -> user -> data), {} if none."""
    entry = body["rooms"]["join"].get(room_id)
    merged: dict[str, Any] = {}
    for event in (entry or {}).get("ephemeral", {}).get("events", []):
        if event["type"] == "m.receipt":
            for event_id, by_type in event["content"].items():
                for receipt_type, by_user in by_type.items():
                    merged.setdefault(event_id, {}).setdefault(receipt_type, {}).update(by_user)
    return merged


def fully_read(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    entry = body["rooms"]["join"].get(room_id)
    return [
        e["content"]
        for e in (entry or {}).get("account_data", {}).get("events", [])
        if e["type"] == "m.fully_read"
    ]


@pytest.fixture
def room(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> str:
    return joined_room_with(matrix, alice, bob)


def test_read_receipt_is_synced_initial_and_incremental(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    matrix = any_prefix_client
    event_id = matrix.send_text(alice, room, "hello")
    since = sync(matrix, alice)["next_batch"]
    assert send_receipt(matrix, bob, room, event_id).json() == {}
    body = sync(matrix, alice, since=since)
    got = receipts(body, room)
    assert list(got) == [event_id]
    assert set(got[event_id]["m.read"]) == {bob.user_id}
    assert isinstance(got[event_id]["m.read"][bob.user_id]["ts"], int)
    assert "thread_id" not in got[event_id]["m.read"][bob.user_id]
    assert receipts(sync(matrix, alice, since=body["next_batch"]), room) == {}  # no change since
    initial = sync(matrix, alice)
    assert set(receipts(initial, room)[event_id]["m.read"]) == {bob.user_id}
    assert receipts(sync(matrix, bob), room)[event_id]["m.read"][bob.user_id]["ts"] > 0


def test_receipts_move_forward_only(matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str) -> None:
    first = matrix.send_text(alice, room, "one")
    second = matrix.send_text(alice, room, "two")
    send_receipt(matrix, bob, room, second)
    since = sync(matrix, alice)["next_batch"]
    send_receipt(matrix, bob, room, first)  # older: ignored
    assert receipts(sync(matrix, alice, since=since), room) == {}
    assert list(receipts(sync(matrix, alice), room)) == [second]


def test_private_receipts_are_only_for_their_owner(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    event_id = matrix.send_text(alice, room, "hello")
    alice_since = sync(matrix, alice)["next_batch"]
    bob_since = sync(matrix, bob)["next_batch"]
    send_receipt(matrix, bob, room, event_id, "m.read.private")
    assert receipts(sync(matrix, alice, since=alice_since), room) == {}
    assert receipts(sync(matrix, alice), room) == {}
    own = receipts(sync(matrix, bob, since=bob_since), room)
    assert set(own[event_id]["m.read.private"]) == {bob.user_id}
    assert set(receipts(sync(matrix, bob), room)[event_id]["m.read.private"]) == {bob.user_id}


def test_threaded_receipts_are_kept_per_thread(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    root = matrix.send_text(alice, room, "root")
    reply = matrix.send(
        alice,
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": "in thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        },
    )["event_id"]
    send_receipt(matrix, bob, room, root, body={"thread_id": "main"})
    send_receipt(matrix, bob, room, reply, body={"thread_id": root})
    send_receipt(matrix, bob, room, root)  # unthreaded
    got = receipts(sync(matrix, alice), room)
    assert got[reply]["m.read"][bob.user_id]["thread_id"] == root
    assert got[root]["m.read"][bob.user_id].get("thread_id") in (None, "main")
    assert Receipt.objects.filter(room_id=room, mxid=bob.user_id).count() == 3


def test_receipt_errors(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str, make_user: Any
) -> None:
    event_id = matrix.send_text(alice, room, "hello")
    assert_matrix_error(
        send_receipt(matrix, bob, room, event_id, "m.unknown", expect=None), 400, "M_INVALID_PARAM"
    )
    for bad in ({"thread_id": ""}, {"thread_id": 5}, {"thread_id": "nope"}):
        assert_matrix_error(
            send_receipt(matrix, bob, room, event_id, body=bad, expect=None), 400, "M_INVALID_PARAM"
        )
    assert_matrix_error(
        send_receipt(matrix, bob, room, event_id, "m.fully_read", body={"thread_id": "main"}, expect=None),
        400,
        "M_INVALID_PARAM",
    )
    assert_matrix_error(
        send_receipt(matrix, bob, room, "$missing:localhost", expect=None), 404, "M_NOT_FOUND"
    )
    other = matrix.create_room(alice)
    elsewhere = matrix.send_text(alice, other, "elsewhere")
    assert_matrix_error(send_receipt(matrix, bob, room, elsewhere, expect=None), 404, "M_NOT_FOUND")
    carol = make_user("carol")
    assert_matrix_error(send_receipt(matrix, carol, room, event_id, expect=None), 403, "M_FORBIDDEN")
    assert not Receipt.objects.exists()


def test_receipt_with_an_empty_body(matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str) -> None:
    event_id = matrix.send_text(alice, room, "hello")
    matrix.request("POST", receipt_path(room, "m.read", event_id), token=bob)  # no body at all
    assert Receipt.objects.filter(mxid=bob.user_id, event_id=event_id).exists()


def test_fully_read_through_the_receipt_route_sets_room_account_data(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    event_id = matrix.send_text(alice, room, "hello")
    since = sync(matrix, bob)["next_batch"]
    send_receipt(matrix, bob, room, event_id, "m.fully_read")
    body = sync(matrix, bob, since=since)
    assert fully_read(body, room) == [{"event_id": event_id}]
    assert receipts(body, room) == {}  # m.fully_read is not a receipt
    resp = matrix.get(f"user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read", token=bob)
    assert resp.json() == {"event_id": event_id}
    assert fully_read(sync(matrix, alice), room) == []


def test_read_markers_set_fully_read_and_receipts(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    matrix = any_prefix_client
    first = matrix.send_text(alice, room, "one")
    second = matrix.send_text(alice, room, "two")
    alice_since = sync(matrix, alice)["next_batch"]
    bob_since = sync(matrix, bob)["next_batch"]
    matrix.post(
        f"rooms/{q(room)}/read_markers",
        {"m.fully_read": first, "m.read": second, "m.read.private": second},
        token=bob,
    )
    own = sync(matrix, bob, since=bob_since)
    assert fully_read(own, room) == [{"event_id": first}]
    assert set(receipts(own, room)[second]) == {"m.read", "m.read.private"}
    other = sync(matrix, alice, since=alice_since)
    assert set(receipts(other, room)[second]) == {"m.read"}
    assert fully_read(other, room) == []
    # Only a fully-read marker (the m.read key is optional):
    matrix.post(f"rooms/{q(room)}/read_markers", {"m.fully_read": second}, token=bob)
    assert fully_read(sync(matrix, bob, since=own["next_batch"]), room) == [{"event_id": second}]


def test_read_marker_errors(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str, make_user: Any
) -> None:
    event_id = matrix.send_text(alice, room, "hello")
    path = f"rooms/{q(room)}/read_markers"
    assert_matrix_error(matrix.post(path, {"m.fully_read": 1}, token=bob, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(
        matrix.post(path, {"m.read": "$nope:localhost"}, token=bob, expect=None), 404, "M_NOT_FOUND"
    )
    carol = make_user("carol")
    assert_matrix_error(
        matrix.post(path, {"m.fully_read": event_id}, token=carol, expect=None), 403, "M_FORBIDDEN"
    )
    assert not Receipt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_receipt_from_another_thread_wakes_the_long_poll(
    db_mode: str,
    reads: ReadCounter,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
) -> None:
    room = joined_room_with(matrix, alice, bob)
    event_id = matrix.send_text(alice, room, "hello")
    since = sync(matrix, alice)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(alice, since=since, timeout=10_000))
        await reads.until(1)
        await asyncio.sleep(0.05)
        assert not pending.done()
        await in_thread(send_receipt, matrix, bob, room, event_id)
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert elapsed < SLOW
    assert set(receipts(body, room)[event_id]["m.read"]) == {bob.user_id}
    assert room_entry(body, room)["timeline"]["events"] == []
