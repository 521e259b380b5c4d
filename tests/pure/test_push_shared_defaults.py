"""``push.rules.default_rules_are_shared``: the shortcut that evaluates the server-default rules once
per event for every recipient the event does not name (push.actions.plan_push_actions). Checked
against evaluating each user's own default rule set, over events that exercise every default rule."""

from __future__ import annotations

from typing import Any

import pytest

from push.rules import NOBODY, PushContext, default_rules_are_shared, default_ruleset, evaluate

ALICE, BOB, CAROL = "@alice:hs", "@bob:hs", "@carol:hs"
ROOM = "!room:hs"


def message(body: str = "hi", **content: Any) -> dict[str, Any]:
    return {"type": "m.room.message", "sender": ALICE, "room_id": ROOM,
            "content": {"msgtype": "m.text", "body": body, **content}}


def member(target: str, membership: str) -> dict[str, Any]:
    return {"type": "m.room.member", "sender": ALICE, "room_id": ROOM, "state_key": target,
            "content": {"membership": membership}}


EVENTS = {
    "message": message(),
    "mentions bob": message("bob", **{"m.mentions": {"user_ids": [BOB]}}),
    "mentions carol": message("carol", **{"m.mentions": {"user_ids": [CAROL]}}),
    "mentions not a list": message(**{"m.mentions": {"user_ids": BOB}}),
    "room mention": message("@room", **{"m.mentions": {"room": True}}),
    "notice": message(msgtype="m.notice"),
    "edit": message(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}}),
    "encrypted": {"type": "m.room.encrypted", "sender": ALICE, "room_id": ROOM, "content": {}},
    "call": {"type": "m.call.invite", "sender": ALICE, "room_id": ROOM, "content": {}},
    "reaction": {"type": "m.reaction", "sender": ALICE, "room_id": ROOM, "content": {}},
    "tombstone": {"type": "m.room.tombstone", "sender": ALICE, "room_id": ROOM, "state_key": "",
                  "content": {"body": "moved", "replacement_room": "!new:hs"}},
    "invite bob": member(BOB, "invite"),
    "invite carol": member(CAROL, "invite"),
    "join": member(ALICE, "join"),
    "topic": {"type": "m.room.topic", "sender": ALICE, "room_id": ROOM, "state_key": "",
              "content": {"topic": "t"}},
}
CONTEXTS = [
    {"room_member_count": 2, "sender_power_level": 100},
    {"room_member_count": 5, "sender_power_level": 0},
    {"room_member_count": 5, "sender_power_level": 50, "notification_power_levels": {"room": 60}},
]


@pytest.mark.parametrize("name", sorted(EVENTS))
@pytest.mark.parametrize("ctx", CONTEXTS, ids=["dm-admin", "group-user", "group-mod"])
@pytest.mark.parametrize("user", [BOB, CAROL])
def test_shared_evaluation_equals_the_users_own(name: str, ctx: dict[str, Any], user: str) -> None:
    event = EVENTS[name]
    own = evaluate(default_ruleset(user), event, PushContext(user_id=user, user_display_name="Bob", **ctx))
    if default_rules_are_shared(event, user):
        assert evaluate(default_ruleset(NOBODY), event, PushContext(user_id=NOBODY, **ctx)) == own


@pytest.mark.parametrize(
    ("name", "user", "shared"),
    [
        ("message", BOB, True),
        ("mentions bob", BOB, False),
        ("mentions bob", CAROL, True),
        ("mentions not a list", BOB, True),
        ("invite bob", BOB, False),
        ("invite bob", CAROL, True),
        ("join", ALICE, False),
    ],
)
def test_users_the_event_names_are_evaluated_on_their_own(name: str, user: str, shared: bool) -> None:
    assert default_rules_are_shared(EVENTS[name], user) is shared
