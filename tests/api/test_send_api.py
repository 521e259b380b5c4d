"""Sending message events: PUT /rooms/{roomId}/send/{eventType}/{txnId} and the seed's POST form."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from events import notify
from events.models import Event
from rooms.models import Room
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import event_count, event_row, joined_room_with, set_power_levels

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db

TEXT = {"msgtype": "m.text", "body": "hello"}


def _second_device(matrix: MatrixClient, user: TestUser) -> TestUser:
    from tests.matrix_client import TestUser

    login = matrix.login(user.user_id, user.password)
    assert login["device_id"] != user.device_id
    return TestUser(user.user_id, login["access_token"], login["device_id"], user.password)


def test_send_returns_an_event_id_and_stores_the_event(any_prefix_client: MatrixClient) -> None:
    matrix = any_prefix_client
    alice = matrix.register("carol")
    room_id = matrix.create_room(alice)
    body = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")
    assert set(body) == {"event_id"} and body["event_id"].startswith("$")
    event = event_row(body["event_id"])
    assert (event.room_id, event.type, event.sender, event.content) == (
        room_id,
        "m.room.message",
        alice.user_id,
        TEXT,
    )
    assert event.state_key is None
    assert event.txn_id == "t1" and event.sender_device.device_id == alice.device_id
    assert Room.objects.get(room_id=room_id).last_event_id == event.event_id


def test_send_is_idempotent_per_device_and_txn_id(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    first = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="same")
    before = event_count()
    again = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="same")
    assert again == first
    assert event_count() == before
    assert Event.objects.filter(room_id=room_id, type="m.room.message").count() == 1


def test_a_retry_with_different_content_still_returns_the_first_event(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    first = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t")["event_id"]
    again = matrix.send(
        alice, room_id, "m.room.message", {"msgtype": "m.text", "body": "changed"}, txn_id="t"
    )
    assert again["event_id"] == first
    assert event_row(first).content == TEXT


def test_another_device_with_the_same_txn_id_makes_a_new_event(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    phone = _second_device(matrix, alice)
    first = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    second = matrix.send(phone, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    assert first != second
    assert Event.objects.filter(room_id=room_id, type="m.room.message").count() == 2
    assert event_row(second).sender_device.device_id == phone.device_id


def test_another_user_with_the_same_txn_id_makes_a_new_event(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    first = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    second = matrix.send(bob, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    assert first != second


def test_reusing_a_txn_id_for_another_room_is_not_a_retry(matrix: MatrixClient, alice: TestUser) -> None:
    # Spec, "Transaction identifiers": a retransmission has the same txnId AND the same path. The
    # same txnId on another path must never answer with the first room's event.
    room_a = matrix.create_room(alice)
    room_b = matrix.create_room(alice)
    first = matrix.send(alice, room_a, "m.room.message", TEXT, txn_id="t1")["event_id"]
    before = event_count()
    # Our Event table keeps one event per (device, txn_id), so the server refuses the reuse (400)
    # rather than store a second event it could not deduplicate.
    resp = matrix.send(alice, room_b, "m.room.message", TEXT, txn_id="t1", expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert event_count() == before
    # The first request's retry still answers with its event.
    assert matrix.send(alice, room_a, "m.room.message", TEXT, txn_id="t1")["event_id"] == first


def test_reusing_a_txn_id_for_another_event_type_is_not_a_retry(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    first = matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    resp = matrix.send(alice, room_id, "org.example.other", {}, txn_id="t1", expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"] == first


def test_seed_post_form_without_txn_id_works(any_prefix_client: MatrixClient) -> None:
    # The seed's curl walk-through: POST, no txn ID, and curl -d's form content type.
    matrix = any_prefix_client
    alice = matrix.register("carol")
    room_id = matrix.create_room(alice)
    raw = json.dumps(TEXT).encode()
    resp = matrix.request(
        "POST",
        f"rooms/{q(room_id)}/send/m.room.message",
        raw=raw,
        token=alice,
        content_type="application/x-www-form-urlencoded",
    )
    event = event_row(resp.json()["event_id"])
    assert event.content == TEXT and event.room_id == room_id
    # Without a txn ID every POST is a new event.
    resp2 = matrix.request(
        "POST",
        f"rooms/{q(room_id)}/send/m.room.message",
        raw=raw,
        token=alice,
        content_type="application/x-www-form-urlencoded",
    )
    assert resp2.json()["event_id"] != resp.json()["event_id"]


def test_put_with_form_content_type_is_parsed_as_json(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    resp = matrix.request(
        "PUT",
        f"rooms/{q(room_id)}/send/m.room.message/t9",
        raw=json.dumps(TEXT).encode(),
        token=alice,
        content_type="application/x-www-form-urlencoded",
    )
    assert event_row(resp.json()["event_id"]).content == TEXT


def test_content_over_64_kib_is_m_too_large(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    before = event_count()
    big = {"msgtype": "m.text", "body": "x" * (64 * 1024)}
    resp = matrix.send(alice, room_id, "m.room.message", big, expect=None)
    assert_matrix_error(resp, 413, "M_TOO_LARGE")
    assert event_count() == before
    # A little under the limit is fine.
    matrix.send(alice, room_id, "m.room.message", {"msgtype": "m.text", "body": "x" * 60000})


def test_non_member_cannot_send(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    before = event_count()
    assert_matrix_error(matrix.send(bob, room_id, "m.room.message", TEXT, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before


def test_invited_user_cannot_send_until_joined(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, invite=[bob.user_id])
    assert_matrix_error(matrix.send(bob, room_id, "m.room.message", TEXT, expect=None), 403, "M_FORBIDDEN")
    matrix.join(bob, room_id)
    matrix.send(bob, room_id, "m.room.message", TEXT)


def test_former_member_cannot_send(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    assert_matrix_error(matrix.send(bob, room_id, "m.room.message", TEXT, expect=None), 403, "M_FORBIDDEN")


def test_unknown_room_is_not_found(matrix: MatrixClient, alice: TestUser) -> None:
    # Synapse answers 404 "Unknown room" too; a non-member of an existing room gets 403.
    before = event_count()
    for room_id in ("!nosuchroom:test.local", "!abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"):
        resp = matrix.send(alice, room_id, "m.room.message", TEXT, expect=None)
        assert_matrix_error(resp, 404, "M_NOT_FOUND")
    assert event_count() == before


def test_below_events_default_is_forbidden(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob, room_version="11")
    set_power_levels(matrix, alice, room_id, events_default=10, users={bob.user_id: 5})
    before = event_count()
    assert_matrix_error(matrix.send(bob, room_id, "m.room.message", TEXT, expect=None), 403, "M_FORBIDDEN")
    assert event_count() == before
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 10})
    matrix.send(bob, room_id, "m.room.message", TEXT)


def test_per_type_event_level_applies(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    set_power_levels(matrix, alice, room_id, events={"org.example.special": 60})
    assert_matrix_error(matrix.send(bob, room_id, "org.example.special", {}, expect=None), 403, "M_FORBIDDEN")
    matrix.send(bob, room_id, "org.example.ordinary", {})
    matrix.send(alice, room_id, "org.example.special", {})


def test_a_retry_after_the_sender_left_still_returns_the_first_event(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    """A send makes no replay check up front; a retry that the room now refuses (the sender left
    meanwhile) is still a retry: it answers with the first event, and nothing new is stored."""
    room_id = joined_room_with(matrix, alice, bob)
    first = matrix.send(bob, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    matrix.leave(bob, room_id)
    before = event_count()
    assert matrix.send(bob, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"] == first
    assert event_count() == before
    matrix.send(bob, room_id, "m.room.message", TEXT, txn_id="t2", expect=403)
    assert event_count() == before


def test_a_rejected_send_does_not_use_up_the_txn_id(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.send(bob, room_id, "m.room.message", TEXT, txn_id="t1", expect=403)
    matrix.join(bob, room_id)
    event_id = matrix.send(bob, room_id, "m.room.message", TEXT, txn_id="t1")["event_id"]
    assert event_row(event_id).sender == bob.user_id


@pytest.mark.parametrize("event_type", ["m.room.create", "m.room.member"])
def test_state_only_types_cannot_be_sent_as_messages(
    matrix: MatrixClient, alice: TestUser, event_type: str
) -> None:
    room_id = matrix.create_room(alice)
    before = event_count()
    resp = matrix.send(alice, room_id, event_type, {"membership": "join"}, expect=None)
    assert resp.status_code in (400, 403), resp.content
    assert event_count() == before


@pytest.mark.parametrize(
    ("raw", "errcode"), [(b"[1, 2]", "M_BAD_JSON"), (b'"text"', "M_BAD_JSON"), (b"{not json", "M_NOT_JSON")]
)
def test_body_must_be_a_json_object(matrix: MatrixClient, alice: TestUser, raw: bytes, errcode: str) -> None:
    room_id = matrix.create_room(alice)
    before = event_count()
    resp = matrix.request(
        "PUT", f"rooms/{q(room_id)}/send/m.room.message/t1", raw=raw, token=alice, expect=None
    )
    assert_matrix_error(resp, 400, errcode)
    assert event_count() == before


def test_send_needs_a_token(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    resp = matrix.put(f"rooms/{q(room_id)}/send/m.room.message/t1", TEXT, expect=None)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


def test_post_on_the_txn_route_is_unrecognized(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    resp = matrix.post(f"rooms/{q(room_id)}/send/m.room.message/t1", TEXT, token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")


def test_event_type_and_txn_id_with_reserved_characters(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    event_id = matrix.send(alice, room_id, "org.example.type with space", {"a": 1}, txn_id="t:1 ?&=")[
        "event_id"
    ]
    event = event_row(event_id)
    assert (event.type, event.txn_id) == ("org.example.type with space", "t:1 ?&=")


def test_blocked_room_refuses_sends(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    Room.objects.filter(room_id=room_id).update(blocked=True)
    assert_matrix_error(matrix.send(alice, room_id, "m.room.message", TEXT, expect=None), 403, "M_FORBIDDEN")


def test_send_wakes_the_joined_members_after_commit(
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
    make_user,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    published: list[tuple[int, list[str], list[int]]] = []
    monkeypatch.setattr(
        notify, "_publish", lambda pos, rooms, users, events=0: published.append((pos, rooms, users))
    )
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        event_id = matrix.send_text(alice, room_id, "ping")
    assert len(callbacks) == 1
    # One wake-up naming the room (each worker wakes the waiters joined to it), no member list.
    assert published == [(event_row(event_id).stream_pos, [room_id], [])]


def test_a_replay_wakes_nobody(
    matrix: MatrixClient,
    alice: TestUser,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    room_id = matrix.create_room(alice)
    matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")
    published: list[Any] = []
    monkeypatch.setattr(
        notify, "_publish", lambda pos, rooms, users, events=0: published.append((pos, rooms, users))
    )
    with django_capture_on_commit_callbacks(execute=True):
        matrix.send(alice, room_id, "m.room.message", TEXT, txn_id="t1")
    assert published == []


@pytest.mark.django_db(transaction=True)
def test_two_copies_of_one_request_racing_make_one_event(matrix: MatrixClient, alice: TestUser) -> None:
    """The replay check runs before the room lock, so two copies of a request can both pass it: the
    unique (device, txn_id) index stops the second, which then answers with the first's event."""
    import threading

    from django.db import connection

    from accounts.models import AccessToken
    from events.actions import SendContext, send_message_event

    room_id = matrix.create_room(alice)
    token = AccessToken.objects.select_related("user", "device").get(device__device_id=alice.device_id)
    barrier, results, errors = threading.Barrier(4), [], []

    def send() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(send_message_event(
                sender=token.user, room_id=room_id, event_type="m.room.message",
                content={"msgtype": "m.text", "body": "once"},
                send=SendContext(device=token.device, txn_id="raced"),
            ))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert len(results) == 4 and len(set(results)) == 1
    assert Event.objects.filter(room_id=room_id, txn_id="raced").count() == 1
