"""Content hashes, reference hashes, event IDs and v12 room IDs. Pure: stdlib, canonicaljson,
unpaddedbase64.

From the server-server spec ("Signing Events") and the room versions' "Event IDs" (v4+):

* content hash: SHA-256 over the canonical JSON of the PDU without ``unsigned``, ``signatures``
  and ``hashes``; stored as *standard* unpadded base64 in ``hashes.sha256``.
* reference hash: SHA-256 over the canonical JSON of the *redacted* PDU without ``signatures`` and
  ``unsigned`` (redaction already drops ``unsigned`` and ``age_ts``; we drop them again to be
  explicit, as Synapse does). It covers ``hashes``, so it covers the full content indirectly.
* event ID (v4+): ``"$"`` + the reference hash in *URL-safe* unpadded base64.
* room ID (v12): ``"!"`` + the create event's reference hash in URL-safe unpadded base64, i.e. the
  create event's ID with ``!`` instead of ``$``; the create PDU itself has no ``room_id``.

The PDU passed to ``reference_hash``/``event_id`` must already carry its ``hashes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from canonicaljson import encode_canonical_json
from unpaddedbase64 import encode_base64

from events.pdu import EventTypes
from events.redaction import redact_pdu
from events.room_versions import RoomVersion


def canonical_json(obj: Any) -> bytes:
    """The spec's Canonical JSON encoding (sorted keys, no whitespace, UTF-8)."""
    return encode_canonical_json(obj)


def _content_hash_bytes(pdu: Mapping[str, Any]) -> bytes:
    stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(canonical_json(stripped)).digest()


def content_hash(pdu: Mapping[str, Any]) -> str:
    """The value for ``hashes.sha256``: unpadded standard base64 of the content hash."""
    return encode_base64(_content_hash_bytes(pdu))


def with_content_hash(pdu: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``pdu`` with ``hashes`` set to ``{"sha256": content_hash(pdu)}``."""
    return {**pdu, "hashes": {"sha256": content_hash(pdu)}}


def reference_hash(pdu: Mapping[str, Any], version: RoomVersion) -> bytes:
    """The SHA-256 reference hash (raw bytes) of a PDU in a room of ``version``."""
    redacted = redact_pdu(pdu, version)
    for key in ("signatures", "unsigned", "age_ts"):
        redacted.pop(key, None)
    return hashlib.sha256(canonical_json(redacted)).digest()


def event_id(pdu: Mapping[str, Any], version: RoomVersion) -> str:
    """The event ID of a PDU (room version 4+ format)."""
    return "$" + encode_base64(reference_hash(pdu, version), urlsafe=True)


def room_id_for_create_event(create_pdu: Mapping[str, Any], version: RoomVersion) -> str:
    """The room ID a v12 ``m.room.create`` PDU defines (v12 auth rule 1.2 / room ID grammar)."""
    if not version.room_id_is_create_event_hash:
        raise ValueError(f"Room version {version.identifier} room IDs are not derived from the create event")
    if create_pdu.get("type") != EventTypes.CREATE:
        raise ValueError("Only an m.room.create event defines a room ID")
    if "room_id" in create_pdu:
        raise ValueError("An m.room.create event of this room version must not have a room_id")
    return "!" + encode_base64(reference_hash(create_pdu, version), urlsafe=True)
