"""The redaction algorithm (events/redaction.py): v9 rules for room version 10, v11 rules for 11 and 12."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from events.redaction import redact_content, redact_pdu
from events.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion

V11_RULES = pytest.mark.parametrize("version", [ROOM_V11, ROOM_V12], ids=["11", "12"])

MEMBER = {
    "membership": "join",
    "displayname": "Bob",
    "avatar_url": "mxc://hs/a",
    "join_authorised_via_users_server": "@alice:hs",
    "third_party_invite": {
        "display_name": "b",
        "signed": {"mxid": "@bob:hs", "token": "t", "signatures": {}},
    },
}
CREATE = {
    "creator": "@alice:hs",
    "room_version": "10",
    "m.federate": False,
    "type": "m.space",
    "predecessor": {},
}
JOIN_RULES = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!r:hs"}], "x": 1}
POWER_LEVELS = {
    "ban": 50,
    "events": {"m.room.name": 50},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "redact": 50,
    "state_default": 50,
    "users": {"@alice:hs": 100},
    "users_default": 0,
    "notifications": {"room": 50},
    "historical": 100,
}
PL_V9_KEYS = {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}


@pytest.mark.parametrize(
    ("version", "event_type", "content", "expected"),
    [
        # v9 rules (room version 10)
        pytest.param(
            ROOM_V10,
            "m.room.member",
            MEMBER,
            {"membership": "join", "join_authorised_via_users_server": "@alice:hs"},
            id="v10-member",
        ),
        pytest.param(
            ROOM_V10, "m.room.create", CREATE, {"creator": "@alice:hs"}, id="v10-create-creator-only"
        ),
        pytest.param(
            ROOM_V10,
            "m.room.join_rules",
            JOIN_RULES,
            {"join_rule": "restricted", "allow": JOIN_RULES["allow"]},
            id="v10-join-rules",
        ),
        pytest.param(
            ROOM_V10,
            "m.room.power_levels",
            POWER_LEVELS,
            {k: POWER_LEVELS[k] for k in PL_V9_KEYS},
            id="v10-power-levels-no-invite",
        ),
        pytest.param(
            ROOM_V10,
            "m.room.history_visibility",
            {"history_visibility": "joined", "x": 1},
            {"history_visibility": "joined"},
            id="v10-history-visibility",
        ),
        pytest.param(
            ROOM_V10, "m.room.redaction", {"redacts": "$e", "reason": "spam"}, {}, id="v10-redaction-empty"
        ),
        pytest.param(
            ROOM_V10, "m.room.message", {"body": "hi", "msgtype": "m.text"}, {}, id="v10-message-empty"
        ),
        pytest.param(ROOM_V10, "m.room.topic", {"topic": "t"}, {}, id="v10-topic-empty"),
        # v11 rules (room versions 11 and 12)
        pytest.param(
            ROOM_V11,
            "m.room.member",
            MEMBER,
            {
                "membership": "join",
                "join_authorised_via_users_server": "@alice:hs",
                "third_party_invite": {"signed": MEMBER["third_party_invite"]["signed"]},
            },
            id="v11-member-keeps-signed",
        ),
        pytest.param(
            ROOM_V11,
            "m.room.member",
            {"membership": "invite", "third_party_invite": {"display_name": "b"}},
            {"membership": "invite", "third_party_invite": {}},
            id="v11-member-tpi-without-signed",
        ),
        pytest.param(
            ROOM_V11,
            "m.room.member",
            {"membership": "invite", "third_party_invite": "junk"},
            {"membership": "invite"},
            id="v11-member-tpi-not-object",
        ),
        pytest.param(ROOM_V12, "m.room.create", CREATE, CREATE, id="v12-create-keeps-all"),
        pytest.param(ROOM_V11, "m.room.create", CREATE, CREATE, id="v11-create-keeps-all"),
        pytest.param(
            ROOM_V11,
            "m.room.join_rules",
            JOIN_RULES,
            {"join_rule": "restricted", "allow": JOIN_RULES["allow"]},
            id="v11-join-rules",
        ),
        pytest.param(
            ROOM_V12,
            "m.room.power_levels",
            POWER_LEVELS,
            {k: POWER_LEVELS[k] for k in PL_V9_KEYS | {"invite"}},
            id="v12-power-levels-keeps-invite",
        ),
        pytest.param(
            ROOM_V11,
            "m.room.history_visibility",
            {"history_visibility": "shared", "x": 1},
            {"history_visibility": "shared"},
            id="v11-history-visibility",
        ),
        pytest.param(
            ROOM_V11,
            "m.room.redaction",
            {"redacts": "$e", "reason": "spam"},
            {"redacts": "$e"},
            id="v11-redaction-keeps-redacts",
        ),
        pytest.param(ROOM_V12, "m.room.message", {"body": "hi"}, {}, id="v12-message-empty"),
        pytest.param(ROOM_V12, "m.room.name", {"name": "n"}, {}, id="v12-name-empty"),
    ],
)
def test_redact_content(
    version: RoomVersion, event_type: str, content: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = copy.deepcopy(content)
    assert redact_content(event_type, content, version) == expected
    assert content == before  # the input is not mutated


def test_redacted_content_is_a_deep_copy() -> None:
    content = copy.deepcopy(CREATE)
    redacted = redact_content("m.room.create", content, ROOM_V11)
    redacted["predecessor"]["room_id"] = "!changed:hs"
    assert content["predecessor"] == {}


PDU = {
    "event_id": "$e",
    "type": "m.room.member",
    "room_id": "!r:hs",
    "sender": "@bob:hs",
    "state_key": "@bob:hs",
    "content": {"membership": "join", "displayname": "Bob"},
    "hashes": {"sha256": "abc"},
    "signatures": {"hs": {"ed25519:1": "sig"}},
    "depth": 5,
    "prev_events": ["$p"],
    "auth_events": ["$a"],
    "origin_server_ts": 1,
    "origin": "hs",
    "membership": "join",
    "prev_state": [],
    "unsigned": {"age_ts": 1, "replaces_state": "$old"},
    "redacts": "$x",
    "age_ts": 1,
    "custom": True,
}
COMMON_KEYS = {
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


@pytest.mark.parametrize(
    ("version", "keys"),
    [
        pytest.param(ROOM_V10, COMMON_KEYS | {"origin", "membership", "prev_state"}, id="v10-keeps-origin"),
        pytest.param(ROOM_V11, COMMON_KEYS, id="v11"),
        pytest.param(ROOM_V12, COMMON_KEYS, id="v12"),
    ],
)
def test_redact_pdu_top_level_keys(version: RoomVersion, keys: set[str]) -> None:
    redacted = redact_pdu(PDU, version)
    assert set(redacted) == keys
    assert redacted["content"] == {"membership": "join"}
    assert "unsigned" not in redacted and "redacts" not in redacted


@V11_RULES
def test_redact_pdu_v11_redaction_keeps_content_redacts(version: RoomVersion) -> None:
    pdu = {"type": "m.room.redaction", "content": {"redacts": "$x", "reason": "r"}, "redacts": "$x"}
    assert redact_pdu(pdu, version) == {"type": "m.room.redaction", "content": {"redacts": "$x"}}


@pytest.mark.parametrize("content", [None, "junk"], ids=["missing", "not-object"])
def test_redact_pdu_without_usable_content(content: Any) -> None:
    pdu = {"type": "m.room.message", "sender": "@bob:hs"}
    if content is not None:
        pdu["content"] = content
    assert redact_pdu(pdu, ROOM_V11) == {"type": "m.room.message", "sender": "@bob:hs", "content": {}}


def test_redact_pdu_does_not_mutate() -> None:
    pdu = copy.deepcopy(PDU)
    redacted = redact_pdu(pdu, ROOM_V11)
    redacted["hashes"]["sha256"] = "changed"
    assert pdu == PDU
