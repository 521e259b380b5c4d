"""PowerLevels (events/power_levels.py): spec defaults, creators per version, createRoom defaults."""

from __future__ import annotations

from typing import Any

import pytest

from events.auth_rules import check_event_allowed
from events.pdu import EventDraft, EventTypes, StateEvent
from events.power_levels import (
    CREATOR_POWER_LEVEL,
    PowerLevels,
    default_power_levels_content,
    is_power_level_value,
    room_creators,
)
from events.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion
from tests.pure.builders import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    VERSION_IDS,
    auth_state,
    create,
    join,
    power_levels,
)


def test_from_content_defaults() -> None:
    pl = PowerLevels.from_content({})
    assert (pl.users_default, pl.events_default, pl.state_default) == (0, 0, 50)
    assert (pl.ban, pl.kick, pl.redact, pl.invite) == (50, 50, 50, 0)
    assert pl.notification_level("room") == 50
    assert pl.user_level(BOB) == 0
    assert pl.creators == frozenset()


def test_from_content_reads_everything() -> None:
    content = {
        "users": {BOB: 75},
        "users_default": 5,
        "events": {"m.room.name": 10},
        "events_default": 1,
        "state_default": 20,
        "ban": 60,
        "kick": 40,
        "redact": 30,
        "invite": 25,
        "notifications": {"room": 70},
    }
    pl = PowerLevels.from_content(content)
    assert pl.user_level(BOB) == 75
    assert pl.user_level(CAROL) == 5
    assert (pl.ban, pl.kick, pl.redact, pl.invite) == (60, 40, 30, 25)
    assert pl.required_to_send("m.room.name", is_state=True) == 10
    assert pl.required_to_send("m.room.topic", is_state=True) == 20
    assert pl.required_to_send("m.room.message", is_state=False) == 1
    assert pl.notification_level("room") == 70
    assert pl.notification_level("other") == 50


@pytest.mark.parametrize(
    "content",
    [
        pytest.param({"ban": "10", "kick": True, "users_default": 1.5}, id="non-integers-ignored"),
        pytest.param({"users": [BOB], "events": "x", "notifications": None}, id="non-objects-ignored"),
        pytest.param({"users": {BOB: "90", 5: 1}, "events": {"m.room.name": None}}, id="bad-entries-ignored"),
        pytest.param({"state_default": 2**60}, id="out-of-range-ignored"),
    ],
)
def test_from_content_ignores_malformed_values(content: dict[str, Any]) -> None:
    pl = PowerLevels.from_content(content)
    assert pl == PowerLevels.from_content({})


@pytest.mark.parametrize(
    ("event_type", "is_state", "events", "expected"),
    [
        pytest.param("m.room.message", False, {}, 0, id="message-events-default"),
        pytest.param("m.room.topic", True, {}, 50, id="state-state-default"),
        pytest.param("m.room.topic", True, {"m.room.topic": 0}, 0, id="state-events-override"),
        pytest.param("m.room.message", False, {"m.room.message": 10}, 10, id="message-events-override"),
    ],
)
def test_required_to_send(event_type: str, is_state: bool, events: dict[str, int], expected: int) -> None:
    pl = PowerLevels.from_content({"events": events})
    assert pl.required_to_send(event_type, is_state=is_state) == expected
    assert pl.can_send(BOB, event_type, is_state=is_state) is (expected <= 0)


@pytest.mark.parametrize(
    ("version", "create_event", "expected"),
    [
        pytest.param(ROOM_V10, create(ALICE, ROOM_V10), {ALICE}, id="v10-content-creator"),
        pytest.param(
            ROOM_V10,
            StateEvent(EventTypes.CREATE, "", BOB, {"creator": ALICE}),
            {ALICE},
            id="v10-creator-not-sender",
        ),
        pytest.param(ROOM_V10, StateEvent(EventTypes.CREATE, "", BOB, {}), set(), id="v10-no-creator"),
        pytest.param(
            ROOM_V11, StateEvent(EventTypes.CREATE, "", BOB, {"creator": ALICE}), {BOB}, id="v11-sender"
        ),
        pytest.param(
            ROOM_V11, create(ALICE, ROOM_V11, additional_creators=[BOB]), {ALICE}, id="v11-additional-ignored"
        ),
        pytest.param(
            ROOM_V12,
            create(ALICE, ROOM_V12, additional_creators=[BOB, "junk", 5]),
            {ALICE, BOB},
            id="v12-additional-valid-only",
        ),
        pytest.param(
            ROOM_V12,
            create(ALICE, ROOM_V12, additional_creators="junk"),
            {ALICE},
            id="v12-additional-not-list",
        ),
        pytest.param(ROOM_V12, None, set(), id="no-create-event"),
    ],
)
def test_room_creators(version: RoomVersion, create_event: StateEvent | None, expected: set[str]) -> None:
    assert room_creators(create_event, version) == frozenset(expected)


@pytest.mark.parametrize(
    ("version", "alice", "bob", "carol"),
    [
        pytest.param(ROOM_V10, 100, 0, 0, id="v10-creator-100"),
        pytest.param(ROOM_V11, 100, 0, 0, id="v11-creator-100"),
        pytest.param(ROOM_V12, CREATOR_POWER_LEVEL, CREATOR_POWER_LEVEL, 0, id="v12-creators-infinite"),
    ],
)
def test_from_state_without_power_levels_event(
    version: RoomVersion, alice: int, bob: int, carol: int
) -> None:
    state = auth_state(create(ALICE, version, additional_creators=[BOB]), join(ALICE))
    pl = PowerLevels.from_state(state, version)
    assert (pl.user_level(ALICE), pl.user_level(BOB), pl.user_level(CAROL)) == (alice, bob, carol)
    assert pl.state_default == 50  # the schema default holds without a power levels event too
    assert pl.events_default == 0


@pytest.mark.parametrize(
    ("version", "alice", "creator"),
    [
        pytest.param(ROOM_V11, 10, False, id="v11-creator-demotable"),
        pytest.param(ROOM_V12, CREATOR_POWER_LEVEL, True, id="v12-creator-immutable"),
    ],
)
def test_from_state_with_power_levels_event(version: RoomVersion, alice: int, creator: bool) -> None:
    state = auth_state(create(ALICE, version), power_levels(users={ALICE: 10, BOB: 50}))
    pl = PowerLevels.from_state(state, version)
    assert pl.user_level(ALICE) == alice
    assert pl.user_level(BOB) == 50
    assert pl.is_creator(ALICE) is creator


def test_from_state_explicit_creators() -> None:
    state = auth_state(create(ALICE, ROOM_V12))
    pl = PowerLevels.from_state(state, ROOM_V12, frozenset({CAROL}))
    assert pl.user_level(CAROL) == CREATOR_POWER_LEVEL
    assert pl.user_level(ALICE) == 0
    pl11 = PowerLevels.from_state(auth_state(create(ALICE, ROOM_V11)), ROOM_V11, frozenset({CAROL}))
    assert pl11.user_level(CAROL) == 100
    assert pl11.creators == frozenset()


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (0, True),
        (-5, True),
        (2**53 - 1, True),
        (-(2**53) + 1, True),
        (2**53, False),
        (True, False),
        (1.0, False),
        ("1", False),
        (None, False),
    ],
)
def test_is_power_level_value(value: object, ok: bool) -> None:
    assert is_power_level_value(value) is ok


# --- createRoom defaults ------------------------------------------------------------------------------

EXPECTED_EVENTS = {
    "m.room.name": 50,
    "m.room.power_levels": 100,
    "m.room.history_visibility": 100,
    "m.room.canonical_alias": 50,
    "m.room.avatar": 50,
    "m.room.tombstone": 100,
    "m.room.server_acl": 100,
    "m.room.encryption": 100,
}


@pytest.mark.parametrize(
    ("version", "preset", "users", "invite", "tombstone"),
    [
        pytest.param(ROOM_V11, "private_chat", {ALICE: 100}, 0, 100, id="v11-private"),
        pytest.param(ROOM_V11, "public_chat", {ALICE: 100}, 50, 100, id="v11-public-invite-50"),
        pytest.param(
            ROOM_V11,
            "trusted_private_chat",
            {ALICE: 100, BOB: 100, CAROL: 100},
            0,
            100,
            id="v11-trusted-invitees-at-creator-level",
        ),
        pytest.param(ROOM_V10, None, {ALICE: 100}, 0, 100, id="v10-no-preset"),
        pytest.param(ROOM_V12, "private_chat", {}, 0, 150, id="v12-creators-implicit-tombstone-150"),
        pytest.param(ROOM_V12, "trusted_private_chat", {}, 0, 150, id="v12-trusted-invitees-are-creators"),
        pytest.param(ROOM_V12, "public_chat", {}, 50, 150, id="v12-public"),
    ],
)
def test_default_power_levels_content(
    version: RoomVersion, preset: str | None, users: dict[str, int], invite: int, tombstone: int
) -> None:
    content = default_power_levels_content(ALICE, preset=preset, invitees=[BOB, CAROL], version=version)
    assert content == {
        "users": users,
        "users_default": 0,
        "events": {**EXPECTED_EVENTS, "m.room.tombstone": tombstone},
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": invite,
        "historical": 100,
        "notifications": {"room": 50},
    }
    assert content["events"]["m.room.tombstone"] > content["state_default"]


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize("preset", ["private_chat", "public_chat", "trusted_private_chat"])
def test_default_power_levels_pass_the_auth_rules(version: RoomVersion, preset: str) -> None:
    creators = [BOB] if version.additional_creators and preset == "trusted_private_chat" else None
    state = auth_state(create(ALICE, version, additional_creators=creators), join(ALICE))
    content = default_power_levels_content(ALICE, preset=preset, invitees=[BOB], version=version)
    draft = EventDraft(EventTypes.POWER_LEVELS, ALICE, content, state_key="")
    check_event_allowed(draft, state, version)
