"""Server-side key backups (key_backup.yaml): versions and the room keys stored in them.

Reads and writes of one small feature together; writes lock the backup's row (``SELECT … FOR
UPDATE``; on SQLite the write transaction holds the database lock), so ``etag``/``count`` stay
consistent under concurrent uploads. Nothing here is synced, so no stream position is taken.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import User
from e2ee.models import BackedUpRoomKey, KeyBackupVersion
from matrixsrv.errors import BadJson, InvalidParam, MatrixError, MissingParam, NotFound

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"


class WrongRoomKeysVersion(MatrixError):
    errcode, status, default_message = "M_WRONG_ROOM_KEYS_VERSION", 403, "Wrong backup version."


def _parse_version(version: str | None) -> int | None:
    return int(version) if version is not None and version.isascii() and version.isdigit() else None


def _find(user: User, version: str | None, *, lock: bool = False) -> KeyBackupVersion:
    pk = _parse_version(version)
    qs = KeyBackupVersion.objects.filter(user=user, pk=pk, deleted=False)
    backup = (qs.select_for_update() if lock else qs).first() if pk is not None else None
    if backup is None:
        raise NotFound("Unknown backup version")
    return backup


def _current(user: User) -> KeyBackupVersion | None:
    return KeyBackupVersion.objects.filter(user=user, deleted=False).order_by("-pk").first()


def _count(backup: KeyBackupVersion) -> int:
    return BackedUpRoomKey.objects.filter(backup=backup).count()


def _info(backup: KeyBackupVersion) -> dict[str, Any]:
    return {
        "algorithm": backup.algorithm,
        "auth_data": backup.auth_data,
        "count": _count(backup),
        "etag": str(backup.etag),
        "version": str(backup.pk),
    }


def _check_config(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
    if algorithm is None or auth_data is None:
        raise MissingParam("'algorithm' and 'auth_data' are required")
    if not isinstance(algorithm, str):
        raise BadJson("'algorithm' must be a string")
    if not isinstance(auth_data, dict):
        raise BadJson("'auth_data' must be an object")
    return algorithm, auth_data


# -- versions ---------------------------------------------------------------------------------------


def create_version(*, user: User, body: dict[str, Any]) -> str:
    algorithm, auth_data = _check_config(body)
    return str(KeyBackupVersion.objects.create(user=user, algorithm=algorithm, auth_data=auth_data).pk)


def version_info(*, user: User, version: str | None) -> dict[str, Any]:
    """The backup ``version``, or the current one when None (404 when there is none)."""
    if version is None:
        backup = _current(user)
        if backup is None:
            raise NotFound("No current backup version")
        return _info(backup)
    return _info(_find(user, version))


@transaction.atomic  # a savepoint when nested: a rejected request leaves the caller's transaction usable
def update_version(*, user: User, version: str, body: dict[str, Any]) -> None:
    """Only ``auth_data`` can change; the algorithm (and a ``version`` in the body) must match."""
    algorithm, auth_data = _check_config(body)
    backup = _find(user, version, lock=True)
    if "version" in body and body["version"] != version:
        raise InvalidParam("The version in the body does not match the path")
    if algorithm != backup.algorithm:
        raise InvalidParam("Algorithm does not match")
    backup.auth_data = auth_data
    backup.save(update_fields=["auth_data"])


@transaction.atomic  # a savepoint when nested: a rejected request leaves the caller's transaction usable
def delete_version(*, user: User, version: str) -> None:
    """Delete the backup and its keys; deleting it again succeeds (spec), an unknown one is 404."""
    pk = _parse_version(version)
    backup = KeyBackupVersion.objects.filter(user=user, pk=pk).first() if pk is not None else None
    if backup is None:
        raise NotFound("Unknown backup version")
    BackedUpRoomKey.objects.filter(backup=backup).delete()
    if not backup.deleted:
        backup.deleted = True
        backup.save(update_fields=["deleted"])


# -- keys -------------------------------------------------------------------------------------------


def _better(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Spec: keep the verified key, then the lower first_message_index, then the lower forwarded_count."""
    if bool(new.get("is_verified")) != bool(old.get("is_verified")):
        return bool(new.get("is_verified"))
    for field in ("first_message_index", "forwarded_count"):
        n, o = new.get(field), old.get(field)
        if isinstance(n, int) and isinstance(o, int) and n != o:
            return n < o
    return False


def _check_key(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadJson("Key backup data must be an object")
    for field in ("first_message_index", "forwarded_count"):
        if not isinstance(data.get(field), int) or isinstance(data.get(field), bool):
            raise BadJson(f"'{field}' must be an integer")
    if not isinstance(data.get("is_verified"), bool):
        raise BadJson("'is_verified' must be a boolean")
    if not isinstance(data.get("session_data"), dict):
        raise BadJson("'session_data' must be an object")
    return data


@transaction.atomic  # a savepoint when nested: a rejected request leaves the caller's transaction usable
def put_keys(*, user: User, version: str | None, rooms: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Store keys ``{room_id: {session_id: data}}`` in the current backup; ``{etag, count}``."""
    if version is None:
        raise MissingParam("Missing 'version'")
    checked = {
        room_id: {s: _check_key(d) for s, d in sessions.items()} for room_id, sessions in rooms.items()
    }
    backup = _find(user, version, lock=True)
    current = _current(user)
    if current is None or current.pk != backup.pk:
        raise WrongRoomKeysVersion(current_version=str(current.pk) if current else None)
    changed = False
    for room_id, sessions in checked.items():
        if not sessions:
            continue
        stored = {
            k.session_id: k
            for k in BackedUpRoomKey.objects.filter(
                backup=backup, room_id=room_id, session_id__in=list(sessions)
            )
        }
        for session_id, data in sessions.items():
            old = stored.get(session_id)
            if old is None:
                BackedUpRoomKey.objects.create(
                    backup=backup, room_id=room_id, session_id=session_id, data=data
                )
                changed = True
            elif _better(data, old.data):
                old.data = data
                old.save(update_fields=["data"])
                changed = True
    if changed:
        backup.etag += 1
        backup.save(update_fields=["etag"])
    return {"etag": str(backup.etag), "count": _count(backup)}


def get_keys(
    *, user: User, version: str | None, room_id: str | None = None, session_id: str | None = None
) -> Any:
    if version is None:
        raise MissingParam("Missing 'version'")
    backup = _find(user, version)
    qs = BackedUpRoomKey.objects.filter(backup=backup)
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    if session_id is not None:
        key = qs.filter(session_id=session_id).first()
        if key is None:
            raise NotFound("No room_keys found")
        return key.data
    rooms: dict[str, dict[str, Any]] = {}
    for key in qs.order_by("room_id", "session_id"):
        rooms.setdefault(key.room_id, {"sessions": {}})["sessions"][key.session_id] = key.data
    if room_id is not None:
        return rooms.get(room_id, {"sessions": {}})
    return {"rooms": rooms}


@transaction.atomic  # a savepoint when nested: a rejected request leaves the caller's transaction usable
def delete_keys(
    *, user: User, version: str | None, room_id: str | None = None, session_id: str | None = None
) -> dict[str, Any]:
    if version is None:
        raise MissingParam("Missing 'version'")
    backup = _find(user, version, lock=True)
    qs = BackedUpRoomKey.objects.filter(backup=backup)
    if room_id is not None:
        qs = qs.filter(room_id=room_id)
    if session_id is not None:
        qs = qs.filter(session_id=session_id)
    deleted, _ = qs.delete()
    if deleted:
        backup.etag += 1
        backup.save(update_fields=["etag"])
    return {"etag": str(backup.etag), "count": _count(backup)}
