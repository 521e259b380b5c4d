"""Push rules (push/rules.py): the predefined rules, conditions, evaluation, merge/insert/validate."""

from __future__ import annotations

from typing import Any

import pytest

from matrixsrv.errors import BadJson, InvalidParam, MatrixError, MissingParam, NotFound, Unknown
from push.rules import (
    KINDS,
    PushContext,
    condition_matches,
    default_ruleset,
    evaluate,
    evaluate_rule,
    find_rule,
    glob_matches,
    insert_rule,
    merge_ruleset,
    notify_and_highlight,
    rule_key,
    rule_matches,
    should_count,
    split_key,
    tweaks,
    validate_actions,
    validate_rule,
)

ME = "@alice:hs"
BOB = "@bob:hs"
ROOM = "!room:hs"

OVERRIDE_IDS = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.is_room_mention",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
]
UNDERRIDE_IDS = [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
]
SOUND = {"set_tweak": "sound", "value": "default"}
HIGHLIGHT = {"set_tweak": "highlight"}


def message(body: str = "hello", *, sender: str = BOB, msgtype: str = "m.text", **content: Any) -> dict:
    return {
        "type": "m.room.message",
        "room_id": ROOM,
        "sender": sender,
        "event_id": "$e",
        "content": {"msgtype": msgtype, "body": body, **content},
    }


def state(event_type: str, state_key: str = "", *, sender: str = BOB, **content: Any) -> dict:
    return {
        "type": event_type,
        "room_id": ROOM,
        "sender": sender,
        "state_key": state_key,
        "event_id": "$s",
        "content": content,
    }


def event(event_type: str, *, sender: str = BOB, **content: Any) -> dict:
    return {"type": event_type, "room_id": ROOM, "sender": sender, "event_id": "$x", "content": content}


def ctx(members: int = 5, *, level: int | None = 0, name: str | None = "Alice", **notif: int) -> PushContext:
    return PushContext(
        user_id=ME,
        user_display_name=name,
        room_member_count=members,
        sender_power_level=level,
        notification_power_levels=notif,
    )


def ids(rules: list[dict]) -> list[str]:
    return [r["rule_id"] for r in rules]


# -- the predefined rules ----------------------------------------------------------------------------


def test_default_ruleset_shape_and_order() -> None:
    ruleset = default_ruleset(ME)
    assert list(ruleset) == ["global"]
    rules = ruleset["global"]
    assert set(rules) == set(KINDS)
    assert ids(rules["override"]) == OVERRIDE_IDS
    assert ids(rules["underride"]) == UNDERRIDE_IDS
    # v1.17 (MSC4210) removed the legacy body-mention rules, the only default content rule among them
    assert rules["content"] == rules["room"] == rules["sender"] == []


@pytest.mark.parametrize("kind", ["override", "underride"])
def test_every_default_rule_is_complete(kind: str) -> None:
    for rule in default_ruleset(ME)["global"][kind]:
        assert set(rule) == {"rule_id", "default", "enabled", "conditions", "actions"}
        assert rule["default"] is True
        assert rule["enabled"] is (rule["rule_id"] != ".m.rule.master")
        assert rule["rule_id"].startswith(".m.rule.")


@pytest.mark.parametrize(
    ("rule_id", "conditions", "actions"),
    [
        (".m.rule.master", [], []),
        (
            ".m.rule.suppress_notices",
            [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
            [],
        ),
        (
            ".m.rule.invite_for_me",
            [
                {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
                {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
                {"kind": "event_match", "key": "state_key", "pattern": ME},
            ],
            ["notify", SOUND],
        ),
        (
            ".m.rule.is_user_mention",
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ME}],
            ["notify", SOUND, HIGHLIGHT],
        ),
        (
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", HIGHLIGHT],
        ),
        (
            ".m.rule.suppress_edits",
            [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
            [],
        ),
        (
            ".m.rule.call",
            [{"kind": "event_match", "key": "type", "pattern": "m.call.invite"}],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        (
            ".m.rule.encrypted_room_one_to_one",
            [
                {"kind": "room_member_count", "is": "2"},
                {"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"},
            ],
            ["notify", SOUND],
        ),
        (
            ".m.rule.encrypted",
            [{"kind": "event_match", "key": "type", "pattern": "m.room.encrypted"}],
            ["notify"],
        ),
    ],
)
def test_default_rule_definitions(rule_id: str, conditions: list, actions: list) -> None:
    kind = "override" if rule_id in OVERRIDE_IDS else "underride"
    rule = find_rule(default_ruleset(ME), kind, rule_id)
    assert (rule["conditions"], rule["actions"]) == (conditions, actions)


def test_default_ruleset_is_fresh_each_time() -> None:
    first = default_ruleset(ME)
    first["global"]["override"][0]["enabled"] = True
    first["global"]["underride"][0]["actions"].append("x")
    again = default_ruleset(ME)
    assert again["global"]["override"][0]["enabled"] is False
    assert again["global"]["underride"][0]["actions"] == ["notify", {"set_tweak": "sound", "value": "ring"}]


# -- dotted paths and globs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("content.body", ["content", "body"]),
        ("type", ["type"]),
        ("content.m\\.relates_to.rel_type", ["content", "m.relates_to", "rel_type"]),
        ("content.m\\\\foo", ["content", "m\\foo"]),  # \\ is one literal backslash
        ("content.m\\xfoo", ["content", "m\\xfoo"]),  # other escapes stay as written
        ("content.trailing\\", ["content", "trailing\\"]),
        ("a..b", ["a", "", "b"]),
        ("", [""]),
    ],
)
def test_split_key(key: str, parts: list[str]) -> None:
    assert split_key(key) == parts


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("lunc?*", "Lunch plans", True),  # the spec's example
        ("lunc?*", "LUNCH", True),  # case-insensitive; * matches zero characters
        ("lunc?*", " lunch", False),  # whole value: leading space
        ("lunc?*", "lunc", False),  # ? must match a character
        ("m.room.message", "m.room.message", True),
        ("m.room.message", "m_room_message", False),  # . is literal, not a regex wildcard
        ("m.room.*", "m.room.member", True),
        ("m.room", "m.room.member", False),  # whole value only
        ("*", "", True),
        ("?", "", False),
        ("a**b", "aXYb", True),
        ("a*b", "a\nb", True),  # * crosses newlines
        ("[ab]", "a", False),  # only * and ? are special
        ("[ab]", "[AB]", True),
        ("(x)+", "(x)+", True),
        ("", "", True),
        ("", "x", False),
    ],
)
def test_glob_whole_value(pattern: str, value: str, matches: bool) -> None:
    assert glob_matches(pattern, value) is matches


@pytest.mark.parametrize(
    ("pattern", "body", "matches"),
    [
        ("ex*ple", "An example event.", True),  # the spec's examples
        ("ex*ple", "exple", True),
        ("ex*ple", "An exciting triple-whammy", True),  # spans words; - separates words
        ("cake", "I like cake!", True),
        ("cake", "CAKE", True),
        ("cake", "cheesecake", False),  # not at a word boundary
        ("cake", "cakes", False),
        ("cake", "cake_lover", False),  # _ is a word character
        ("cake", "cake9", False),
        ("cake", "(cake)", True),
        ("cake", "cake-lover", True),
        ("cake", "caféscake", False),  # é is a boundary per the ASCII definition, but s is not
        ("caf", "café", True),  # é is not in [A-Za-z0-9_], so it ends a word
        ("*cake", "cheesecake", True),
        ("c?ke", "coke and cake", True),
        ("cake*lie", "the cake is a lie", True),
        ("cake*lie", "the cake is a lier", False),
        ("alice", "hi @alice:hs", True),
        ("", "anything", False),  # an empty pattern has no word boundaries around letters
        ("", "", True),
    ],
)
def test_glob_word_boundaries(pattern: str, body: str, matches: bool) -> None:
    assert glob_matches(pattern, body, word_boundary=True) is matches


# -- conditions ----------------------------------------------------------------------------------------

EVENT_WITH_PROPERTIES = {
    "type": "m.room.create",
    "room_id": ROOM,
    "sender": BOB,
    "state_key": "",
    "content": {
        "m.federate": True,
        "count": 3,
        "nothing": None,
        "topic": "Lunch plans",
        "body": "Hello Alice, time for cake",
        "nested": {"deep": {"value": "x"}},
        "alt_aliases": ["#somewhere:example.org", "#myroom:example.com", 1, True, None, {"a": 1}, ["b"]],
        "m\\foo": "backslash",
        "float": 1.5,
        "list": ["x"],
    },
}


@pytest.mark.parametrize(
    ("condition", "matches"),
    [
        # event_match
        ({"kind": "event_match", "key": "content.topic", "pattern": "lunc?*"}, True),
        ({"kind": "event_match", "key": "type", "pattern": "m.room.create"}, True),
        ({"kind": "event_match", "key": "type", "pattern": "M.ROOM.*"}, True),
        ({"kind": "event_match", "key": "state_key", "pattern": ""}, True),
        ({"kind": "event_match", "key": "content.nested.deep.value", "pattern": "x"}, True),
        ({"kind": "event_match", "key": "content.m\\\\foo", "pattern": "backslash"}, True),
        ({"kind": "event_match", "key": "content.body", "pattern": "alice"}, True),  # word match
        ({"kind": "event_match", "key": "content.body", "pattern": "ali"}, False),
        ({"kind": "event_match", "key": "content.topic", "pattern": "lunch"}, False),  # whole value
        ({"kind": "event_match", "key": "content.missing", "pattern": "*"}, False),  # absent
        ({"kind": "event_match", "key": "content.nothing", "pattern": "*"}, False),  # null
        ({"kind": "event_match", "key": "content.count", "pattern": "*"}, False),  # not a string
        ({"kind": "event_match", "key": "content.nested", "pattern": "*"}, False),
        ({"kind": "event_match", "key": "content.topic.x", "pattern": "*"}, False),  # through a string
        ({"kind": "event_match", "key": "content.topic"}, False),  # malformed: no pattern
        ({"kind": "event_match", "pattern": "*"}, False),  # malformed: no key
        ({"kind": "event_match", "key": "type", "pattern": 1}, False),
        # event_property_is
        ({"kind": "event_property_is", "key": "content.m\\.federate", "value": True}, True),
        ({"kind": "event_property_is", "key": "content.m\\.federate", "value": "true"}, False),
        ({"kind": "event_property_is", "key": "content.m\\.federate", "value": 1}, False),
        ({"kind": "event_property_is", "key": "content.m.federate", "value": True}, False),  # unescaped
        ({"kind": "event_property_is", "key": "content.count", "value": 3}, True),
        ({"kind": "event_property_is", "key": "content.count", "value": True}, False),
        ({"kind": "event_property_is", "key": "content.count", "value": 3.0}, False),
        ({"kind": "event_property_is", "key": "content.float", "value": 1.5}, False),  # not canonical
        ({"kind": "event_property_is", "key": "content.nothing", "value": None}, True),
        ({"kind": "event_property_is", "key": "content.missing", "value": None}, False),  # absent
        ({"kind": "event_property_is", "key": "content.topic", "value": "Lunch plans"}, True),
        ({"kind": "event_property_is", "key": "content.topic", "value": "lunch plans"}, False),  # exact
        ({"kind": "event_property_is", "key": "content.list", "value": ["x"]}, False),  # compound
        ({"kind": "event_property_is", "key": "content.nothing"}, False),  # malformed: no value
        ({"kind": "event_property_is", "value": None}, False),
        # event_property_contains
        (
            {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#myroom:example.com"},
            True,
        ),
        ({"kind": "event_property_contains", "key": "content.alt_aliases", "value": ":example.com"}, False),
        ({"kind": "event_property_contains", "key": "content.alt_aliases", "value": 1}, True),
        ({"kind": "event_property_contains", "key": "content.alt_aliases", "value": True}, True),
        ({"kind": "event_property_contains", "key": "content.alt_aliases", "value": None}, True),
        ({"kind": "event_property_contains", "key": "content.alt_aliases", "value": 2}, False),
        ({"kind": "event_property_contains", "key": "content.alt_aliases", "value": "b"}, False),
        ({"kind": "event_property_contains", "key": "content.topic", "value": "Lunch plans"}, False),
        ({"kind": "event_property_contains", "key": "content.missing", "value": "x"}, False),
        ({"kind": "event_property_contains", "key": "content.list"}, False),
        # contains_display_name (Alice, see ctx())
        ({"kind": "contains_display_name"}, True),
        # room_member_count (5 members, see ctx())
        ({"kind": "room_member_count", "is": "5"}, True),
        ({"kind": "room_member_count", "is": "==5"}, True),
        ({"kind": "room_member_count", "is": "2"}, False),
        ({"kind": "room_member_count", "is": "<5"}, False),
        ({"kind": "room_member_count", "is": "<6"}, True),
        ({"kind": "room_member_count", "is": ">4"}, True),
        ({"kind": "room_member_count", "is": ">5"}, False),
        ({"kind": "room_member_count", "is": "<=5"}, True),
        ({"kind": "room_member_count", "is": "<=4"}, False),
        ({"kind": "room_member_count", "is": ">=5"}, True),
        ({"kind": "room_member_count", "is": ">=6"}, False),
        ({"kind": "room_member_count", "is": "=5"}, False),  # malformed prefixes never match
        ({"kind": "room_member_count", "is": "five"}, False),
        ({"kind": "room_member_count", "is": " 5"}, False),
        ({"kind": "room_member_count", "is": ""}, False),
        ({"kind": "room_member_count", "is": 5}, False),
        ({"kind": "room_member_count"}, False),
        # sender_notification_permission (sender level 50 below; room needs 50 by default)
        ({"kind": "sender_notification_permission", "key": "room"}, True),
        ({"kind": "sender_notification_permission", "key": "other"}, True),  # missing keys: 50
        ({"kind": "sender_notification_permission"}, False),
        # unknown kinds never match
        ({"kind": "org.example.custom", "key": "type"}, False),
        ({"key": "type", "pattern": "*"}, False),
        ({}, False),
    ],
)
def test_condition(condition: dict, matches: bool) -> None:
    assert condition_matches(condition, EVENT_WITH_PROPERTIES, ctx(5, level=50)) is matches


@pytest.mark.parametrize(
    ("name", "body", "matches"),
    [
        ("Alice", "Hello Alice, time for cake", True),
        ("alice", "HELLO ALICE", True),
        ("Alice", "Alicea is here", False),
        ("Alice", "Malice", False),
        ("Ali*", "Alice", False),  # the name is literal, not a glob
        ("Ali*", "hi Ali*!", True),
        ("Dr. Who", "is Dr. Who in?", True),
        ("Dr. Who", "is Dr  Who in?", False),
        (None, "Alice", False),
        ("", "Alice", False),
        ("Alice", None, False),
    ],
)
def test_contains_display_name(name: str | None, body: str | None, matches: bool) -> None:
    ev = message() if body is None else message(body)
    if body is None:
        del ev["content"]["body"]
    assert condition_matches({"kind": "contains_display_name"}, ev, ctx(name=name)) is matches


@pytest.mark.parametrize(
    ("level", "notifications", "matches"),
    [
        (50, {}, True),  # notifications.room defaults to 50
        (49, {}, False),
        (0, {"room": 0}, True),
        (99, {"room": 100}, False),
        (100, {"room": 100}, True),
        (None, {}, False),  # unknown sender level
    ],
)
def test_sender_notification_permission(level: int | None, notifications: dict, matches: bool) -> None:
    condition = {"kind": "sender_notification_permission", "key": "room"}
    assert condition_matches(condition, message(), ctx(level=level, **notifications)) is matches


def test_push_context_defaults() -> None:
    context = PushContext(user_id=ME)
    assert (context.user_display_name, context.room_member_count, context.sender_power_level) == (
        None,
        0,
        None,
    )
    assert dict(context.notification_power_levels) == {}


# -- the default rules against realistic events -------------------------------------------------------

MENTION_ME = {"m.mentions": {"user_ids": [ME]}}
MENTION_ROOM = {"m.mentions": {"room": True}}


@pytest.mark.parametrize(
    ("ev", "context", "rule_id", "notify", "highlight", "sound"),
    [
        pytest.param(message(), ctx(2), ".m.rule.room_one_to_one", True, False, "default", id="1:1 message"),
        pytest.param(message(), ctx(5), ".m.rule.message", True, False, None, id="group message"),
        pytest.param(
            message(msgtype="m.notice"), ctx(2), ".m.rule.suppress_notices", False, False, None, id="notice"
        ),
        pytest.param(message(msgtype="m.emote"), ctx(7), ".m.rule.message", True, False, None, id="emote"),
        pytest.param(
            message("hi @room", **MENTION_ROOM),
            ctx(5, level=50),
            ".m.rule.is_room_mention",
            True,
            True,
            None,
            id="@room with power",
        ),
        pytest.param(
            message("hi @room", **MENTION_ROOM),
            ctx(5, level=100, room=100),
            ".m.rule.is_room_mention",
            True,
            True,
            None,
            id="@room with raised power",
        ),
        pytest.param(
            message("hi @room", **MENTION_ROOM),
            ctx(5, level=0),
            ".m.rule.message",
            True,
            False,
            None,
            id="@room without power",
        ),
        pytest.param(
            message("hi @room", **MENTION_ROOM),
            ctx(5, level=99, room=100),
            ".m.rule.message",
            True,
            False,
            None,
            id="@room below raised level",
        ),
        pytest.param(
            message("hi @room", **{"m.mentions": {"room": "true"}}),
            ctx(5, level=100),
            ".m.rule.message",
            True,
            False,
            None,
            id="@room with a string flag",
        ),
        pytest.param(
            message("hey", **MENTION_ME),
            ctx(5),
            ".m.rule.is_user_mention",
            True,
            True,
            "default",
            id="m.mentions user_ids",
        ),
        pytest.param(
            message("hey", **{"m.mentions": {"user_ids": [BOB]}}),
            ctx(5),
            ".m.rule.message",
            True,
            False,
            None,
            id="someone else mentioned",
        ),
        pytest.param(
            message("hey alice, Alice!"),
            ctx(5),
            ".m.rule.message",
            True,
            False,
            None,
            id="name in body: legacy mention rules are gone",
        ),
        pytest.param(
            message("hey", msgtype="m.notice", **MENTION_ME),
            ctx(5),
            ".m.rule.suppress_notices",
            False,
            False,
            None,
            id="notice mentioning me",
        ),
        pytest.param(
            state("m.room.member", ME, membership="invite"),
            ctx(2),
            ".m.rule.invite_for_me",
            True,
            False,
            "default",
            id="invite for me",
        ),
        pytest.param(
            state("m.room.member", "@carol:hs", membership="invite"),
            ctx(5),
            ".m.rule.member_event",
            False,
            False,
            None,
            id="invite for someone else",
        ),
        pytest.param(
            state("m.room.member", BOB, membership="join"),
            ctx(5),
            ".m.rule.member_event",
            False,
            False,
            None,
            id="join",
        ),
        pytest.param(
            event("m.room.encrypted", algorithm="m.megolm.v1.aes-sha2"),
            ctx(2),
            ".m.rule.encrypted_room_one_to_one",
            True,
            False,
            "default",
            id="encrypted 1:1",
        ),
        pytest.param(
            event("m.room.encrypted", algorithm="m.megolm.v1.aes-sha2"),
            ctx(3),
            ".m.rule.encrypted",
            True,
            False,
            None,
            id="encrypted group",
        ),
        pytest.param(
            event("m.call.invite", call_id="c"), ctx(2), ".m.rule.call", True, False, "ring", id="call"
        ),
        pytest.param(
            state("m.room.tombstone", replacement_room="!new:hs"),
            ctx(5),
            ".m.rule.tombstone",
            True,
            True,
            None,
            id="tombstone",
        ),
        pytest.param(
            event("m.room.tombstone", replacement_room="!new:hs"),
            ctx(5),
            None,
            False,
            False,
            None,
            id="tombstone that is not state",
        ),
        pytest.param(
            event("m.reaction", **{"m.relates_to": {"rel_type": "m.annotation", "key": "👍"}}),
            ctx(2),
            ".m.rule.reaction",
            False,
            False,
            None,
            id="reaction",
        ),
        pytest.param(
            state("m.room.server_acl", allow=["*"]),
            ctx(5),
            ".m.rule.room.server_acl",
            False,
            False,
            None,
            id="server acl",
        ),
        pytest.param(
            message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}}),
            ctx(2),
            ".m.rule.suppress_edits",
            False,
            False,
            None,
            id="edit",
        ),
        pytest.param(
            message("reply", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}}),
            ctx(2),
            ".m.rule.room_one_to_one",
            True,
            False,
            "default",
            id="reply",
        ),
        pytest.param(state("m.room.topic", topic="x"), ctx(5), None, False, False, None, id="topic change"),
        pytest.param(event("m.sticker", body="s"), ctx(2), None, False, False, None, id="sticker"),
    ],
)
def test_default_rules_on_events(
    ev: dict, context: PushContext, rule_id: str | None, notify: bool, highlight: bool, sound: str | None
) -> None:
    ruleset = default_ruleset(ME)
    found = evaluate_rule(ruleset, ev, context)
    assert (found[1]["rule_id"] if found else None) == rule_id
    actions = evaluate(ruleset, ev, context)
    assert notify_and_highlight(actions) == (notify, highlight)
    assert tweaks(actions).get("sound") == sound


def test_master_rule_silences_everything_when_enabled() -> None:
    ruleset = merge_ruleset(ME, {"override/.m.rule.master": {"enabled": True}}, [])
    for ev in (message(**MENTION_ME), state("m.room.member", ME, membership="invite"), message()):
        assert evaluate(ruleset, ev, ctx(2)) == []
        assert evaluate_rule(ruleset, ev, ctx(2))[1]["rule_id"] == ".m.rule.master"


@pytest.mark.parametrize(
    ("sender", "counted"),
    [(BOB, True), (ME, False), ("@ALICE:hs", True), (None, True)],
)
def test_should_count_skips_own_events(sender: str | None, counted: bool) -> None:
    ev = message(sender=sender) if sender else {"type": "m.room.message", "content": {}}
    assert should_count(ev, ME) is counted


# -- actions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "expected", "the_tweaks"),
    [
        ([], (False, False), {}),
        (["notify"], (True, False), {}),
        (["notify", {"set_tweak": "highlight"}], (True, True), {"highlight": True}),
        (["notify", {"set_tweak": "highlight", "value": True}], (True, True), {"highlight": True}),
        (["notify", {"set_tweak": "highlight", "value": False}], (True, False), {"highlight": False}),
        (["notify", {"set_tweak": "highlight", "value": "yes"}], (True, False), {"highlight": "yes"}),
        (
            ["notify", {"set_tweak": "highlight"}, {"set_tweak": "highlight", "value": False}],
            (True, False),
            {"highlight": False},
        ),  # the last one wins
        (
            [{"set_tweak": "highlight"}],
            (False, False),
            {"highlight": True},
        ),  # no notify, nothing to highlight
        (["dont_notify"], (False, False), {}),
        (["notify", {"set_tweak": "sound", "value": "ring"}], (True, False), {"sound": "ring"}),
        (["notify", {"set_tweak": "org.example.led"}], (True, False), {"org.example.led": None}),
        (["notify", {"value": 1}, {"set_tweak": 5}], (True, False), {}),
    ],
)
def test_notify_highlight_and_tweaks(actions: list, expected: tuple[bool, bool], the_tweaks: dict) -> None:
    assert notify_and_highlight(actions) == expected
    assert tweaks(actions) == the_tweaks


@pytest.mark.parametrize(
    ("actions", "cleaned"),
    [
        ([], []),
        (["notify"], ["notify"]),
        (["dont_notify"], []),  # historical actions are ignored, not rejected
        (["notify", "coalesce", SOUND], ["notify", SOUND]),
        ([{"set_tweak": "highlight", "value": False}], [{"set_tweak": "highlight", "value": False}]),
        (
            [{"set_tweak": "org.example", "value": {"a": 1}, "extra": 2}],
            [{"set_tweak": "org.example", "value": {"a": 1}, "extra": 2}],
        ),
    ],
)
def test_validate_actions_ok(actions: list, cleaned: list) -> None:
    assert validate_actions(actions) == cleaned


@pytest.mark.parametrize(
    "actions",
    [
        "notify",
        None,
        {"set_tweak": "sound"},
        ["bing"],
        [1],
        [None],
        [{"value": "x"}],
        [{"set_tweak": 1}],
        [["notify"]],
    ],
)
def test_validate_actions_rejects(actions: object) -> None:
    with pytest.raises(InvalidParam):
        validate_actions(actions)


# -- evaluation of user rules ------------------------------------------------------------------------


def user_rule(kind: str, rule_id: str, actions: list | None = None, **extra: Any) -> dict:
    return {"kind": kind, "rule_id": rule_id, "actions": ["notify"] if actions is None else actions, **extra}


@pytest.mark.parametrize(
    ("custom", "ev", "rule_id"),
    [
        pytest.param([user_rule("room", ROOM, [])], message(), ROOM, id="muted room"),
        pytest.param([user_rule("room", "!other:hs", [])], message(), ".m.rule.message", id="other room"),
        pytest.param([user_rule("sender", BOB, [])], message(), BOB, id="muted sender"),
        pytest.param([user_rule("sender", "@carol:hs", [])], message(), ".m.rule.message", id="other sender"),
        pytest.param(
            [user_rule("content", "cake", pattern="cake")],
            message("I want cake"),
            "cake",
            id="content pattern",
        ),
        pytest.param(
            [user_rule("content", "cake", pattern="cake")],
            message("cheesecake"),
            ".m.rule.message",
            id="content pattern not at a word boundary",
        ),
        pytest.param(
            [user_rule("content", "cake", pattern="cake")],
            event("m.room.message", msgtype="m.text"),
            ".m.rule.message",
            id="content rule without a body",
        ),
        pytest.param(
            [user_rule("content", "broken")],
            message("x"),
            ".m.rule.message",
            id="content rule without pattern",
        ),
        pytest.param(
            [
                user_rule(
                    "override",
                    "beer",
                    conditions=[
                        {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                        {"kind": "room_member_count", "is": "<=10"},
                    ],
                )
            ],
            message("Beer time"),
            "beer",
            id="override",
        ),
        pytest.param(
            [user_rule("override", "all", conditions=[])],
            message("x", msgtype="m.notice"),
            "all",
            id="user override beats suppress_notices",
        ),
        pytest.param([user_rule("override", "none")], message("x"), "none", id="override with no conditions"),
        pytest.param(
            [user_rule("override", "odd", conditions=[{"kind": "org.example.unknown"}])],
            message("x"),
            ".m.rule.message",
            id="unknown condition disables the rule",
        ),
        pytest.param(
            [user_rule("override", "bad", conditions="nope")],
            message("x"),
            ".m.rule.message",
            id="conditions not a list",
        ),
        pytest.param(
            [user_rule("override", "bad2", conditions=["nope"])],
            message("x"),
            ".m.rule.message",
            id="condition not an object",
        ),
        pytest.param(
            [user_rule("underride", "late", conditions=[])],
            state("m.room.topic", topic="t"),
            "late",
            id="underride catches what defaults do not",
        ),
        pytest.param(
            [user_rule("underride", "late", conditions=[])],
            message(),
            "late",
            id="user underride before default underride",
        ),
        pytest.param(
            [user_rule("sender", BOB, [], enabled=False)],
            message(),
            ".m.rule.message",
            id="disabled user rule",
        ),
        pytest.param(
            [user_rule("content", "a", pattern="x"), user_rule("room", ROOM, [])],
            message("x"),
            "a",
            id="content before room",
        ),
        pytest.param(
            [user_rule("sender", BOB, []), user_rule("room", ROOM, ["notify"])],
            message("x"),
            ROOM,
            id="room before sender",
        ),
    ],
)
def test_user_rules(custom: list, ev: dict, rule_id: str) -> None:
    found = evaluate_rule(merge_ruleset(ME, {}, custom), ev, ctx(5))
    assert found is not None and found[1]["rule_id"] == rule_id


def test_evaluate_strips_historical_actions_and_copies() -> None:
    ruleset = merge_ruleset(ME, {}, [user_rule("room", ROOM, ["notify", "coalesce", "dont_notify", SOUND])])
    actions = evaluate(ruleset, message(), ctx(5))
    assert actions == ["notify", SOUND]
    actions[1]["value"] = "changed"
    assert ruleset["global"]["room"][0]["actions"][-1] == SOUND


def test_evaluate_accepts_the_inner_ruleset_and_missing_kinds() -> None:
    inner = default_ruleset(ME)["global"]
    assert evaluate(inner, message(), ctx(2)) == ["notify", SOUND]
    assert evaluate({"underride": inner["underride"]}, message(), ctx(5)) == ["notify"]
    assert evaluate({}, message(), ctx(5)) == []
    assert evaluate({"global": {}}, message(), ctx(5)) == []


def test_rule_matches_unknown_kind() -> None:
    assert rule_matches("device", {"rule_id": "x", "conditions": []}, message(), ctx()) is False


# -- merging ---------------------------------------------------------------------------------------------


def test_merge_without_user_data_is_the_default() -> None:
    assert merge_ruleset(ME, {}, []) == default_ruleset(ME)


def test_merge_orders_user_rules_before_defaults_but_after_master() -> None:
    custom = [
        user_rule("override", "o1", conditions=[]),
        user_rule("underride", "u1", conditions=[]),
        user_rule("override", "o2", conditions=[]),
        user_rule("content", "c1", pattern="tea"),
        user_rule("room", ROOM),
        user_rule("sender", BOB),
    ]
    rules = merge_ruleset(ME, {}, custom)["global"]
    assert ids(rules["override"]) == [".m.rule.master", "o1", "o2", *OVERRIDE_IDS[1:]]
    assert ids(rules["underride"]) == ["u1", *UNDERRIDE_IDS]
    assert ids(rules["content"]) == ["c1"]
    assert ids(rules["room"]) == [ROOM]
    assert ids(rules["sender"]) == [BOB]


def test_merge_formats_user_rules_per_kind() -> None:
    custom = [
        user_rule(
            "override",
            "o",
            conditions=[{"kind": "event_match", "key": "type", "pattern": "x"}],
            pattern="ignored",
        ),
        user_rule("content", "c", pattern="tea", conditions=[{"kind": "ignored"}], enabled=False),
        user_rule("room", ROOM, [], conditions=[{"kind": "ignored"}], pattern="ignored"),
        {"kind": "underride", "rule_id": "bare"},
    ]
    rules = merge_ruleset(ME, {}, custom)["global"]
    assert rules["override"][1] == {
        "rule_id": "o",
        "default": False,
        "enabled": True,
        "actions": ["notify"],
        "conditions": [{"kind": "event_match", "key": "type", "pattern": "x"}],
    }
    assert rules["content"][0] == {
        "rule_id": "c",
        "default": False,
        "enabled": False,
        "actions": ["notify"],
        "pattern": "tea",
    }
    assert rules["room"][0] == {"rule_id": ROOM, "default": False, "enabled": True, "actions": []}
    assert rules["underride"][0] == {
        "rule_id": "bare",
        "default": False,
        "enabled": True,
        "actions": [],
        "conditions": [],
    }


def test_merge_ignores_unknown_kinds_and_reserved_ids() -> None:
    custom = [
        user_rule("device", "d"),
        user_rule("override", ".m.rule.master"),
        {"kind": "override", "actions": []},
        user_rule("override", "ok", conditions=[]),
    ]
    assert ids(merge_ruleset(ME, {}, custom)["global"]["override"]) == [
        ".m.rule.master",
        "ok",
        *OVERRIDE_IDS[1:],
    ]


def test_merge_applies_overrides_of_defaults() -> None:
    overrides = {
        rule_key("override", ".m.rule.master"): {"enabled": True},
        rule_key("override", ".m.rule.suppress_notices"): {"actions": ["notify"]},
        rule_key("underride", ".m.rule.message"): {"enabled": False, "actions": ["notify", SOUND]},
        rule_key("underride", ".m.rule.nonexistent"): {"enabled": False},
        rule_key("room", ROOM): {"enabled": False},  # only server-default rules are overridden
    }
    custom = [user_rule("room", ROOM)]
    rules = merge_ruleset(ME, overrides, custom)["global"]
    assert find_rule(rules, "override", ".m.rule.master")["enabled"] is True
    assert find_rule(rules, "override", ".m.rule.suppress_notices")["actions"] == ["notify"]
    message_rule = find_rule(rules, "underride", ".m.rule.message")
    assert (message_rule["enabled"], message_rule["actions"]) == (False, ["notify", SOUND])
    assert find_rule(rules, "room", ROOM)["enabled"] is True
    assert len(rules["underride"]) == len(UNDERRIDE_IDS)
    # the override's actions are copied, not shared
    overrides[rule_key("override", ".m.rule.suppress_notices")]["actions"].append("x")
    assert find_rule(rules, "override", ".m.rule.suppress_notices")["actions"] == ["notify"]


def test_disabled_default_falls_through_to_the_next_rule() -> None:
    ruleset = merge_ruleset(ME, {"underride/.m.rule.room_one_to_one": {"enabled": False}}, [])
    assert evaluate(ruleset, message(), ctx(2)) == ["notify"]
    ruleset = merge_ruleset(ME, {"override/.m.rule.suppress_notices": {"enabled": False}}, [])
    assert evaluate(ruleset, message(msgtype="m.notice"), ctx(5)) == ["notify"]


@pytest.mark.parametrize(
    ("kind", "rule_id"),
    [
        ("override", ".m.rule.unknown"),
        ("content", ".m.rule.master"),
        ("device", ".m.rule.master"),
        ("room", ROOM),
    ],
)
def test_find_rule_not_found(kind: str, rule_id: str) -> None:
    with pytest.raises(NotFound):
        find_rule(default_ruleset(ME), kind, rule_id)


# -- insert_rule (PUT ordering) ----------------------------------------------------------------------


def r(rule_id: str, **extra: Any) -> dict:
    return {"rule_id": rule_id, "actions": ["notify"], **extra}


@pytest.mark.parametrize(
    ("existing", "rule_id", "before", "after", "order"),
    [
        ([], "n", None, None, ["n"]),
        (["a", "b"], "n", None, None, ["n", "a", "b"]),  # new rules go first
        (["a", "b"], "n", "a", None, ["n", "a", "b"]),
        (["a", "b"], "n", "b", None, ["a", "n", "b"]),
        (["a", "b"], "n", None, "a", ["a", "n", "b"]),
        (["a", "b"], "n", None, "b", ["a", "b", "n"]),
        (["a", "b", "c"], "n", "b", "c", ["a", "n", "b", "c"]),  # before wins
        (["a", "b", "c"], "n", "b", "missing", ["a", "n", "b", "c"]),  # after is ignored
        (["a", "b", "c"], "b", None, None, ["a", "b", "c"]),  # an update keeps its place
        (["a", "b", "c"], "c", "a", None, ["c", "a", "b"]),  # ... unless moved
        (["a", "b", "c"], "a", None, "c", ["b", "c", "a"]),
        (["a", "b", "c"], "b", None, "a", ["a", "b", "c"]),
    ],
)
def test_insert_rule_order(
    existing: list[str], rule_id: str, before: str | None, after: str | None, order: list[str]
) -> None:
    rules = [r(x) for x in existing]
    result = insert_rule(rules, r(rule_id, actions=[]), before=before, after=after)
    assert ids(result) == order
    assert ids(rules) == existing  # the input is left alone
    placed = next(x for x in result if x["rule_id"] == rule_id)
    assert placed["actions"] == [] and placed["enabled"] is True


@pytest.mark.parametrize(("before", "after"), [(None, None), ("a", None), (None, "a")])
def test_insert_rule_update_keeps_enabled_flag(before: str | None, after: str | None) -> None:
    existing = [r("a"), r("b", enabled=False)]
    result = insert_rule(existing, r("b", actions=[], enabled=True), before=before, after=after)
    assert next(x for x in result if x["rule_id"] == "b")["enabled"] is False


def test_insert_rule_new_rule_is_enabled() -> None:
    assert insert_rule([], r("n", enabled=False))[0]["enabled"] is True


@pytest.mark.parametrize(
    ("existing", "rule_id", "before", "after"),
    [
        ([], "n", "missing", None),
        (["a"], "n", None, "missing"),
        (["a"], "a", "a", None),  # relative to itself: gone once moved
        (["a"], "n", ".m.rule.master", None),  # never relative to a server-default rule
        (["a"], "n", None, ".m.rule.message"),
    ],
)
def test_insert_rule_bad_anchor(
    existing: list[str], rule_id: str, before: str | None, after: str | None
) -> None:
    with pytest.raises(Unknown) as raised:
        insert_rule([r(x) for x in existing], r(rule_id), before=before, after=after)
    assert (raised.value.status, raised.value.errcode) == (400, "M_UNKNOWN")


# -- validate_rule (PUT body) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "rule_id", "body", "expected"),
    [
        (
            "content",
            "nocake",
            {"pattern": "cake*lie", "actions": ["notify"]},
            {
                "rule_id": "nocake",
                "default": False,
                "enabled": True,
                "actions": ["notify"],
                "pattern": "cake*lie",
            },
        ),
        (
            "override",
            "beer",
            {
                "conditions": [
                    {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                    {"kind": "room_member_count", "is": "<=10"},
                ],
                "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
                "pattern": "ignored",
            },
            {
                "rule_id": "beer",
                "default": False,
                "enabled": True,
                "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
                "conditions": [
                    {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                    {"kind": "room_member_count", "is": "<=10"},
                ],
            },
        ),
        (
            "underride",
            "all",
            {"actions": ["dont_notify"], "enabled": False},  # enabled in the body is not the PUT's business
            {"rule_id": "all", "default": False, "enabled": True, "actions": [], "conditions": []},
        ),
        (
            "override",
            "every-kind",
            {
                "actions": [],
                "conditions": [
                    {"kind": "event_property_is", "key": "content.x", "value": None},
                    {"kind": "event_property_contains", "key": "content.y", "value": 3},
                    {"kind": "contains_display_name"},
                    {"kind": "sender_notification_permission", "key": "room"},
                    {"kind": "room_member_count", "is": "2"},
                    {"kind": "org.example.future", "anything": [1]},  # stored; never matches
                ],
            },
            {
                "rule_id": "every-kind",
                "default": False,
                "enabled": True,
                "actions": [],
                "conditions": [
                    {"kind": "event_property_is", "key": "content.x", "value": None},
                    {"kind": "event_property_contains", "key": "content.y", "value": 3},
                    {"kind": "contains_display_name"},
                    {"kind": "sender_notification_permission", "key": "room"},
                    {"kind": "room_member_count", "is": "2"},
                    {"kind": "org.example.future", "anything": [1]},
                ],
            },
        ),
        (
            "room",
            "!dj234r78wl45Gh4D:matrix.org",
            {"actions": [], "conditions": [{"kind": "x"}], "pattern": "ignored"},
            {"rule_id": "!dj234r78wl45Gh4D:matrix.org", "default": False, "enabled": True, "actions": []},
        ),
        (
            "sender",
            "@spambot:matrix.org",
            {"actions": []},
            {"rule_id": "@spambot:matrix.org", "default": False, "enabled": True, "actions": []},
        ),
    ],
)
def test_validate_rule_ok(kind: str, rule_id: str, body: dict, expected: dict) -> None:
    assert validate_rule(kind, rule_id, body) == expected


@pytest.mark.parametrize(
    ("kind", "rule_id", "body", "error"),
    [
        ("device", "x", {"actions": []}, InvalidParam),
        ("global", "x", {"actions": []}, InvalidParam),
        ("override", ".m.rule.master", {"actions": []}, InvalidParam),  # reserved for server defaults
        ("content", ".mine", {"actions": [], "pattern": "x"}, InvalidParam),
        ("override", "a/b", {"actions": []}, InvalidParam),
        ("override", "a\\b", {"actions": []}, InvalidParam),
        ("override", "", {"actions": []}, InvalidParam),
        ("override", "x", ["notify"], BadJson),
        ("override", "x", None, BadJson),
        ("override", "x", {}, MissingParam),
        ("room", "!r:hs", {"enabled": True}, MissingParam),
        ("override", "x", {"actions": "notify"}, InvalidParam),
        ("override", "x", {"actions": ["bing"]}, InvalidParam),
        ("content", "x", {"actions": []}, MissingParam),
        ("content", "x", {"actions": [], "pattern": 5}, InvalidParam),
        ("content", "x", {"actions": [], "pattern": None}, InvalidParam),
        ("override", "x", {"actions": [], "conditions": {}}, InvalidParam),
        ("override", "x", {"actions": [], "conditions": ["event_match"]}, InvalidParam),
        ("override", "x", {"actions": [], "conditions": [{"key": "type"}]}, InvalidParam),
        ("override", "x", {"actions": [], "conditions": [{"kind": 1}]}, InvalidParam),
        (
            "override",
            "x",
            {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]},
            InvalidParam,
        ),
        (
            "override",
            "x",
            {"actions": [], "conditions": [{"kind": "event_match", "pattern": "x"}]},
            InvalidParam,
        ),
        (
            "underride",
            "x",
            {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k"}]},
            InvalidParam,
        ),
        (
            "underride",
            "x",
            {"actions": [], "conditions": [{"kind": "event_property_is", "value": 1}]},
            InvalidParam,
        ),
        (
            "underride",
            "x",
            {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k", "value": 1.5}]},
            InvalidParam,
        ),
        (
            "underride",
            "x",
            {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k", "value": 2**53}]},
            InvalidParam,
        ),
        (
            "underride",
            "x",
            {"actions": [], "conditions": [{"kind": "event_property_contains", "key": "k", "value": [1]}]},
            InvalidParam,
        ),
        (
            "underride",
            "x",
            {
                "actions": [],
                "conditions": [{"kind": "event_property_contains", "key": "k", "value": {"a": 1}}],
            },
            InvalidParam,
        ),
        ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count"}]}, InvalidParam),
        (
            "override",
            "x",
            {"actions": [], "conditions": [{"kind": "room_member_count", "is": 2}]},
            InvalidParam,
        ),
        (
            "override",
            "x",
            {"actions": [], "conditions": [{"kind": "room_member_count", "is": "=2"}]},
            InvalidParam,
        ),
        (
            "override",
            "x",
            {"actions": [], "conditions": [{"kind": "room_member_count", "is": "two"}]},
            InvalidParam,
        ),
        (
            "override",
            "x",
            {"actions": [], "conditions": [{"kind": "sender_notification_permission"}]},
            InvalidParam,
        ),
    ],
)
def test_validate_rule_rejects(kind: str, rule_id: str, body: object, error: type[MatrixError]) -> None:
    with pytest.raises(error) as raised:
        validate_rule(kind, rule_id, body)
    assert type(raised.value) is error
    assert raised.value.status == 400


def test_validate_rule_copies_conditions() -> None:
    body = {"actions": [SOUND], "conditions": [{"kind": "event_match", "key": "type", "pattern": "x"}]}
    rule = validate_rule("override", "x", body)
    body["conditions"][0]["pattern"] = "changed"
    body["actions"][0]["value"] = "changed"
    assert rule["conditions"][0]["pattern"] == "x"
    assert rule["actions"][0]["value"] == "default"


def test_put_flow_validate_insert_merge_evaluate() -> None:
    """What the view will do: validate, insert among the user's rules, merge, evaluate."""
    stored: list[dict] = []
    stored = insert_rule(
        stored,
        validate_rule(
            "content",
            "cake",
            {"pattern": "cake", "actions": ["notify", {"set_tweak": "sound", "value": "cakealarm.wav"}]},
        ),
    )
    stored = insert_rule(
        stored, validate_rule("content", "nocake", {"pattern": "cake*lie", "actions": []}), before="cake"
    )
    assert ids(stored) == ["nocake", "cake"]
    ruleset = merge_ruleset(ME, {}, [{"kind": "content", **rule} for rule in stored])
    assert evaluate(ruleset, message("the cake is a lie"), ctx(5)) == []
    assert evaluate(ruleset, message("cake!"), ctx(5)) == [
        "notify",
        {"set_tweak": "sound", "value": "cakealarm.wav"},
    ]
    assert evaluate(ruleset, message("pie"), ctx(5)) == ["notify"]
