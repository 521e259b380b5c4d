"""Writes of end-to-end encryption (layer 3): key uploads, claims, cross-signing, signatures and
to-device messages.

Every change other users must learn of takes a position of the one stream counter
(events/stream.py) and wakes the /sync waiters concerned after commit (events/notify.py): a change of
a user's keys wakes everyone in the user's rooms (``device_lists.changed``), a to-device message its
recipients. When a row is read-modified-written under concurrency (the device-list change, the txn
check of sendToDevice), the position is taken first: its lock, held until commit, serializes the
writers, and what follows is a few small indexed statements.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from accounts import actions as account_actions
from accounts.models import Device, User
from e2ee.models import (
    CrossSigningKey,
    DeviceKeys,
    DeviceListChange,
    FallbackKey,
    KeySignature,
    OneTimeKey,
    ToDeviceMessage,
    ToDeviceTransaction,
)
from e2ee.selectors import joined_room_ids, otk_counts
from events.notify import notify_on_commit
from events.stream import next_stream_position
from matrixsrv.errors import BadJson, InvalidParam


def _key_id(raw: str) -> tuple[str, str]:
    algorithm, sep, key_id = raw.partition(":")
    if not sep or not algorithm or not key_id:
        raise BadJson(f"Invalid key ID {raw[:100]!r}: expected '<algorithm>:<key_id>'")
    return algorithm, key_id


def _device_list_changed(user: User) -> int:
    """Record a change of the user's device list or keys and wake the users sharing a room. Call in
    the writing transaction, after its other writes (it takes the stream position)."""
    pos = next_stream_position()
    if not DeviceListChange.objects.filter(user=user).update(stream_pos=pos):
        DeviceListChange.objects.create(user=user, stream_pos=pos)
    notify_on_commit(pos=pos, rooms=joined_room_ids(user), users=[user.pk])
    return pos


def upload_keys(
    *,
    user: User,
    device: Device,
    device_keys: dict[str, Any] | None,
    one_time_keys: dict[str, Any] | None,
    fallback_keys: dict[str, Any] | None,
) -> dict[str, int]:
    """POST /keys/upload. Returns the device's one-time key counts (after the upload).

    - Device keys must name the uploading user and device; a re-upload of the same keys is no change.
    - A one-time key ID already stored with other content is 400 (a client bug would make two
      sessions share a key); the same content again is ignored.
    - A fallback key replaces the algorithm's previous one and is unused; the same key again keeps
      its ``used`` flag.
    """
    if device_keys is not None:
        if device_keys.get("user_id") != user.mxid or device_keys.get("device_id") != device.device_id:
            raise InvalidParam("device_keys must be for the user and device uploading them")
        if not isinstance(device_keys.get("keys"), dict):
            raise BadJson("device_keys.keys must be an object")
    otks = [(*_key_id(k), v) for k, v in (one_time_keys or {}).items()]
    fallbacks = [(*_key_id(k), v) for k, v in (fallback_keys or {}).items()]
    with transaction.atomic():  # a savepoint when nested: a rejected key leaves the caller's txn usable
        if otks:
            existing = {
                (a, k): v
                for a, k, v in OneTimeKey.objects.filter(
                    device=device, key_id__in=[k for _, k, _ in otks]
                ).values_list("algorithm", "key_id", "key")
            }
            new = []
            for algorithm, key_id, key in otks:
                if (algorithm, key_id) in existing:
                    if existing[(algorithm, key_id)] != key:
                        raise BadJson(f"One time key {algorithm}:{key_id} already exists with other content")
                    continue
                new.append(OneTimeKey(device=device, algorithm=algorithm, key_id=key_id, key=key))
            OneTimeKey.objects.bulk_create(new, ignore_conflicts=True)
        for algorithm, key_id, key in fallbacks:
            old = FallbackKey.objects.filter(device=device, algorithm=algorithm).first()
            if old is None:
                FallbackKey.objects.create(device=device, algorithm=algorithm, key_id=key_id, key=key)
            elif old.key_id != key_id or old.key != key:
                old.key_id, old.key, old.used = key_id, key, False
                old.save(update_fields=["key_id", "key", "used"])
        if device_keys is not None:
            stored = DeviceKeys.objects.filter(device=device).first()
            if stored is None or stored.keys != device_keys:
                DeviceKeys.objects.update_or_create(
                    device=device, defaults={"user": user, "keys": device_keys}
                )
                _device_list_changed(user)
    return otk_counts(device)


def _claim_one_time_key(device_pk: int, algorithm: str) -> tuple[str, Any] | None:
    """Delete and return one one-time key of the device: a key is handed out at most once, whatever
    runs concurrently. One statement; on PostgreSQL ``SKIP LOCKED`` lets a concurrent claimer take the
    next key rather than come back empty-handed when the row it saw is taken."""
    table = OneTimeKey._meta.db_table
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    with connection.cursor() as cur:
        cur.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
            f"WHERE device_id = %s AND algorithm = %s ORDER BY id LIMIT 1{lock}) "
            f"RETURNING key_id, CAST(key AS TEXT)",
            [device_pk, algorithm],
        )
        row = cur.fetchone()
    return None if row is None else (row[0], json.loads(row[1]))


@transaction.atomic(savepoint=False)  # on SQLite: takes the write lock first (BEGIN IMMEDIATE)
def claim_keys(*, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """POST /keys/claim: ``{user: {device: algorithm}}`` → ``{user: {device: {"alg:id": key}}}``. A
    one-time key if one is left, else the device's fallback key for the algorithm (marked used)."""
    devices = {
        (d.user.mxid, d.device_id): d
        for d in Device.objects.filter(user__mxid__in=list(wanted)).select_related("user")
    }
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for mxid, by_device in wanted.items():
        for device_id, algorithm in by_device.items():
            device = devices.get((mxid, device_id))
            if device is None or not isinstance(algorithm, str):
                continue
            claimed = _claim_one_time_key(device.pk, algorithm)
            if claimed is None:
                fallback = FallbackKey.objects.filter(device=device, algorithm=algorithm).first()
                if fallback is None:
                    continue
                if not fallback.used:
                    FallbackKey.objects.filter(pk=fallback.pk).update(used=True)
                claimed = (fallback.key_id, fallback.key)
            key_id, key = claimed
            result.setdefault(mxid, {}).setdefault(device_id, {})[f"{algorithm}:{key_id}"] = key
    return result


# -- devices going away -------------------------------------------------------------------------------
#
# Deleting a device deletes its keys, one-time and fallback keys and undelivered to-device messages
# (CASCADE), but the users sharing a room with its owner must also learn that it is gone: their
# clients would otherwise keep encrypting room keys for it. These wrap the account actions that delete
# devices (accounts may not import e2ee), so every deletion of a device goes through one action here.


def _announced_device_ids(user: User, device_ids: list[str] | None) -> list[str]:
    """Those of the user's devices (all for None) that uploaded identity keys: the ones other users'
    clients know of through /keys/query."""
    qs = DeviceKeys.objects.filter(user=user)
    if device_ids is not None:
        qs = qs.filter(device__device_id__in=device_ids)
    return list(qs.values_list("device__device_id", flat=True))


def _devices_removed(user: User, device_ids: list[str]) -> None:
    """After the devices were deleted: drop the signatures on their keys and record a device-list
    change of the user (wakes everyone sharing a room). Nothing to tell when none had keys."""
    if not device_ids:
        return
    KeySignature.objects.filter(target_user=user, target_key_id__in=device_ids).delete()
    _device_list_changed(user)


@transaction.atomic
def logout(*, device: Device) -> None:
    """POST /logout: the token and its device die (``accounts.actions.logout``), and with the device
    its keys; the users sharing a room see the owner in ``device_lists.changed``."""
    user = device.user
    announced = _announced_device_ids(user, [device.device_id])
    account_actions.logout(device=device)
    _devices_removed(user, announced)


@transaction.atomic
def logout_all(*, user: User) -> None:
    """POST /logout/all: every device of the user, and their keys (a device-list change)."""
    announced = _announced_device_ids(user, None)
    account_actions.logout_all(user=user)
    _devices_removed(user, announced)


@transaction.atomic
def delete_devices(*, user: User, device_ids: list[str]) -> None:
    """DELETE /devices/{deviceId}, POST /delete_devices: the devices, their tokens and their keys (a
    device-list change when one of them had keys). Unknown device IDs are ignored."""
    announced = _announced_device_ids(user, device_ids)
    account_actions.delete_devices(user=user, device_ids=device_ids)
    _devices_removed(user, announced)


@transaction.atomic
def change_password(
    *, user: User, new_password: str, keep_device: Device | None, logout_devices: bool
) -> None:
    """POST /account/password: ``accounts.actions.change_password``, plus the device-list change of
    the devices it logs out."""
    announced = _announced_device_ids(user, None) if logout_devices else []
    if keep_device is not None and keep_device.device_id in announced:
        announced.remove(keep_device.device_id)
    account_actions.change_password(
        user=user, new_password=new_password, keep_device=keep_device, logout_devices=logout_devices
    )
    _devices_removed(user, announced)


@transaction.atomic
def deactivate_user(*, user: User) -> None:
    """POST /account/deactivate: ``accounts.actions.deactivate_user`` (every device goes), plus the
    device-list change of the devices it deletes."""
    announced = _announced_device_ids(user, None)
    account_actions.deactivate_user(user=user)
    _devices_removed(user, announced)


# -- cross-signing ----------------------------------------------------------------------------------


def parse_cross_signing_key(user: User, usage: str, key: Any) -> tuple[str, dict[str, Any]]:
    """Validate an uploaded cross-signing key; its public key and the key object."""
    if not isinstance(key, dict):
        raise BadJson(f"{usage}_key must be an object")
    if key.get("user_id") != user.mxid:
        raise InvalidParam(f"{usage}_key is not for {user.mxid}")
    usages = key.get("usage")
    if not isinstance(usages, list) or usage not in usages:
        raise InvalidParam(f"{usage}_key must have usage {usage!r}")
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise InvalidParam(f"{usage}_key must have exactly one key")
    (key_id,) = keys
    algorithm, public_key = _key_id(key_id)
    if algorithm != "ed25519" or keys[key_id] != public_key:
        raise InvalidParam(f"{usage}_key must be an ed25519 key whose ID is its public key")
    return public_key, key


@transaction.atomic(savepoint=False)
def upload_cross_signing_keys(*, user: User, keys: dict[str, dict[str, Any]]) -> None:
    """Store the master/self-signing/user-signing keys given (``{usage: key}``, validated by
    ``parse_cross_signing_key``); a change is a device-list change of the user."""
    changed = False
    for usage, key in keys.items():
        public_key, _ = parse_cross_signing_key(user, usage, key)
        stored = CrossSigningKey.objects.filter(user=user, usage=usage).first()
        if stored is not None and stored.key == key:
            continue
        CrossSigningKey.objects.update_or_create(
            user=user, usage=usage, defaults={"public_key": public_key, "key": key}
        )
        changed = True
    if changed:
        _device_list_changed(user)


@transaction.atomic(savepoint=False)
def upload_signatures(*, signer: User, signed: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """POST /keys/signatures/upload: store the signer's signatures on devices and cross-signing keys
    (``{user: {key_id: signed object}}``; ``key_id`` is a device ID or a cross-signing public key).
    Returns ``failures`` ``{user: {key_id: error}}`` for unknown keys and objects with no signature of
    the signer. (The signatures' cryptographic validity is not checked.)"""
    failures: dict[str, dict[str, Any]] = {}
    users = {u.mxid: u for u in User.objects.filter(mxid__in=list(signed))}
    changed: list[User] = []
    for mxid, objects in signed.items():
        target = users.get(mxid)
        if not isinstance(objects, dict):
            continue
        device_ids = set()
        public_keys = set()
        if target is not None:
            device_ids = set(
                DeviceKeys.objects.filter(user=target, device__device_id__in=list(objects)).values_list(
                    "device__device_id", flat=True
                )
            )
            public_keys = set(
                CrossSigningKey.objects.filter(user=target, public_key__in=list(objects)).values_list(
                    "public_key", flat=True
                )
            )
        for key_id, obj in objects.items():
            if target is None or (key_id not in device_ids and key_id not in public_keys):
                failures.setdefault(mxid, {})[key_id] = {"errcode": "M_NOT_FOUND", "error": "Unknown key"}
                continue
            sigs = (obj.get("signatures") or {}).get(signer.mxid) if isinstance(obj, dict) else None
            if not isinstance(sigs, dict) or not sigs:
                failures.setdefault(mxid, {})[key_id] = {
                    "errcode": "M_INVALID_SIGNATURE",
                    "error": f"No signature of {signer.mxid}",
                }
                continue
            for signer_key_id, signature in sigs.items():
                if not isinstance(signature, str):
                    continue
                KeySignature.objects.update_or_create(
                    signer=signer,
                    signer_key_id=signer_key_id,
                    target_user=target,
                    target_key_id=key_id,
                    defaults={"signature": signature},
                )
            if target not in changed:
                changed.append(target)
    for target in changed:
        _device_list_changed(target)
    return failures


# -- to-device --------------------------------------------------------------------------------------


def _is_local(mxid: str) -> bool:
    return mxid.endswith(":" + settings.MATRIX["SERVER_NAME"])


@transaction.atomic(savepoint=False)
def send_to_device(
    *, sender: User, device: Device, event_type: str, txn_id: str, messages: dict[str, Any]
) -> None:
    """PUT /sendToDevice/{eventType}/{txnId}: ``messages`` is ``{user: {device_id or "*": content}}``.
    Idempotent per (sending device, txn_id). Unknown and remote users or devices are skipped."""
    pos = next_stream_position()  # first: serializes the txn check below (a replay sends nothing)
    if ToDeviceTransaction.objects.filter(device=device, txn_id=txn_id).exists():
        return
    ToDeviceTransaction.objects.create(device=device, txn_id=txn_id)
    local = [m for m in messages if _is_local(m)]
    devices = Device.objects.filter(user__mxid__in=local).select_related("user")
    by_user: dict[str, list[Device]] = {}
    for d in devices:
        by_user.setdefault(d.user.mxid, []).append(d)
    rows: list[ToDeviceMessage] = []
    for mxid in local:
        targets = messages[mxid]
        if not isinstance(targets, dict):
            continue
        for target in by_user.get(mxid, []):
            content = targets.get(target.device_id, targets.get("*"))
            if isinstance(content, dict):
                rows.append(
                    ToDeviceMessage(
                        device=target, sender=sender.mxid, type=event_type, content=content, stream_pos=pos
                    )
                )
    ToDeviceMessage.objects.bulk_create(rows)
    notify_on_commit(pos=pos, users={r.device.user_id for r in rows})
