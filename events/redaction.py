"""The redaction algorithm (spec ``/rooms/v10`` → fragment v9-redactions; ``/rooms/v11`` and
``/rooms/v12`` → fragment v11-redactions). Pure.

``redact_pdu`` is the full algorithm over a PDU's top-level keys, used for hashing and signing and
for storing a redacted event. ``redact_content`` is its ``content`` part alone, used when a
redaction is applied to a stored event. Neither mutates its input.

Following the spec to the letter, ``unsigned`` is not a preserved key: the client-facing format
adds ``unsigned`` (``redacted_because`` etc.) back after redaction.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from events.pdu import EventTypes
from events.room_versions import REDACTION_RULES_V11, RoomVersion

# Top-level keys kept by the v11 algorithm (v11 and v12).
_TOP_LEVEL_V11 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
# The v9 algorithm (v9, v10) also keeps prev_state, origin and membership.
_TOP_LEVEL_V9 = _TOP_LEVEL_V11 | {"prev_state", "origin", "membership"}

_CONTENT_V9: dict[str, frozenset[str]] = {
    EventTypes.MEMBER: frozenset({"membership", "join_authorised_via_users_server"}),
    EventTypes.CREATE: frozenset({"creator"}),
    EventTypes.JOIN_RULES: frozenset({"join_rule", "allow"}),
    EventTypes.POWER_LEVELS: frozenset(
        {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
    ),
    EventTypes.HISTORY_VISIBILITY: frozenset({"history_visibility"}),
}

_CONTENT_V11: dict[str, frozenset[str]] = {
    EventTypes.MEMBER: frozenset({"membership", "join_authorised_via_users_server"}),
    # EventTypes.CREATE keeps all of its content (handled below).
    EventTypes.JOIN_RULES: frozenset({"join_rule", "allow"}),
    EventTypes.POWER_LEVELS: frozenset(
        {
            "ban",
            "events",
            "events_default",
            "invite",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        }
    ),
    EventTypes.HISTORY_VISIBILITY: frozenset({"history_visibility"}),
    EventTypes.REDACTION: frozenset({"redacts"}),
}


def redact_content(event_type: str, content: Mapping[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The ``content`` left after redacting an event of ``event_type`` in a room of ``version``."""
    if version.redaction_rules == REDACTION_RULES_V11:
        if event_type == EventTypes.CREATE:
            # v11: "m.room.create allows all keys".
            return copy.deepcopy(dict(content))
        allowed = _CONTENT_V11.get(event_type, frozenset())
        kept = {k: copy.deepcopy(v) for k, v in content.items() if k in allowed}
        if event_type == EventTypes.MEMBER:
            # v11: m.room.member "allows the signed key of the third_party_invite key" (an object
            # with only ``signed`` survives; Synapse keeps an empty object when there is no signed).
            tpi = content.get("third_party_invite")
            if isinstance(tpi, Mapping):
                kept["third_party_invite"] = (
                    {"signed": copy.deepcopy(tpi["signed"])} if "signed" in tpi else {}
                )
        return kept
    allowed = _CONTENT_V9.get(event_type, frozenset())
    return {k: copy.deepcopy(v) for k, v in content.items() if k in allowed}


def redact_pdu(pdu: Mapping[str, Any], version: RoomVersion) -> dict[str, Any]:
    """The redacted copy of a whole PDU: only the algorithm's top-level keys, and a pruned
    ``content`` (always present, ``{}`` if the PDU had none)."""
    keep = _TOP_LEVEL_V11 if version.redaction_rules == REDACTION_RULES_V11 else _TOP_LEVEL_V9
    redacted = {k: copy.deepcopy(v) for k, v in pdu.items() if k in keep and k != "content"}
    content = pdu.get("content")
    redacted["content"] = redact_content(
        str(pdu.get("type", "")), content if isinstance(content, Mapping) else {}, version
    )
    return redacted
