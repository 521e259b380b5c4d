"""``push.rules.evaluate_shared_defaults``: the per-send shortcut for the server-default rules of every
recipient the event does not name (cached rule set, rules filtered by the event's type) gives exactly
what evaluating ``default_ruleset(NOBODY)`` gives, and hands out actions the caller may change."""

from __future__ import annotations

from typing import Any

import pytest

from push.rules import NOBODY, PushContext, default_ruleset, evaluate, evaluate_shared_defaults
from tests.pure.test_push_shared_defaults import ALICE, CONTEXTS, EVENTS, ROOM, message

ODD_EVENTS = {
    **EVENTS,
    # event_match on ``type`` is a case-insensitive glob: the type filter must not drop these rules.
    "upper-case message type": {**message(), "type": "M.ROOM.MESSAGE"},
    "upper-case encrypted type": {"type": "M.Room.Encrypted", "sender": ALICE, "room_id": ROOM,
                                  "content": {}},
    "custom type with a room mention": {"type": "org.example.x", "sender": ALICE, "room_id": ROOM,
                                        "content": {"m.mentions": {"room": True}}},
    "custom type mentioning nobody": {"type": "org.example.x", "sender": ALICE, "room_id": ROOM,
                                      "content": {"m.mentions": {"user_ids": [NOBODY]}}},
    "no type": {"sender": ALICE, "room_id": ROOM, "content": {"msgtype": "m.text", "body": "hi"}},
    "type not a string": {"type": 5, "sender": ALICE, "room_id": ROOM, "content": {"body": "hi"}},
    "edit of a notice": message(msgtype="m.notice", **{"m.relates_to": {"rel_type": "m.replace"}}),
}


@pytest.mark.parametrize("name", sorted(ODD_EVENTS))
@pytest.mark.parametrize("ctx", CONTEXTS, ids=["dm-admin", "group-user", "group-mod"])
def test_same_actions_as_evaluating_the_default_ruleset(name: str, ctx: dict[str, Any]) -> None:
    event = ODD_EVENTS[name]
    context = PushContext(user_id=NOBODY, **ctx)
    assert evaluate_shared_defaults(event, context) == evaluate(default_ruleset(NOBODY), event, context)


def test_returned_actions_are_the_callers_own() -> None:
    ctx = PushContext(user_id=NOBODY, room_member_count=2)
    expected = ["notify", {"set_tweak": "sound", "value": "default"}]
    first = evaluate_shared_defaults(EVENTS["message"], ctx)
    assert first == expected
    first[1]["value"] = "changed"
    first.append("extra")
    assert evaluate_shared_defaults(EVENTS["message"], ctx) == expected
