"""Device lists as other users' clients see them, through the real routes: a device that goes away
(DELETE /devices/{id}, POST /delete_devices, /logout, /logout/all, a password change) takes its keys
with it and is a ``device_lists.changed`` entry for the users sharing a room; users who come to share
a room are ``changed``, users who no longer share any are ``left`` (in /sync and /keys/changes)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from e2ee.models import DeviceKeys, FallbackKey, KeySignature, OneTimeKey
from tests.api.test_keys_api import device_keys, otks, upload
from tests.api.test_sync_longpoll import (  # noqa: F401 (db_mode and reads are fixtures)
    SLOW,
    ReadCounter,
    async_sync,
    db_mode,
    in_thread,
    reads,
    run,
)
from tests.matrix_client import MatrixClient
from tests.matrix_client import TestUser as Account
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.django_db


def second_device(matrix: MatrixClient, user: Account, device_id: str | None = None) -> Account:
    """``user`` logged in again: a new device (or ``device_id``)."""
    extra = {"device_id": device_id} if device_id else {}
    session = matrix.login(user.user_id, user.password, **extra)
    return Account(user.user_id, session["access_token"], session["device_id"], user.password)


def with_keys(matrix: MatrixClient, device: Account) -> Account:
    """The device uploads identity keys, one-time keys and a fallback key."""
    upload(
        matrix,
        device,
        device_keys=device_keys(device),
        one_time_keys=otks(device.device_id, 2),
        fallback_keys={f"signed_curve25519:fb{device.device_id}": {"key": "fb", "signatures": {}}},
    )
    return device


def password_auth(user: Account, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def queried_devices(matrix: MatrixClient, viewer: Account, user: Account) -> list[str]:
    body = matrix.post("keys/query", {"device_keys": {user.user_id: []}}, token=viewer).json()
    return sorted(body["device_keys"][user.user_id])


def key_changes(matrix: MatrixClient, viewer: Account, since: str, to: str) -> dict[str, Any]:
    return matrix.get("keys/changes", query={"from": since, "to": to}, token=viewer).json()


def assert_no_keys_left(device_id: str) -> None:
    assert not DeviceKeys.objects.filter(device__device_id=device_id).exists()
    assert not OneTimeKey.objects.filter(device__device_id=device_id).exists()
    assert not FallbackKey.objects.filter(device__device_id=device_id).exists()


# -- devices going away ---------------------------------------------------------------------------


def delete_with_uia(matrix: MatrixClient, user: Account, device_id: str) -> None:
    first = matrix.delete(f"devices/{device_id}", {}, token=user, expect=401).json()
    matrix.delete(f"devices/{device_id}", {"auth": password_auth(user, first["session"])}, token=user)


def delete_devices_with_uia(matrix: MatrixClient, user: Account, device_id: str) -> None:
    body: dict[str, Any] = {"devices": [device_id]}
    first = matrix.post("delete_devices", body, token=user, expect=401).json()
    matrix.post("delete_devices", {**body, "auth": password_auth(user, first["session"])}, token=user)


def logout(matrix: MatrixClient, user: Account, device: Account) -> None:
    matrix.post("logout", {}, token=device)


def change_password(matrix: MatrixClient, user: Account, device_id: str) -> None:
    body: dict[str, Any] = {"new_password": "a whole new password"}
    first = matrix.post("account/password", body, token=user, expect=401).json()
    matrix.post("account/password", {**body, "auth": password_auth(user, first["session"])}, token=user)


REMOVALS: dict[str, Callable[[MatrixClient, Account, Account], None]] = {
    "DELETE /devices/{deviceId}": lambda m, user, dev: delete_with_uia(m, user, dev.device_id),
    "POST /delete_devices": lambda m, user, dev: delete_devices_with_uia(m, user, dev.device_id),
    "POST /logout": logout,
    "POST /account/password": lambda m, user, dev: change_password(m, user, dev.device_id),
}


@pytest.mark.parametrize("removal", list(REMOVALS))
def test_a_device_going_away_is_a_device_list_change_and_takes_its_keys(
    matrix: MatrixClient, alice: Account, bob: Account, make_user, removal: str
) -> None:
    stranger = make_user()
    joined_room_with(matrix, alice, bob)
    with_keys(matrix, alice)
    phone = with_keys(matrix, second_device(matrix, alice))
    assert queried_devices(matrix, bob, alice) == sorted([alice.device_id, phone.device_id])
    since_bob = sync(matrix, bob)["next_batch"]
    since_stranger = sync(matrix, stranger)["next_batch"]

    REMOVALS[removal](matrix, alice, phone)

    body = sync(matrix, bob, since=since_bob)
    assert body["device_lists"] == {"changed": [alice.user_id], "left": []}
    assert key_changes(matrix, bob, since_bob, body["next_batch"]) == {"changed": [alice.user_id], "left": []}
    assert queried_devices(matrix, bob, alice) == [alice.device_id]
    assert_no_keys_left(phone.device_id)
    # someone sharing no room with alice is not told
    assert sync(matrix, stranger, since=since_stranger)["device_lists"]["changed"] == []
    # and it is reported once
    assert sync(matrix, bob, since=body["next_batch"])["device_lists"]["changed"] == []


def test_logout_all_is_a_device_list_change_and_removes_every_key(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    joined_room_with(matrix, alice, bob)
    with_keys(matrix, alice)
    phone = with_keys(matrix, second_device(matrix, alice))
    since = sync(matrix, bob)["next_batch"]

    matrix.post("logout/all", {}, token=phone)

    assert sync(matrix, bob, since=since)["device_lists"]["changed"] == [alice.user_id]
    assert queried_devices(matrix, bob, alice) == []
    assert_no_keys_left(alice.device_id)
    assert_no_keys_left(phone.device_id)


def test_deleting_a_device_that_never_uploaded_keys_is_no_device_list_change(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    joined_room_with(matrix, alice, bob)
    with_keys(matrix, alice)
    bare = second_device(matrix, alice)  # no keys: no other client ever knew of it
    since = sync(matrix, bob)["next_batch"]

    delete_with_uia(matrix, alice, bare.device_id)
    logout(matrix, alice, second_device(matrix, alice))

    assert sync(matrix, bob, since=since, timeout=0)["device_lists"] == {"changed": [], "left": []}
    assert queried_devices(matrix, bob, alice) == [alice.device_id]


def test_signatures_on_a_deleted_device_go_with_it(matrix: MatrixClient, alice: Account) -> None:
    """A device ID logged in again later starts clean: no signature made on the old device's keys
    is merged into the new keys."""
    phone = with_keys(matrix, second_device(matrix, alice, device_id="PHONE"))
    signed = {**device_keys(phone), "signatures": {alice.user_id: {f"ed25519:{alice.device_id}": "crosssig"}}}
    failures = matrix.post("keys/signatures/upload", {alice.user_id: {"PHONE": signed}}, token=alice).json()
    assert failures == {"failures": {}}
    assert KeySignature.objects.filter(target_key_id="PHONE").exists()

    delete_with_uia(matrix, alice, "PHONE")

    assert not KeySignature.objects.filter(target_key_id="PHONE").exists()
    again = with_keys(matrix, second_device(matrix, alice, device_id="PHONE"))
    body = matrix.post("keys/query", {"device_keys": {alice.user_id: ["PHONE"]}}, token=again).json()
    assert body["device_keys"][alice.user_id]["PHONE"]["signatures"] == device_keys(again)["signatures"]


# -- sharing rooms: changed and left ----------------------------------------------------------------


def test_a_user_who_leaves_the_only_shared_room_is_left(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    room = joined_room_with(matrix, alice, bob)
    since = sync(matrix, alice)["next_batch"]

    matrix.leave(bob, room)

    body = sync(matrix, alice, since=since)
    assert body["device_lists"] == {"changed": [], "left": [bob.user_id]}
    assert key_changes(matrix, alice, since, body["next_batch"]) == {"changed": [], "left": [bob.user_id]}
    # once
    assert sync(matrix, alice, since=body["next_batch"], timeout=0)["device_lists"]["left"] == []


def test_a_user_still_sharing_another_room_is_not_left(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    room = joined_room_with(matrix, alice, bob)
    joined_room_with(matrix, alice, bob)
    since = sync(matrix, alice)["next_batch"]

    matrix.leave(bob, room)

    assert sync(matrix, alice, since=since)["device_lists"] == {"changed": [], "left": []}


def test_a_kicked_or_banned_user_is_left_and_the_kicker_is_left_for_them(
    matrix: MatrixClient, alice: Account, bob: Account, make_user
) -> None:
    carol = make_user()
    room = joined_room_with(matrix, alice, bob, carol)
    since_alice = sync(matrix, alice)["next_batch"]
    since_bob = sync(matrix, bob)["next_batch"]

    matrix.kick(alice, room, bob.user_id)
    matrix.ban(alice, room, carol.user_id)

    left = sync(matrix, alice, since=since_alice)["device_lists"]["left"]
    assert left == sorted([bob.user_id, carol.user_id])
    # bob no longer shares a room with alice nor carol
    left = sync(matrix, bob, since=since_bob)["device_lists"]["left"]
    assert left == sorted([alice.user_id, carol.user_id])


def test_leaving_a_room_makes_its_members_left_for_the_leaver(
    matrix: MatrixClient, alice: Account, bob: Account, make_user
) -> None:
    carol = make_user()
    room = joined_room_with(matrix, alice, bob, carol)
    joined_room_with(matrix, alice, carol)  # alice still shares this one with carol
    since = sync(matrix, alice)["next_batch"]

    matrix.leave(alice, room)

    assert sync(matrix, alice, since=since)["device_lists"] == {"changed": [], "left": [bob.user_id]}


def test_a_user_who_comes_to_share_a_room_is_changed_both_ways(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    room = joined_room_with(matrix, alice)
    since_alice = sync(matrix, alice)["next_batch"]
    since_bob = sync(matrix, bob)["next_batch"]

    matrix.join(bob, room)

    alice_body = sync(matrix, alice, since=since_alice)
    assert alice_body["device_lists"] == {"changed": [bob.user_id], "left": []}
    assert sync(matrix, bob, since=since_bob)["device_lists"] == {"changed": [alice.user_id], "left": []}
    changes = key_changes(matrix, alice, since_alice, alice_body["next_batch"])
    assert changes == {"changed": [bob.user_id], "left": []}

    # A profile change (join -> join) is no new share.
    since = alice_body["next_batch"]
    matrix.put(f"profile/{bob.user_id}/displayname", {"displayname": "Bobby"}, token=bob)
    member = {"membership": "join", "displayname": "Bob B."}
    matrix.send_state(bob, room, "m.room.member", member, bob.user_id)
    assert sync(matrix, alice, since=since)["device_lists"] == {"changed": [], "left": []}


def test_invited_and_rejected_users_are_neither(matrix: MatrixClient, alice: Account, bob: Account) -> None:
    room = matrix.create_room(alice, preset="private_chat")
    since = sync(matrix, alice)["next_batch"]
    matrix.invite(alice, room, bob.user_id)
    body = sync(matrix, alice, since=since)
    assert body["device_lists"] == {"changed": [], "left": []}
    matrix.leave(bob, room)  # rejects the invite
    assert sync(matrix, alice, since=body["next_batch"])["device_lists"] == {"changed": [], "left": []}


# -- waking a waiting /sync -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_device_deletion_wakes_a_room_mates_long_poll(
    db_mode: str, reads: ReadCounter, matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    joined_room_with(matrix, alice, bob)
    phone = with_keys(matrix, second_device(matrix, alice))
    since = sync(matrix, bob)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000))
        await reads.until(1)  # bob's long-poll found nothing and waits
        assert not pending.done()
        deleted_at = time.monotonic()
        await in_thread(lambda: matrix.post("logout", {}, token=phone))
        _, body = await asyncio.wait_for(pending, 5)
        return time.monotonic() - deleted_at, body

    after_delete, body = run(scenario)
    assert after_delete < SLOW  # woken by the deletion, not by the 10 s timeout
    assert body["device_lists"] == {"changed": [alice.user_id], "left": []}
