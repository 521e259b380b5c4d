"""Client-Server API: end-to-end encryption keys (keys.yaml, cross_signing.yaml) and send-to-device
(to_device.yaml)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from accounts.uia import PASSWORD, require_user_interactive_auth
from e2ee import actions, backup
from e2ee.models import CrossSigningKey
from e2ee.selectors import cross_signing_keys, device_list_changes, query_keys
from events.stream import current_stream_position
from matrixsrv.errors import BadJson, MissingParam
from matrixsrv.http import json_object, opt_dict
from matrixsrv.views import MatrixAPIView
from sync.tokens import StreamToken

USAGES = (CrossSigningKey.MASTER, CrossSigningKey.SELF_SIGNING, CrossSigningKey.USER_SIGNING)


class KeysUploadView(MatrixAPIView):
    """POST /_matrix/client/v3/keys/upload

    Device keys, one-time keys and fallback keys of the requesting device; answers its one-time key
    counts.
    """

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        fallback = opt_dict(body, "fallback_keys")
        if fallback is None:  # the unstable name some clients still send
            fallback = opt_dict(body, "org.matrix.msc2732.fallback_keys")
        counts = actions.upload_keys(
            user=request.user,
            device=request.auth.device,
            device_keys=opt_dict(body, "device_keys"),
            one_time_keys=opt_dict(body, "one_time_keys"),
            fallback_keys=fallback,
        )
        return Response({"one_time_key_counts": counts})


class KeysQueryView(MatrixAPIView):
    """POST /_matrix/client/v3/keys/query

    Device keys (``[]``: all the user's devices) and cross-signing keys of local users; unknown users
    get no devices. There is no federation, so ``failures`` is always empty.
    """

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        wanted = opt_dict(body, "device_keys")
        if wanted is None:
            raise MissingParam("Missing 'device_keys'")
        for user_id, device_ids in wanted.items():
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise BadJson(f"device_keys[{user_id!r}] must be a list of device IDs")
        return Response(query_keys(request.user, wanted))


class KeysClaimView(MatrixAPIView):
    """POST /_matrix/client/v3/keys/claim

    One one-time key per requested device and algorithm, each handed out once; the device's fallback
    key when none is left.
    """

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        wanted = opt_dict(body, "one_time_keys")
        if wanted is None:
            raise MissingParam("Missing 'one_time_keys'")
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
                raise BadJson(f"one_time_keys[{user_id!r}] must map device IDs to algorithms")
        return Response({"one_time_keys": actions.claim_keys(wanted=wanted), "failures": {}})


class KeysChangesView(MatrixAPIView):
    """GET /_matrix/client/v3/keys/changes?from=&to=

    Users sharing a room with the requester whose device lists changed between two sync tokens, or
    who came to share one (``changed``); users who no longer share any (``left``).
    """

    def get(self, request: Request) -> Response:
        raw_from, raw_to = request.query_params.get("from"), request.query_params.get("to")
        if raw_from is None or raw_to is None:
            raise MissingParam("'from' and 'to' are required")
        head = current_stream_position()
        since = StreamToken.parse(raw_from).clamp(head).pos
        upto = StreamToken.parse(raw_to).clamp(head).pos
        changed, left = device_list_changes(request.user, since, upto) if upto > since else ([], [])
        return Response({"changed": changed, "left": left})


class DeviceSigningUploadView(MatrixAPIView):
    """POST /_matrix/client/v3/keys/device_signing/upload

    The first upload of a master key needs no user-interactive auth (as Synapse); replacing stored
    keys needs ``m.login.password``.
    """

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        keys: dict[str, dict[str, Any]] = {}
        for usage in USAGES:
            key = body.get(f"{usage}_key")
            if key is not None:
                actions.parse_cross_signing_key(request.user, usage, key)
                keys[usage] = key
        stored = cross_signing_keys(request.user)
        replaces = any(u in stored and stored[u].key != k for u, k in keys.items())
        if replaces or (CrossSigningKey.MASTER in stored and keys and any(u not in stored for u in keys)):
            require_user_interactive_auth(body, flows=[[PASSWORD]], user=request.user)
        if CrossSigningKey.MASTER not in stored and CrossSigningKey.MASTER not in keys and keys:
            raise MissingParam("A master key must be uploaded first")
        actions.upload_cross_signing_keys(user=request.user, keys=keys)
        return Response({})


class SignaturesUploadView(MatrixAPIView):
    """POST /_matrix/client/v3/keys/signatures/upload"""

    def post(self, request: Request) -> Response:
        body = json_object(request.data)
        failures = actions.upload_signatures(signer=request.user, signed=body)
        return Response({"failures": failures})


class SendToDeviceView(MatrixAPIView):
    """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}

    Idempotent per (device, txnId). Messages to remote, unknown users or devices are dropped.
    """

    def put(self, request: Request, event_type: str, txn_id: str) -> Response:
        body = json_object(request.data)
        messages = opt_dict(body, "messages")
        if messages is None:
            raise MissingParam("Missing 'messages'")
        actions.send_to_device(
            sender=request.user,
            device=request.auth.device,
            event_type=event_type,
            txn_id=txn_id,
            messages=messages,
        )
        return Response({})


# -- server-side key backups (key_backup.yaml) --------------------------------------------------------


class RoomKeysVersionView(MatrixAPIView):
    """POST/GET /_matrix/client/v3/room_keys/version

    - POST creates a new backup (it becomes the current one) and answers its version.
    - GET describes the current backup (404 when there is none).
    """

    def post(self, request: Request) -> Response:
        return Response({"version": backup.create_version(user=request.user, body=json_object(request.data))})

    def get(self, request: Request) -> Response:
        return Response(backup.version_info(user=request.user, version=None))


class RoomKeysVersionDetailView(MatrixAPIView):
    """GET/PUT/DELETE /_matrix/client/v3/room_keys/version/{version}

    - PUT changes only ``auth_data``; the algorithm must stay the same.
    - DELETE removes the backup and its keys; deleting it again succeeds.
    """

    def get(self, request: Request, version: str) -> Response:
        return Response(backup.version_info(user=request.user, version=version))

    def put(self, request: Request, version: str) -> Response:
        backup.update_version(user=request.user, version=version, body=json_object(request.data))
        return Response({})

    def delete(self, request: Request, version: str) -> Response:
        backup.delete_version(user=request.user, version=version)
        return Response({})


def _rooms_body(data: Any) -> dict[str, dict[str, Any]]:
    rooms = json_object(data).get("rooms")
    if not isinstance(rooms, dict):
        raise MissingParam("Missing 'rooms'")
    out = {}
    for room_id, room in rooms.items():
        sessions = room.get("sessions") if isinstance(room, dict) else None
        if not isinstance(sessions, dict):
            raise BadJson(f"rooms[{room_id!r}].sessions must be an object")
        out[room_id] = sessions
    return out


def _sessions_body(data: Any) -> dict[str, Any]:
    sessions = json_object(data).get("sessions")
    if not isinstance(sessions, dict):
        raise MissingParam("Missing 'sessions'")
    return sessions


class RoomKeysView(MatrixAPIView):
    """GET/PUT/DELETE /_matrix/client/v3/room_keys/keys?version=

    PUT stores keys in the current backup (403 M_WRONG_ROOM_KEYS_VERSION for another one); a key for a
    session already stored replaces it only if better (verified, lower first_message_index, lower
    forwarded_count). PUT and DELETE answer the backup's ``etag`` and ``count``.
    """

    def get(self, request: Request) -> Response:
        version = request.query_params.get("version")
        return Response(backup.get_keys(user=request.user, version=version))

    def put(self, request: Request) -> Response:
        version = request.query_params.get("version")
        return Response(backup.put_keys(user=request.user, version=version, rooms=_rooms_body(request.data)))

    def delete(self, request: Request) -> Response:
        return Response(backup.delete_keys(user=request.user, version=request.query_params.get("version")))


class RoomKeysRoomView(MatrixAPIView):
    """GET/PUT/DELETE /_matrix/client/v3/room_keys/keys/{roomId}?version="""

    def get(self, request: Request, room_id: str) -> Response:
        version = request.query_params.get("version")
        return Response(backup.get_keys(user=request.user, version=version, room_id=room_id))

    def put(self, request: Request, room_id: str) -> Response:
        rooms = {room_id: _sessions_body(request.data)}
        version = request.query_params.get("version")
        return Response(backup.put_keys(user=request.user, version=version, rooms=rooms))

    def delete(self, request: Request, room_id: str) -> Response:
        version = request.query_params.get("version")
        return Response(backup.delete_keys(user=request.user, version=version, room_id=room_id))


class RoomKeysSessionView(MatrixAPIView):
    """GET/PUT/DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}?version="""

    def get(self, request: Request, room_id: str, session_id: str) -> Response:
        version = request.query_params.get("version")
        return Response(
            backup.get_keys(user=request.user, version=version, room_id=room_id, session_id=session_id)
        )

    def put(self, request: Request, room_id: str, session_id: str) -> Response:
        rooms = {room_id: {session_id: json_object(request.data)}}
        version = request.query_params.get("version")
        return Response(backup.put_keys(user=request.user, version=version, rooms=rooms))

    def delete(self, request: Request, room_id: str, session_id: str) -> Response:
        version = request.query_params.get("version")
        return Response(
            backup.delete_keys(user=request.user, version=version, room_id=room_id, session_id=session_id)
        )
