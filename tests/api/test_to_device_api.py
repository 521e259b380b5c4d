"""Send-to-device through the real routes: delivery exactly once across sync rounds (deleted once
acknowledged by a later ``since``), ``*`` for every device, idempotent transactions, and the wake-up
of a long-polling /sync."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from e2ee.models import ToDeviceMessage
from tests.api.test_sync_longpoll import SLOW, ReadCounter, async_sync, in_thread, reads, run, sleep_until
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.sync_helpers import pos, sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

__all__ = ["reads"]  # the fixture, imported for these tests


def send_to_device(
    matrix: MatrixClient,
    sender: TestUser,
    messages: dict[str, Any],
    *,
    txn_id: str | None = None,
    event_type: str = "m.room_key_request",
    expect: int = 200,
) -> Any:
    txn_id = txn_id or matrix.next_txn_id()
    return matrix.put(
        f"sendToDevice/{q(event_type)}/{q(txn_id)}", {"messages": messages}, token=sender, expect=expect
    )


def test_message_is_delivered_once_and_deleted_after_acknowledgement(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    since = sync(matrix, bob)["next_batch"]
    send_to_device(matrix, alice, {bob.user_id: {bob.device_id: {"n": 1}}})
    send_to_device(matrix, alice, {bob.user_id: {bob.device_id: {"n": 2}}}, event_type="m.dummy")

    first = sync(matrix, bob, since=since)
    assert first["to_device"]["events"] == [
        {"sender": alice.user_id, "type": "m.room_key_request", "content": {"n": 1}},
        {"sender": alice.user_id, "type": "m.dummy", "content": {"n": 2}},
    ]
    # The same since again (the response was lost): delivered again, nothing acknowledged yet.
    assert len(sync(matrix, bob, since=since)["to_device"]["events"]) == 2
    assert ToDeviceMessage.objects.count() == 2
    second = sync(matrix, bob, since=first["next_batch"])
    assert second["to_device"]["events"] == []
    assert ToDeviceMessage.objects.count() == 0  # acknowledged by the later since: deleted


def test_initial_sync_delivers_pending_messages(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    send_to_device(matrix, alice, {bob.user_id: {bob.device_id: {"x": 1}}})
    assert [e["content"] for e in sync(matrix, bob)["to_device"]["events"]] == [{"x": 1}]


def test_star_sends_to_every_device_of_the_user_and_others_get_nothing(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    second = matrix.login(bob.user_id, bob.password)
    bob2 = type(bob)(bob.user_id, second["access_token"], second["device_id"], bob.password)
    send_to_device(matrix, alice, {bob.user_id: {"*": {"all": True}}, "@nobody:test": {"*": {}}})
    assert [e["content"] for e in sync(matrix, bob)["to_device"]["events"]] == [{"all": True}]
    assert [e["content"] for e in sync(matrix, bob2)["to_device"]["events"]] == [{"all": True}]
    assert sync(matrix, alice)["to_device"]["events"] == []


def test_a_replayed_transaction_sends_nothing_new(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    messages = {bob.user_id: {bob.device_id: {"once": True}}}
    send_to_device(matrix, alice, messages, txn_id="t1")
    send_to_device(matrix, alice, messages, txn_id="t1")
    assert len(sync(matrix, bob)["to_device"]["events"]) == 1
    send_to_device(matrix, alice, messages, txn_id="t2")
    assert len(sync(matrix, bob)["to_device"]["events"]) == 2


def test_messages_must_be_an_object(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.put("sendToDevice/m.dummy/t1", {}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_MISSING_PARAM")
    resp = matrix.put("sendToDevice/m.dummy/t1", {"messages": []}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")


def test_to_device_on_r0(any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    send_to_device(any_prefix_client, alice, {bob.user_id: {bob.device_id: {}}})
    assert len(sync(any_prefix_client, bob)["to_device"]["events"]) == 1


@pytest.mark.django_db(transaction=True)
def test_to_device_message_wakes_the_long_poll(
    reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    since = sync(matrix, bob)["next_batch"]  # bob shares no room with alice: only the message wakes him

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000))
        await reads.until(1)
        await sleep_until(started, 0.2)
        assert not pending.done()
        sent_at = time.monotonic()
        await in_thread(send_to_device, matrix, alice, {bob.user_id: {bob.device_id: {"wake": 1}}})
        _, body = await asyncio.wait_for(pending, 5)
        return time.monotonic() - sent_at, body

    after_send, body = run(scenario)
    assert after_send < SLOW
    assert [e["content"] for e in body["to_device"]["events"]] == [{"wake": 1}]
    assert pos(body["next_batch"]) > pos(since)


@pytest.mark.django_db(transaction=True)
def test_room_mates_key_upload_wakes_the_long_poll_with_device_lists(
    reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    from tests.rooms_helpers import joined_room_with

    joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    keys = {
        "user_id": alice.user_id,
        "device_id": alice.device_id,
        "algorithms": [],
        "keys": {f"ed25519:{alice.device_id}": "k"},
    }

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000))
        await reads.until(1)
        await sleep_until(started, 0.2)
        assert not pending.done()
        sent_at = time.monotonic()
        await in_thread(lambda: matrix.post("keys/upload", {"device_keys": keys}, token=alice))
        _, body = await asyncio.wait_for(pending, 5)
        return time.monotonic() - sent_at, body

    after_send, body = run(scenario)
    assert after_send < SLOW
    assert body["device_lists"]["changed"] == [alice.user_id]
