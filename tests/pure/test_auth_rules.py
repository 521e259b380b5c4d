"""The authorization rules (events/auth_rules.py), one table per rule; ids cite the v10/v11 rule
number (v12 numbers are one higher from rule 2 on). No database."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from events.auth_rules import _rule, auth_event_keys, auth_types_for_event, check_event_allowed
from events.pdu import (
    CREATE_KEY,
    JOIN_RULES_KEY,
    POWER_LEVELS_KEY,
    AuthState,
    EventDraft,
    EventTypes,
    StateEvent,
    is_valid_user_id,
    member_key,
    server_name_of,
)
from events.power_levels import CREATOR_POWER_LEVEL, MAX_POWER_LEVEL, default_power_levels_content
from events.room_versions import ROOM_V10, ROOM_V11, ROOM_V12, RoomVersion
from matrixsrv.errors import Forbidden
from tests.pure.builders import (
    ALICE,
    ALL_VERSIONS,
    BOB,
    CAROL,
    CREATE_EVENT_ID,
    DAVE,
    EVE,
    VERSION_IDS,
    auth_state,
    ban,
    create,
    invite,
    join,
    join_rules,
    knock,
    leave,
    member,
    member_draft,
    message_draft,
    pl_draft,
    power_levels,
    room,
    state_draft,
)

versions = pytest.mark.parametrize("version", ALL_VERSIONS, ids=VERSION_IDS)


def assert_auth(
    allowed: bool,
    draft: EventDraft,
    state: AuthState,
    version: RoomVersion,
    *,
    rule: str | None = None,
    **kwargs: Any,
) -> None:
    """Check the verdict; for a denial, also that the message cites ``rule`` (v10/v11 numbering,
    a prefix such as "4" or "9.5") translated to the version's numbering."""
    if allowed:
        check_event_allowed(draft, state, version, **kwargs)
    else:
        with pytest.raises(Forbidden) as excinfo:
            check_event_allowed(draft, state, version, **kwargs)
        assert excinfo.value.errcode == "M_FORBIDDEN"
        assert f"room version {version.identifier}" in excinfo.value.message
        if rule is not None:
            assert _rule(version, rule) in excinfo.value.message


# --- rule 1: m.room.create --------------------------------------------------------------------------


def create_draft(sender: str = ALICE, **content: Any) -> EventDraft:
    return EventDraft(EventTypes.CREATE, sender, content, state_key="")


@pytest.mark.parametrize(
    ("version", "content", "state", "room_id", "allowed"),
    [
        pytest.param(ROOM_V10, {"creator": ALICE, "room_version": "10"}, {}, None, True, id="v10-1.5-allow"),
        pytest.param(ROOM_V11, {"room_version": "11"}, {}, None, True, id="v11-1.4-allow"),
        pytest.param(ROOM_V12, {"room_version": "12"}, {}, None, True, id="v12-1.5-allow"),
        pytest.param(ROOM_V11, {}, {}, None, True, id="v11-1.3-room_version-absent-allow"),
        pytest.param(ROOM_V11, {}, auth_state(create()), None, False, id="v11-1.1-prev-state-deny"),
        pytest.param(
            ROOM_V12, {}, auth_state(create(version=ROOM_V12)), None, False, id="v12-1.1-prev-state-deny"
        ),
        pytest.param(ROOM_V11, {}, {}, "!abc:hs", True, id="v11-1.2-room-id-domain-matches-allow"),
        pytest.param(ROOM_V11, {}, {}, "!abc:other", False, id="v11-1.2-room-id-domain-differs-deny"),
        pytest.param(ROOM_V10, {"creator": ALICE}, {}, "!abc:other", False, id="v10-1.2-room-id-domain-deny"),
        pytest.param(ROOM_V12, {}, {}, "!abc", False, id="v12-1.2-has-room-id-deny"),
        pytest.param(ROOM_V11, {"room_version": "9"}, {}, None, False, id="v11-1.3-unknown-version-deny"),
        pytest.param(ROOM_V12, {"room_version": 12}, {}, None, False, id="v12-1.3-non-string-version-deny"),
        pytest.param(ROOM_V10, {"room_version": "10"}, {}, None, False, id="v10-1.4-no-creator-deny"),
        pytest.param(
            ROOM_V12, {"additional_creators": [BOB, CAROL]}, {}, None, True, id="v12-1.4-creators-allow"
        ),
        pytest.param(ROOM_V12, {"additional_creators": []}, {}, None, True, id="v12-1.4-empty-allow"),
        pytest.param(ROOM_V12, {"additional_creators": BOB}, {}, None, False, id="v12-1.4-not-array-deny"),
        pytest.param(
            ROOM_V12, {"additional_creators": [BOB, "bob"]}, {}, None, False, id="v12-1.4-bad-id-deny"
        ),
        pytest.param(ROOM_V12, {"additional_creators": [5]}, {}, None, False, id="v12-1.4-non-string-deny"),
        pytest.param(
            ROOM_V11, {"additional_creators": "junk"}, {}, None, True, id="v11-no-additional-creators"
        ),
    ],
)
def test_create_rule_1(
    version: RoomVersion, content: dict[str, Any], state: AuthState, room_id: str | None, allowed: bool
) -> None:
    assert_auth(allowed, create_draft(**content), state, version, room_id=room_id)


# --- v11 rule 2 / v12 rule 2: the create event and the room ID ----------------------------------------


@versions
def test_rule_2_4_no_create_event_deny(version: RoomVersion) -> None:
    state = auth_state(join(ALICE), power_levels(users={ALICE: 100}))
    assert_auth(False, message_draft(ALICE), state, version, rule="2.4")
    assert _rule(ROOM_V12, "2.4") == "auth rule 2"


@pytest.mark.parametrize(
    ("room_id", "create_event_id", "allowed"),
    [
        pytest.param("!createhash", CREATE_EVENT_ID, True, id="v12-2-room-id-is-create-id-allow"),
        pytest.param("!otherhash", CREATE_EVENT_ID, False, id="v12-2-room-id-mismatch-deny"),
        pytest.param("!otherhash", "", True, id="v12-2-create-id-unknown-skip"),
        pytest.param(None, CREATE_EVENT_ID, True, id="v12-2-room-id-not-given-skip"),
    ],
)
def test_v12_rule_2_room_id(room_id: str | None, create_event_id: str, allowed: bool) -> None:
    c = create(version=ROOM_V12)
    c = StateEvent(c.type, c.state_key, c.sender, c.content, event_id=create_event_id)
    state = {**room(ROOM_V12), CREATE_KEY: c}
    assert_auth(allowed, message_draft(ALICE), state, ROOM_V12, room_id=room_id)


def test_v11_room_id_not_checked_against_create() -> None:
    assert_auth(True, message_draft(ALICE), room(ROOM_V11), ROOM_V11, room_id="!anything:hs")


# --- v11 rule 3 / v12 rule 4: m.federate ------------------------------------------------------------


@versions
@pytest.mark.parametrize(
    ("federate", "sender", "allowed"),
    [
        pytest.param(False, EVE, False, id="3-federate-false-other-server-deny"),
        pytest.param(False, BOB, True, id="3-federate-false-same-server-allow"),
        pytest.param(True, EVE, True, id="3-federate-true-allow"),
        pytest.param("false", EVE, True, id="3-federate-not-boolean-false-allow"),
    ],
)
def test_rule_3_federate(version: RoomVersion, federate: Any, sender: str, allowed: bool) -> None:
    c = create(ALICE, version, **{"m.federate": federate})
    state = {**room(version, join(sender)), CREATE_KEY: c}
    assert_auth(allowed, message_draft(sender), state, version)


# --- v11 rule 4.1: membership event shape -----------------------------------------------------------


@versions
@pytest.mark.parametrize(
    "draft",
    [
        pytest.param(EventDraft(EventTypes.MEMBER, BOB, {"membership": "join"}), id="4.1-no-state-key-deny"),
        pytest.param(member_draft(BOB, None), id="4.1-no-membership-deny"),
        pytest.param(member_draft(BOB, "dance"), id="4.8-unknown-membership-deny"),
        pytest.param(member_draft(BOB, 5), id="4.8-non-string-membership-deny"),
    ],
)
def test_rule_4_1_and_4_8_malformed_membership(version: RoomVersion, draft: EventDraft) -> None:
    assert_auth(False, draft, room(version, rule="public"), version)


# Hypothetical versions with a feature switched off: the rules follow the flags, not the identifier.
NO_KNOCK = replace(
    ROOM_V11, identifier="test-no-knock", knock_join_rule=False, knock_restricted_join_rule=False
)
NO_RESTRICTED = replace(
    ROOM_V11, identifier="test-no-restricted", restricted_join_rule=False, knock_restricted_join_rule=False
)
STRINGY = replace(ROOM_V11, identifier="test-stringy-power-levels", strict_integer_power_levels=False)


@pytest.mark.parametrize(
    ("version", "draft", "extra", "rule", "allowed"),
    [
        pytest.param(
            NO_KNOCK, member_draft(BOB, "knock"), [], "knock", False, id="no-knock-4.8-unknown-deny"
        ),
        pytest.param(
            NO_KNOCK,
            member_draft(BOB, "leave"),
            [knock(BOB)],
            "invite",
            False,
            id="no-knock-4.5.1-leave-from-knock-deny",
        ),
        pytest.param(
            NO_KNOCK,
            member_draft(BOB, "join"),
            [invite(BOB)],
            "knock",
            False,
            id="no-knock-4.3.7-knock-rule-unknown-deny",
        ),
        pytest.param(
            NO_KNOCK,
            member_draft(BOB, "join"),
            [invite(BOB)],
            "knock_restricted",
            False,
            id="no-knock-restricted-4.3.7-deny",
        ),
        pytest.param(
            NO_RESTRICTED,
            member_draft(BOB, "join"),
            [invite(BOB)],
            "restricted",
            False,
            id="no-restricted-4.3.7-deny",
        ),
        pytest.param(
            NO_RESTRICTED,
            member_draft(BOB, "knock"),
            [],
            "knock_restricted",
            False,
            id="no-knock-restricted-4.7.1-deny",
        ),
        pytest.param(
            STRINGY,
            pl_draft(users={ALICE: 100}, ban="50"),
            [],
            "invite",
            True,
            id="stringy-9.1-not-enforced-allow",
        ),
    ],
)
def test_rules_follow_version_flags(
    version: RoomVersion, draft: EventDraft, extra: list[StateEvent], rule: str, allowed: bool
) -> None:
    assert_auth(allowed, draft, room(version, *extra, rule=rule, with_power_levels=False), version)


# --- v11 rule 4.3: join -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "state", "target", "allowed"),
    [
        pytest.param(
            ROOM_V10, auth_state(create(ALICE, ROOM_V10)), ALICE, True, id="v10-4.3.1-creator-allow"
        ),
        pytest.param(
            ROOM_V11, auth_state(create(ALICE, ROOM_V11)), ALICE, True, id="v11-4.3.1-creator-allow"
        ),
        pytest.param(
            ROOM_V12, auth_state(create(ALICE, ROOM_V12)), ALICE, True, id="v12-5.3.1-creator-allow"
        ),
        pytest.param(
            ROOM_V11, auth_state(create(ALICE, ROOM_V11)), BOB, False, id="v11-4.3.1-not-creator-deny"
        ),
        pytest.param(
            ROOM_V12,
            auth_state(create(ALICE, ROOM_V12, additional_creators=[BOB])),
            BOB,
            False,
            id="v12-5.3.1-additional-creator-not-first-deny",
        ),
        pytest.param(
            ROOM_V10,
            auth_state(StateEvent(EventTypes.CREATE, "", BOB, {"creator": ALICE}, "$c")),
            ALICE,
            True,
            id="v10-4.3.1-content-creator-allow",
        ),
        pytest.param(
            ROOM_V11,
            auth_state(StateEvent(EventTypes.CREATE, "", BOB, {"creator": ALICE}, "$c")),
            ALICE,
            False,
            id="v11-4.3.1-content-creator-ignored-deny",
        ),
        pytest.param(
            ROOM_V11,
            auth_state(create(ALICE, ROOM_V11), join_rules("invite")),
            ALICE,
            False,
            id="v11-4.3.1-not-only-create-deny",
        ),
    ],
)
def test_join_rule_4_3_1_creator_first_join(
    version: RoomVersion, state: AuthState, target: str, allowed: bool
) -> None:
    assert_auth(allowed, member_draft(target, "join"), state, version)


JOIN_CASES = [
    # (join rule, BOB's current membership event, allowed)
    pytest.param("public", None, True, id="4.3.6-public-allow"),
    pytest.param("public", leave(BOB), True, id="4.3.6-public-after-leave-allow"),
    pytest.param("public", ban(BOB), False, id="4.3.3-banned-deny"),
    pytest.param("invite", ban(BOB), False, id="4.3.3-banned-invite-room-deny"),
    pytest.param("invite", invite(BOB), True, id="4.3.4-invite-invited-allow"),
    pytest.param("invite", join(BOB), True, id="4.3.4-invite-already-joined-allow"),
    pytest.param("invite", None, False, id="4.3.4-invite-not-invited-deny"),
    pytest.param("invite", leave(BOB), False, id="4.3.4-invite-left-deny"),
    pytest.param("knock", invite(BOB), True, id="4.3.4-knock-invited-allow"),
    pytest.param("knock", knock(BOB), False, id="4.3.4-knock-only-knocked-deny"),
    pytest.param("restricted", invite(BOB), True, id="4.3.5.1-restricted-invited-allow"),
    pytest.param("restricted", join(BOB), True, id="4.3.5.1-restricted-joined-allow"),
    pytest.param("restricted", None, False, id="4.3.5.2-restricted-no-authoriser-deny"),
    pytest.param("knock_restricted", invite(BOB), True, id="4.3.5.1-knock-restricted-invited-allow"),
    pytest.param("knock_restricted", None, False, id="4.3.5.2-knock-restricted-no-authoriser-deny"),
    pytest.param("private", invite(BOB), False, id="4.3.7-private-deny"),
    pytest.param("xyzzy", invite(BOB), False, id="4.3.7-unknown-rule-deny"),
    pytest.param(None, invite(BOB), True, id="no-join-rules-means-invite-allow"),
    pytest.param(None, None, False, id="no-join-rules-means-invite-deny"),
]


@versions
@pytest.mark.parametrize(("rule", "bob", "allowed"), JOIN_CASES)
def test_join_rule_4_3(version: RoomVersion, rule: str | None, bob: StateEvent | None, allowed: bool) -> None:
    state = room(version, *([bob] if bob else []), rule=rule)
    assert_auth(allowed, member_draft(BOB, "join"), state, version, rule="4.3")


@versions
def test_join_rule_4_3_2_cannot_join_someone_else(version: RoomVersion) -> None:
    state = room(version, invite(BOB), rule="public")
    assert_auth(False, member_draft(BOB, "join", sender=ALICE), state, version)


@versions
@pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
@pytest.mark.parametrize(
    ("authoriser", "authoriser_state", "invite_level", "allowed"),
    [
        pytest.param(CAROL, join(CAROL), 0, True, id="4.3.5.3-joined-with-invite-power-allow"),
        pytest.param(CAROL, join(CAROL), 50, False, id="4.3.5.2-lacks-invite-power-deny"),
        pytest.param(ALICE, None, 50, True, id="4.3.5.3-creator-authorises-allow"),
        pytest.param(CAROL, invite(CAROL), 0, False, id="4.3.5.2-authoriser-not-joined-deny"),
        pytest.param(CAROL, None, 0, False, id="4.3.5.2-authoriser-no-membership-deny"),
        pytest.param(7, None, 0, False, id="4.3.5.2-authoriser-not-a-string-deny"),
    ],
)
def test_join_rule_4_3_5_restricted_authoriser(
    version: RoomVersion,
    rule: str,
    authoriser: Any,
    authoriser_state: StateEvent | None,
    invite_level: int,
    allowed: bool,
) -> None:
    state = room(version, *([authoriser_state] if authoriser_state else []), rule=rule, invite=invite_level)
    draft = member_draft(BOB, "join", join_authorised_via_users_server=authoriser)
    assert_auth(allowed, draft, state, version, rule="4.3.5.2")


# --- v11 rule 4.4: invite ---------------------------------------------------------------------------


INVITE_CASES = [
    # (sender, extra state, invite level, allowed)
    pytest.param(ALICE, [], 0, True, id="4.4.4-creator-invites-allow"),
    pytest.param(BOB, [join(BOB)], 0, True, id="4.4.4-member-at-invite-level-allow"),
    pytest.param(BOB, [join(BOB)], 50, False, id="4.4.5-below-invite-level-deny"),
    pytest.param(BOB, [invite(BOB)], 0, False, id="4.4.2-sender-only-invited-deny"),
    pytest.param(BOB, [], 0, False, id="4.4.2-sender-not-member-deny"),
    pytest.param(ALICE, [join(CAROL)], 0, False, id="4.4.3-target-joined-deny"),
    pytest.param(ALICE, [ban(CAROL)], 0, False, id="4.4.3-target-banned-deny"),
    pytest.param(ALICE, [invite(CAROL)], 0, True, id="4.4.4-reinvite-allow"),
    pytest.param(ALICE, [knock(CAROL)], 0, True, id="4.4.4-invite-knocker-allow"),
    pytest.param(ALICE, [leave(CAROL)], 0, True, id="4.4.4-invite-after-leave-allow"),
]


@versions
@pytest.mark.parametrize(("sender", "extra", "invite_level", "allowed"), INVITE_CASES)
def test_invite_rule_4_4(
    version: RoomVersion, sender: str, extra: list[StateEvent], invite_level: int, allowed: bool
) -> None:
    state = room(version, *extra, invite=invite_level)
    assert_auth(allowed, member_draft(CAROL, "invite", sender=sender), state, version, rule="4.4")


@versions
def test_invite_rule_4_4_1_third_party_invite_not_supported(version: RoomVersion) -> None:
    draft = member_draft(
        CAROL,
        "invite",
        sender=ALICE,
        third_party_invite={"display_name": "c", "signed": {"mxid": CAROL, "token": "t"}},
    )
    assert_auth(False, draft, room(version), version)


# --- v11 rule 4.5: leave ----------------------------------------------------------------------------


@versions
@pytest.mark.parametrize(
    ("bob", "allowed"),
    [
        pytest.param(join(BOB), True, id="4.5.1-leave-allow"),
        pytest.param(invite(BOB), True, id="4.5.1-reject-invite-allow"),
        pytest.param(knock(BOB), True, id="4.5.1-withdraw-knock-allow"),
        pytest.param(leave(BOB), False, id="4.5.1-already-left-deny"),
        pytest.param(ban(BOB), False, id="4.5.1-banned-deny"),
        pytest.param(None, False, id="4.5.1-never-member-deny"),
    ],
)
def test_leave_rule_4_5_1_self(version: RoomVersion, bob: StateEvent | None, allowed: bool) -> None:
    state = room(version, *([bob] if bob else []))
    assert_auth(allowed, member_draft(BOB, "leave"), state, version, rule="4.5.1")


KICK_CASES = [
    # (sender level, target level, target membership event, kick level, ban level, sender joined, allowed)
    pytest.param(50, 0, join(CAROL), 50, 50, True, True, id="4.5.4-kick-allow"),
    pytest.param(50, 0, invite(CAROL), 50, 50, True, True, id="4.5.4-revoke-invite-allow"),
    pytest.param(49, 0, join(CAROL), 50, 50, True, False, id="4.5.5-below-kick-level-deny"),
    pytest.param(50, 50, join(CAROL), 50, 50, True, False, id="4.5.5-target-same-level-deny"),
    pytest.param(50, 60, join(CAROL), 50, 50, True, False, id="4.5.5-target-higher-deny"),
    pytest.param(50, 0, join(CAROL), 50, 50, False, False, id="4.5.2-sender-not-joined-deny"),
    pytest.param(50, 0, ban(CAROL), 50, 50, True, True, id="4.5.4-unban-allow"),
    pytest.param(50, 0, ban(CAROL), 50, 60, True, False, id="4.5.3-unban-below-ban-level-deny"),
    pytest.param(50, 0, ban(CAROL), 60, 50, True, False, id="4.5.5-unban-below-kick-level-deny"),
]


@versions
@pytest.mark.parametrize(
    ("bob_level", "carol_level", "carol", "kick", "ban_level", "bob_joined", "allowed"), KICK_CASES
)
def test_kick_rule_4_5(
    version: RoomVersion,
    bob_level: int,
    carol_level: int,
    carol: StateEvent,
    kick: int,
    ban_level: int,
    bob_joined: bool,
    allowed: bool,
) -> None:
    bob = join(BOB) if bob_joined else leave(BOB)
    state = room(version, bob, carol, users={BOB: bob_level, CAROL: carol_level}, kick=kick, ban=ban_level)
    assert_auth(allowed, member_draft(CAROL, "leave", sender=BOB), state, version, rule="4.5")


@pytest.mark.parametrize(
    ("version", "allowed"),
    [
        pytest.param(ROOM_V11, False, id="v11-4.5.5-cannot-kick-creator-at-same-level-deny"),
        pytest.param(ROOM_V12, False, id="v12-5.5.5-cannot-kick-infinite-creator-deny"),
    ],
)
def test_kick_creator(version: RoomVersion, allowed: bool) -> None:
    state = room(version, join(BOB), users={BOB: 100})
    assert_auth(allowed, member_draft(ALICE, "leave", sender=BOB), state, version)


def test_v11_creator_can_be_kicked_by_higher_user() -> None:
    # v11: the creator is an ordinary user once power levels exist.
    state = room(ROOM_V11, join(BOB), users={ALICE: 10, BOB: 100})
    assert_auth(True, member_draft(ALICE, "leave", sender=BOB), state, ROOM_V11)


# --- v11 rule 4.6: ban ------------------------------------------------------------------------------


BAN_CASES = [
    # (sender's level, target's level, target's membership event, ban level, sender joined, allowed)
    pytest.param(50, 0, join(CAROL), 50, True, True, id="4.6.2-ban-member-allow"),
    pytest.param(50, 0, None, 50, True, True, id="4.6.2-ban-non-member-allow"),
    pytest.param(50, 0, leave(CAROL), 50, True, True, id="4.6.2-ban-left-allow"),
    pytest.param(49, 0, join(CAROL), 50, True, False, id="4.6.3-below-ban-level-deny"),
    pytest.param(50, 50, join(CAROL), 50, True, False, id="4.6.3-target-same-level-deny"),
    pytest.param(50, 0, join(CAROL), 50, False, False, id="4.6.1-sender-not-joined-deny"),
]


@versions
@pytest.mark.parametrize(
    ("bob_level", "carol_level", "carol", "ban_level", "bob_joined", "allowed"), BAN_CASES
)
def test_ban_rule_4_6(
    version: RoomVersion,
    bob_level: int,
    carol_level: int,
    carol: StateEvent | None,
    ban_level: int,
    bob_joined: bool,
    allowed: bool,
) -> None:
    bob = join(BOB) if bob_joined else invite(BOB)
    extra = [bob] + ([carol] if carol else [])
    state = room(version, *extra, users={BOB: bob_level, CAROL: carol_level}, ban=ban_level)
    assert_auth(allowed, member_draft(CAROL, "ban", sender=BOB), state, version, rule="4.6")


def test_v12_creator_bans_anyone() -> None:
    state = room(ROOM_V12, join(BOB), users={BOB: MAX_POWER_LEVEL})
    assert_auth(True, member_draft(BOB, "ban", sender=ALICE), state, ROOM_V12)


def test_v12_additional_creator_cannot_ban_creator() -> None:
    c = create(ALICE, ROOM_V12, additional_creators=[BOB])
    state = {**room(ROOM_V12, join(BOB)), CREATE_KEY: c}
    assert_auth(False, member_draft(ALICE, "ban", sender=BOB), state, ROOM_V12)


# --- v11 rule 4.7: knock ----------------------------------------------------------------------------


@versions
@pytest.mark.parametrize(
    ("rule", "bob", "sender", "allowed"),
    [
        pytest.param("knock", None, BOB, True, id="4.7.3-knock-allow"),
        pytest.param("knock_restricted", None, BOB, True, id="4.7.3-knock-restricted-allow"),
        pytest.param("knock", leave(BOB), BOB, True, id="4.7.3-knock-after-leave-allow"),
        pytest.param("knock", knock(BOB), BOB, True, id="4.7.3-knock-again-allow"),
        pytest.param("invite", None, BOB, False, id="4.7.1-invite-rule-deny"),
        pytest.param("public", None, BOB, False, id="4.7.1-public-rule-deny"),
        pytest.param("restricted", None, BOB, False, id="4.7.1-restricted-rule-deny"),
        pytest.param("knock", None, ALICE, False, id="4.7.2-knock-for-other-deny"),
        pytest.param("knock", ban(BOB), BOB, False, id="4.7.4-banned-deny"),
        pytest.param("knock", invite(BOB), BOB, False, id="4.7.4-invited-deny"),
        pytest.param("knock", join(BOB), BOB, False, id="4.7.4-joined-deny"),
    ],
)
def test_knock_rule_4_7(
    version: RoomVersion, rule: str, bob: StateEvent | None, sender: str, allowed: bool
) -> None:
    state = room(version, *([bob] if bob else []), rule=rule)
    assert_auth(allowed, member_draft(BOB, "knock", sender=sender), state, version, rule="4.7")


# --- v11 rules 5-8: everything else ------------------------------------------------------------------------


@versions
@pytest.mark.parametrize(
    ("bob", "allowed"),
    [
        pytest.param(join(BOB), True, id="5-joined-allow"),
        pytest.param(invite(BOB), False, id="5-invited-deny"),
        pytest.param(knock(BOB), False, id="5-knocked-deny"),
        pytest.param(leave(BOB), False, id="5-left-deny"),
        pytest.param(ban(BOB), False, id="5-banned-deny"),
        pytest.param(None, False, id="5-never-member-deny"),
    ],
)
def test_rule_5_sender_must_be_joined(version: RoomVersion, bob: StateEvent | None, allowed: bool) -> None:
    state = room(version, *([bob] if bob else []))
    assert_auth(allowed, message_draft(BOB), state, version, rule="5")


@versions
@pytest.mark.parametrize(
    ("bob_level", "invite_level", "allowed"),
    [
        pytest.param(0, 0, True, id="6.1-at-invite-level-allow"),
        pytest.param(0, 50, False, id="6.1-below-invite-level-deny"),
        pytest.param(50, 50, True, id="6.1-ignores-state-default-allow"),
    ],
)
def test_rule_6_third_party_invite_event(
    version: RoomVersion, bob_level: int, invite_level: int, allowed: bool
) -> None:
    state = room(version, join(BOB), users={BOB: bob_level}, invite=invite_level, state_default=100)
    draft = state_draft(
        EventTypes.THIRD_PARTY_INVITE, sender=BOB, content={"display_name": "x"}, state_key="token"
    )
    assert_auth(allowed, draft, state, version)


@versions
@pytest.mark.parametrize(
    ("draft", "bob_level", "pl", "allowed"),
    [
        pytest.param(message_draft(BOB), 0, {}, True, id="7-events-default-0-allow"),
        pytest.param(message_draft(BOB), 0, {"events_default": 1}, False, id="7-below-events-default-deny"),
        pytest.param(message_draft(BOB), 10, {"events_default": 10}, True, id="7-at-events-default-allow"),
        pytest.param(
            message_draft(BOB, "m.sticker"),
            0,
            {"events": {"m.sticker": 20}},
            False,
            id="7-events-override-deny",
        ),
        pytest.param(
            state_draft("m.room.topic", sender=BOB, content={"topic": "t"}),
            49,
            {},
            False,
            id="7-below-state-default-deny",
        ),
        pytest.param(
            state_draft("m.room.topic", sender=BOB, content={"topic": "t"}),
            50,
            {},
            True,
            id="7-at-state-default-allow",
        ),
        pytest.param(
            state_draft("m.room.topic", sender=BOB),
            0,
            {"events": {"m.room.topic": 0}},
            True,
            id="7-events-lowers-state-allow",
        ),
        pytest.param(
            state_draft("m.room.name", sender=BOB),
            50,
            {"state_default": 0, "events": {"m.room.name": 51}},
            False,
            id="7-events-raises-state-deny",
        ),
        pytest.param(
            EventDraft("m.room.redaction", BOB, {"redacts": "$x"}, redacts="$x"),
            0,
            {"events": {"m.room.redaction": 1}},
            False,
            id="7-redaction-event-level-deny",
        ),
    ],
)
def test_rule_7_required_power_level(
    version: RoomVersion, draft: EventDraft, bob_level: int, pl: dict[str, Any], allowed: bool
) -> None:
    state = room(version, join(BOB), users={BOB: bob_level}, **pl)
    assert_auth(allowed, draft, state, version, rule="7", redacts_own_event=True)


@versions
@pytest.mark.parametrize(
    ("sender", "draft_type", "allowed"),
    [
        pytest.param(ALICE, "m.room.topic", True, id="7-no-pl-creator-sets-state-allow"),
        pytest.param(BOB, "m.room.topic", False, id="7-no-pl-state-default-50-deny"),
        pytest.param(BOB, "m.room.message", True, id="7-no-pl-events-default-0-allow"),
    ],
)
def test_rule_7_without_power_levels_event(
    version: RoomVersion, sender: str, draft_type: str, allowed: bool
) -> None:
    state = room(version, join(BOB), with_power_levels=False)
    draft = (
        state_draft(draft_type, sender=sender) if draft_type != "m.room.message" else message_draft(sender)
    )
    assert_auth(allowed, draft, state, version)


@versions
@pytest.mark.parametrize(
    ("state_key", "allowed"),
    [
        pytest.param(BOB, True, id="8-own-user-state-key-allow"),
        pytest.param(CAROL, False, id="8-other-user-state-key-deny"),
        pytest.param("@", False, id="8-bare-at-deny"),
        pytest.param("bob", True, id="8-plain-state-key-allow"),
        pytest.param("", True, id="8-empty-state-key-allow"),
    ],
)
def test_rule_8_user_state_keys(version: RoomVersion, state_key: str, allowed: bool) -> None:
    state = room(version, join(BOB), users={BOB: 50})
    draft = state_draft("org.example.profile", sender=BOB, state_key=state_key)
    assert_auth(allowed, draft, state, version, rule="8")


def test_rule_8_applies_to_creators_too() -> None:
    draft = state_draft("org.example.profile", sender=ALICE, state_key=BOB)
    assert_auth(False, draft, room(ROOM_V12), ROOM_V12)


# --- v11 rule 9 / v12 rule 10: m.room.power_levels ---------------------------------------------------


@versions
@pytest.mark.parametrize(
    "content",
    [
        pytest.param({"ban": "50"}, id="9.1-string-deny"),
        pytest.param({"kick": True}, id="9.1-bool-deny"),
        pytest.param({"users_default": 1.5}, id="9.1-float-deny"),
        pytest.param({"invite": 50.0}, id="9.1-integral-float-deny"),
        pytest.param({"redact": None}, id="9.1-null-deny"),
        pytest.param({"state_default": 2**53}, id="9.1-out-of-range-deny"),
        pytest.param({"events_default": -(2**53)}, id="9.1-out-of-range-negative-deny"),
        pytest.param({"events": []}, id="9.2-events-not-object-deny"),
        pytest.param({"events": {"m.room.name": "50"}}, id="9.2-events-string-value-deny"),
        pytest.param({"notifications": {"room": "50"}}, id="9.2-notifications-string-value-deny"),
        pytest.param({"notifications": 50}, id="9.2-notifications-not-object-deny"),
        pytest.param({"users": []}, id="9.3-users-not-object-deny"),
        pytest.param({"users": {"bob": 10}}, id="9.3-users-invalid-user-id-deny"),
        pytest.param({"users": {BOB: "10"}}, id="9.3-users-string-value-deny"),
        pytest.param({"users": {BOB: False}}, id="9.3-users-bool-value-deny"),
    ],
)
def test_power_levels_rule_9_1_to_9_3_shape(version: RoomVersion, content: dict[str, Any]) -> None:
    # Checked even for the first power levels event (before rule 9.4 allows it).
    state = room(version, with_power_levels=False)
    assert_auth(
        False,
        pl_draft(**{"users": {**({} if version.creators_have_infinite_power else {ALICE: 100})}, **content}),
        state,
        version,
        rule="9",
    )


@versions
def test_power_levels_rule_9_4_first_event_allowed(version: RoomVersion) -> None:
    content = default_power_levels_content(ALICE, preset="private_chat", version=version)
    assert_auth(True, pl_draft(**content), room(version, with_power_levels=False), version)


@versions
def test_power_levels_extreme_values_allowed(version: RoomVersion) -> None:
    content = {"users_default": -(2**53) + 1, "events": {"x": MAX_POWER_LEVEL}, "notifications": {}}
    assert_auth(True, pl_draft(**content), room(version, with_power_levels=False), version)


@pytest.mark.parametrize(
    ("version", "users", "allowed"),
    [
        pytest.param(ROOM_V12, {ALICE: 100}, False, id="v12-10.4-creator-listed-deny"),
        pytest.param(ROOM_V12, {BOB: 100}, False, id="v12-10.4-additional-creator-listed-deny"),
        pytest.param(ROOM_V12, {CAROL: 100}, True, id="v12-10.4-non-creator-allow"),
        pytest.param(ROOM_V11, {ALICE: 100, BOB: 100}, True, id="v11-creator-listed-allow"),
    ],
)
def test_power_levels_v12_rule_10_4_no_creators(
    version: RoomVersion, users: dict[str, int], allowed: bool
) -> None:
    c = create(ALICE, version, additional_creators=[BOB])
    state = {**room(version), CREATE_KEY: c}
    assert_auth(allowed, pl_draft(users=users), state, version)


def test_power_levels_v12_rule_10_4_with_explicit_creators() -> None:
    state = room(ROOM_V12)
    draft = pl_draft(users={DAVE: 10})
    assert_auth(False, draft, state, ROOM_V12, room_creators=frozenset({ALICE, DAVE}))


# BOB (level 50) changes the power levels; CAROL has 50 too, DAVE 10. Each row: the old content
# (on top of the base) and the new content.
BASE_USERS = {BOB: 50, CAROL: 50, DAVE: 10}
PL_CHANGE_CASES = [
    pytest.param({}, {}, True, id="9.10-no-change-allow"),
    pytest.param({}, {"kick": 40}, True, id="9.5-lower-kick-within-level-allow"),
    pytest.param({}, {"kick": 50}, True, id="9.5-kick-at-own-level-allow"),
    pytest.param({}, {"kick": 51}, False, id="9.5.2-raise-kick-above-own-deny"),
    pytest.param({"ban": 60}, {"ban": 50}, False, id="9.5.1-lower-ban-from-above-own-deny"),
    pytest.param({"ban": 60}, {}, False, id="9.5.1-remove-ban-from-above-own-deny"),
    pytest.param({"invite": 50}, {}, True, id="9.5-remove-invite-at-own-level-allow"),
    pytest.param({}, {"users_default": 51}, False, id="9.5.2-users-default-above-own-deny"),
    pytest.param({}, {"events": {"m.room.topic": 50}}, True, id="9.7-add-event-at-own-level-allow"),
    pytest.param({}, {"events": {"m.room.topic": 51}}, False, id="9.7.1-add-event-above-own-deny"),
    pytest.param(
        {"events": {"m.room.name": 100}},
        {"events": {"m.room.name": 10}},
        False,
        id="9.6.1-change-event-from-above-own-deny",
    ),
    pytest.param(
        {"events": {"m.room.name": 100}}, {"events": {}}, False, id="9.6.1-remove-event-from-above-own-deny"
    ),
    pytest.param(
        {"events": {"m.room.name": 100}},
        {"events": {"m.room.name": 100}},
        True,
        id="9.6-unchanged-event-above-own-allow",
    ),
    pytest.param(
        {"events": {"m.room.name": 40}},
        {"events": {"m.room.name": 50}},
        True,
        id="9.6-raise-event-to-own-allow",
    ),
    pytest.param({}, {"notifications": {"room": 51}}, False, id="9.7.1-notifications-above-own-deny"),
    pytest.param(
        {"notifications": {"room": 100}},
        {"notifications": {"room": 0}},
        False,
        id="9.6.1-notifications-from-above-own-deny",
    ),
    pytest.param({}, {"notifications": {"room": 20}}, True, id="9.7-notifications-within-level-allow"),
    pytest.param({}, {"users": {**BASE_USERS, DAVE: 49}}, True, id="9.8-raise-lower-user-allow"),
    pytest.param({}, {"users": {**BASE_USERS, DAVE: 50}}, True, id="9.9-raise-lower-user-to-own-allow"),
    pytest.param({}, {"users": {**BASE_USERS, DAVE: 51}}, False, id="9.9.1-raise-user-above-own-deny"),
    pytest.param({}, {"users": {**BASE_USERS, CAROL: 0}}, False, id="9.8.1-demote-equal-user-deny"),
    pytest.param({}, {"users": {BOB: 50, DAVE: 10}}, False, id="9.8.1-remove-equal-user-deny"),
    pytest.param({}, {"users": {BOB: 50, CAROL: 50}}, True, id="9.8-remove-lower-user-allow"),
    pytest.param({}, {"users": {**BASE_USERS, BOB: 10}}, True, id="9.8-demote-self-allow"),
    pytest.param({}, {"users": {**BASE_USERS, BOB: 51}}, False, id="9.9.1-promote-self-deny"),
    pytest.param({}, {"users": {**BASE_USERS, "@new:hs": 50}}, True, id="9.9-add-user-at-own-level-allow"),
    pytest.param({}, {"users": {**BASE_USERS, "@new:hs": 60}}, False, id="9.9.1-add-user-above-own-deny"),
    pytest.param({"junk": "x"}, {"junk": "y"}, True, id="9.10-unknown-keys-ignored-allow"),
]


@versions
@pytest.mark.parametrize(("old", "new", "allowed"), PL_CHANGE_CASES)
def test_power_levels_rule_9_5_to_9_9_changes(
    version: RoomVersion, old: dict[str, Any], new: dict[str, Any], allowed: bool
) -> None:
    creator = {} if version.creators_have_infinite_power else {ALICE: 100}
    old_content = {"users": {**creator, **BASE_USERS}, "events": {}, "state_default": 50, **old}
    new_content = {"users": {**creator, **BASE_USERS}, "events": {}, "state_default": 50, **new}
    if "users" in new:
        new_content["users"] = {**creator, **new["users"]}
    state = room(version, join(BOB), join(CAROL), with_power_levels=False) | {
        POWER_LEVELS_KEY: power_levels(**old_content)
    }
    assert_auth(allowed, pl_draft(sender=BOB, **new_content), state, version, rule="9")


@versions
def test_power_levels_need_the_power_levels_event_level(version: RoomVersion) -> None:
    # Rule 7 comes first: the events entry for m.room.power_levels itself.
    creator = {} if version.creators_have_infinite_power else {ALICE: 100}
    state = room(version, join(BOB), users={BOB: 50}, events={"m.room.power_levels": 100})
    draft = pl_draft(sender=BOB, users={**creator, BOB: 50}, events={"m.room.power_levels": 100})
    assert_auth(False, draft, state, version)


def test_power_levels_v12_creator_may_set_anything() -> None:
    state = room(ROOM_V12, join(BOB), users={BOB: MAX_POWER_LEVEL}, ban=MAX_POWER_LEVEL)
    draft = pl_draft(
        users={BOB: 0, CAROL: MAX_POWER_LEVEL}, ban=0, events={"m.room.tombstone": MAX_POWER_LEVEL}
    )
    assert_auth(True, draft, state, ROOM_V12)


def test_power_levels_v11_creator_cannot_demote_equal_admin() -> None:
    state = room(ROOM_V11, join(BOB), users={BOB: 100})
    assert_auth(False, pl_draft(users={ALICE: 100, BOB: 50}), state, ROOM_V11)


def test_power_levels_stored_garbage_counts_as_zero() -> None:
    # A stored value that isn't an integer (never authorised in v10+) doesn't crash the check.
    state = room(ROOM_V11, join(BOB), with_power_levels=False) | {
        POWER_LEVELS_KEY: power_levels(users={ALICE: 100, BOB: 50}, kick="junk")
    }
    assert_auth(True, pl_draft(sender=BOB, users={ALICE: 100, BOB: 50}, kick=10), state, ROOM_V11)


# --- m.room.redaction (local policy; the redact level is not an auth rule in v3+) -------------------------


@versions
@pytest.mark.parametrize(
    ("bob_level", "redact", "own", "allowed"),
    [
        pytest.param(0, 50, True, True, id="redact-own-event-allow"),
        pytest.param(50, 50, False, True, id="redact-others-with-redact-level-allow"),
        pytest.param(49, 50, False, False, id="redact-others-below-redact-level-deny"),
        pytest.param(0, 0, False, True, id="redact-level-0-allow"),
    ],
)
def test_redaction_policy(
    version: RoomVersion, bob_level: int, redact: int, own: bool, allowed: bool
) -> None:
    state = room(version, join(BOB), users={BOB: bob_level}, redact=redact)
    content = {"redacts": "$target"} if version.redacts_in_content else {}
    draft = EventDraft(EventTypes.REDACTION, BOB, content, redacts="$target")
    if allowed:
        check_event_allowed(draft, state, version, redacts_own_event=own)
    else:
        with pytest.raises(Forbidden, match="redact"):
            check_event_allowed(draft, state, version, redacts_own_event=own)


# --- error messages cite the version's rule numbers -----------------------------------------------------


@pytest.mark.parametrize(
    ("version", "draft", "state", "expected"),
    [
        pytest.param(
            ROOM_V11,
            member_draft(BOB, "join"),
            room(ROOM_V11, ban(BOB), rule="public"),
            "auth rule 4.3.3, room version 11",
            id="v11-4.3.3",
        ),
        pytest.param(
            ROOM_V12,
            member_draft(BOB, "join"),
            room(ROOM_V12, ban(BOB), rule="public"),
            "auth rule 5.3.3, room version 12",
            id="v12-5.3.3",
        ),
        pytest.param(
            ROOM_V12, message_draft(BOB), room(ROOM_V12), "auth rule 6, room version 12", id="v12-6"
        ),
        pytest.param(
            ROOM_V12, pl_draft(ban="1"), room(ROOM_V12), "auth rule 10.1, room version 12", id="v12-10.1"
        ),
        pytest.param(
            ROOM_V12,
            pl_draft(sender=BOB, kick=60),
            room(ROOM_V12, join(BOB), users={BOB: 50}),
            "auth rule 10.6.2, room version 12",
            id="v12-10.6.2",
        ),
        pytest.param(ROOM_V10, create_draft(), {}, "auth rule 1.4, room version 10", id="v10-1.4"),
        pytest.param(
            ROOM_V12, create_draft(), auth_state(create()), "auth rule 1.1, room version 12", id="v12-1.1"
        ),
    ],
)
def test_messages_cite_rule_numbers(
    version: RoomVersion, draft: EventDraft, state: AuthState, expected: str
) -> None:
    with pytest.raises(Forbidden) as excinfo:
        check_event_allowed(draft, state, version)
    assert expected in excinfo.value.message


# --- auth events selection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "expected"),
    [
        pytest.param(create_draft(), [], id="create-needs-nothing"),
        pytest.param(message_draft(BOB), [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB)], id="message"),
        pytest.param(
            state_draft("m.room.topic", sender=BOB),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB)],
            id="state",
        ),
        pytest.param(
            member_draft(BOB, "join"),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), JOIN_RULES_KEY],
            id="join",
        ),
        pytest.param(
            member_draft(BOB, "knock"),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), JOIN_RULES_KEY],
            id="knock",
        ),
        pytest.param(
            member_draft(CAROL, "invite", sender=BOB),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), member_key(CAROL), JOIN_RULES_KEY],
            id="invite",
        ),
        pytest.param(
            member_draft(CAROL, "leave", sender=BOB),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), member_key(CAROL)],
            id="kick-no-join-rules",
        ),
        pytest.param(
            member_draft(CAROL, "ban", sender=BOB),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), member_key(CAROL)],
            id="ban",
        ),
        pytest.param(
            member_draft(CAROL, "invite", sender=BOB, third_party_invite={"signed": {"token": "tok"}}),
            [
                CREATE_KEY,
                POWER_LEVELS_KEY,
                member_key(BOB),
                member_key(CAROL),
                JOIN_RULES_KEY,
                (EventTypes.THIRD_PARTY_INVITE, "tok"),
            ],
            id="third-party-invite-token",
        ),
        pytest.param(
            member_draft(CAROL, "invite", sender=BOB, third_party_invite={"signed": "junk"}),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), member_key(CAROL), JOIN_RULES_KEY],
            id="third-party-invite-malformed",
        ),
        pytest.param(
            member_draft(BOB, "join", join_authorised_via_users_server=ALICE),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), JOIN_RULES_KEY, member_key(ALICE)],
            id="restricted-join-authoriser",
        ),
        pytest.param(
            member_draft(BOB, "join", join_authorised_via_users_server=5),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB), JOIN_RULES_KEY],
            id="restricted-join-authoriser-not-string",
        ),
        pytest.param(
            EventDraft(EventTypes.MEMBER, BOB, {"membership": "join"}),
            [CREATE_KEY, POWER_LEVELS_KEY, member_key(BOB)],
            id="member-without-state-key",
        ),
    ],
)
def test_auth_types_for_event(draft: EventDraft, expected: list[tuple[str, str]]) -> None:
    assert auth_types_for_event(draft) == expected


@pytest.mark.parametrize(
    ("version", "has_create"),
    [
        pytest.param(ROOM_V10, True, id="v10"),
        pytest.param(ROOM_V11, True, id="v11"),
        pytest.param(ROOM_V12, False, id="v12-3.2-create-not-selected"),
    ],
)
def test_auth_event_keys(version: RoomVersion, has_create: bool) -> None:
    keys = auth_event_keys(member_draft(BOB, "join"), version)
    assert (CREATE_KEY in keys) is has_create
    assert keys[-3:] == [POWER_LEVELS_KEY, member_key(BOB), JOIN_RULES_KEY]


# --- identifiers used by the rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("@alice:hs", True, id="simple"),
        pytest.param("@alice:example.org:8448", True, id="port"),
        pytest.param("@alice:[::1]:8448", True, id="ipv6"),
        pytest.param("@alice:1.2.3.4", True, id="ipv4"),
        pytest.param("@Alice!#:hs", True, id="historical-localpart"),
        pytest.param("@:hs", True, id="historical-empty-localpart"),
        pytest.param("alice:hs", False, id="no-sigil"),
        pytest.param("@alice", False, id="no-server"),
        pytest.param("@alice:", False, id="empty-server"),
        pytest.param("@alice:bad_host", False, id="bad-server-name"),
        pytest.param("@a\x00b:hs", False, id="nul"),
        pytest.param("@\ud800:hs", False, id="lone-surrogate"),
        pytest.param("@" + "a" * 252 + ":hs", False, id="too-long"),
        pytest.param(5, False, id="not-a-string"),
    ],
)
def test_is_valid_user_id(value: object, valid: bool) -> None:
    assert is_valid_user_id(value) is valid


def test_value_types() -> None:
    assert server_name_of("@alice:example.org:8448") == "example.org:8448"
    assert member(BOB, "join").membership == "join"
    assert StateEvent(EventTypes.MEMBER, BOB, BOB, {"membership": 5}).membership is None
    assert message_draft(BOB).is_state is False
    assert state_draft("m.room.topic", sender=BOB).is_state is True
    assert CREATOR_POWER_LEVEL > MAX_POWER_LEVEL
