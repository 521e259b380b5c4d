"""Event filters (sync/filters.py): parsing the spec's Filter JSON and matching events. Pure."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest

from matrixsrv.errors import BadJson, InvalidParam, NotJson
from sync.filters import (
    DEFAULT_FILTER,
    EventFilter,
    Filter,
    RoomEventFilter,
    RoomFilter,
    apply_event_fields,
    decode_json,
    glob_to_regex,
    parse_event_filter,
    parse_filter,
    parse_filter_json,
    parse_room_event_filter,
    parse_room_event_filter_json,
    parse_room_filter,
    split_field_path,
    split_type_patterns,
)

# -- type patterns --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "event_type", "matches"),
    [
        pytest.param(["m.room.message"], "m.room.message", True, id="exact"),
        pytest.param(["m.room.message"], "m.room.messages", False, id="exact-no-prefix"),
        pytest.param(["m.room.message"], "M.ROOM.MESSAGE", False, id="case-sensitive"),
        pytest.param(["m.room.*"], "m.room.member", True, id="trailing-star"),
        pytest.param(["m.room.*"], "m.room.", True, id="star-matches-empty"),
        pytest.param(["m.room.*"], "m.roomy", False, id="dot-is-literal"),
        pytest.param(["m.room.*"], "m_room_x", False, id="dot-not-any-char"),
        pytest.param(["*"], "anything.at.all", True, id="bare-star"),
        pytest.param(["**"], "x", True, id="double-star"),
        pytest.param(["*.member"], "m.room.member", True, id="leading-star"),
        pytest.param(["*.member"], "m.room.members", False, id="leading-star-anchored-end"),
        pytest.param(["m.*.member"], "m.room.member", True, id="middle-star"),
        pytest.param(["m.*.member"], "m.member", False, id="middle-star-needs-both-dots"),
        pytest.param(["m.room.mess?ge"], "m.room.message", False, id="question-mark-literal"),
        pytest.param(["m.room.mess?ge"], "m.room.mess?ge", True, id="question-mark-exact"),
        pytest.param(["a[b]*"], "a[b]c", True, id="brackets-literal"),
        pytest.param(["a[b]*"], "abc", False, id="brackets-not-class"),
        pytest.param(["a+*"], "aaa", False, id="plus-literal"),
        pytest.param(["a\\*"], "a\\x", True, id="backslash-literal"),
        pytest.param(["m.*"], "m.x\ny", True, id="star-spans-newline"),
        pytest.param(["x", "m.room.*"], "m.room.topic", True, id="any-of-list"),
        pytest.param(["é.*"], "é.x", True, id="unicode"),
    ],
)
def test_type_patterns(patterns: list[str], event_type: str, matches: bool) -> None:
    assert EventFilter(types=tuple(patterns)).matches_type(event_type) is matches
    assert EventFilter(not_types=tuple(patterns)).matches_type(event_type) is not matches


@pytest.mark.parametrize(
    "pattern",
    [
        "m.room.*",
        "m.**.member",
        "*.member",
        "m.*.x",
        "a[b]*",
        "a+*(",
        "a\\*",
        "sp ace*",
        "q?*",
        "^$*",
        "é*",
        "under_*",
    ],
)
@pytest.mark.parametrize(
    "candidate", ["m.room.member", "a[b]c", "a+(", "a\\b", "sp ace", "q?", "^$", "é", "under_x"]
)
def test_glob_regex_reads_the_same_in_python_and_sqlite(pattern: str, candidate: str) -> None:
    """SQLite's REGEXP is Python's re.search; Django registers it. The anchors make search == match."""
    regex = glob_to_regex(pattern)
    expected = EventFilter(types=(pattern,)).matches_type(candidate)
    assert (re.search(regex, candidate) is not None) is expected
    db = sqlite3.connect(":memory:")
    db.create_function("REGEXP", 2, lambda p, s: re.search(p, s) is not None)
    assert bool(db.execute("SELECT ? REGEXP ?", (candidate, regex)).fetchone()[0]) is expected


def test_split_type_patterns_separates_exact_names_wildcards_and_match_all() -> None:
    split = split_type_patterns(["m.room.message", "m.room.*", "m.room.message", "*"])
    assert split.exact == frozenset({"m.room.message"})
    assert split.regexes == (glob_to_regex("m.room.*"),)
    assert split.matches_all is True
    assert split_type_patterns([]).matches_all is False


# -- matching -------------------------------------------------------------------------------------

MSG = {"type": "m.room.message", "sender": "@a:hs", "room_id": "!r:hs", "content": {"body": "hi"}}
IMG = {"type": "m.room.message", "sender": "@b:hs", "room_id": "!r:hs", "content": {"url": "mxc://hs/x"}}
BAD_URL = {"type": "m.room.message", "sender": "@b:hs", "room_id": "!r:hs", "content": {"url": 5}}
TOPIC = {"type": "m.room.topic", "sender": "@a:hs", "room_id": "!s:hs", "state_key": "", "content": {}}


@pytest.mark.parametrize(
    ("filter_json", "event", "matches"),
    [
        pytest.param({}, MSG, True, id="empty-filter-allows"),
        pytest.param({"types": []}, MSG, False, id="empty-types-allows-nothing"),
        pytest.param({"types": ["m.room.message"]}, MSG, True, id="types-include"),
        pytest.param({"types": ["m.room.message"]}, TOPIC, False, id="types-exclude-others"),
        pytest.param({"not_types": ["m.room.message"]}, MSG, False, id="not-types"),
        pytest.param({"types": ["m.*"], "not_types": ["m.room.message"]}, MSG, False, id="not-types-wins"),
        pytest.param({"not_types": ["*"]}, TOPIC, False, id="not-types-star"),
        pytest.param({"senders": ["@a:hs"]}, MSG, True, id="senders-include"),
        pytest.param({"senders": ["@a:hs"]}, IMG, False, id="senders-exclude-others"),
        pytest.param({"senders": []}, MSG, False, id="empty-senders-allows-nothing"),
        pytest.param({"not_senders": ["@a:hs"]}, MSG, False, id="not-senders"),
        pytest.param({"senders": ["@a:hs"], "not_senders": ["@a:hs"]}, MSG, False, id="not-senders-wins"),
        pytest.param({"rooms": ["!r:hs"]}, MSG, True, id="rooms-include"),
        pytest.param({"rooms": ["!r:hs"]}, TOPIC, False, id="rooms-exclude-others"),
        pytest.param({"not_rooms": ["!r:hs"]}, MSG, False, id="not-rooms"),
        pytest.param({"rooms": ["!r:hs"], "not_rooms": ["!r:hs"]}, MSG, False, id="not-rooms-wins"),
        pytest.param({"contains_url": True}, IMG, True, id="contains-url-true-keeps-url"),
        pytest.param({"contains_url": True}, MSG, False, id="contains-url-true-drops-plain"),
        pytest.param({"contains_url": True}, BAD_URL, False, id="contains-url-needs-string"),
        pytest.param({"contains_url": False}, IMG, False, id="contains-url-false-drops-url"),
        pytest.param({"contains_url": False}, MSG, True, id="contains-url-false-keeps-plain"),
        pytest.param({"contains_url": False}, BAD_URL, True, id="contains-url-false-non-string"),
        pytest.param(
            {"types": ["m.room.*"], "senders": ["@b:hs"], "contains_url": True}, IMG, True, id="all"
        ),
    ],
)
def test_room_event_filter_matching(
    filter_json: dict[str, Any], event: dict[str, Any], matches: bool
) -> None:
    room_filter = parse_room_event_filter(filter_json)
    assert room_filter.matches_event(event) is matches
    assert (
        room_filter.allows(
            event_type=event["type"],
            sender=event["sender"],
            room_id=event["room_id"],
            content=event["content"],
        )
        is matches
    )


@pytest.mark.parametrize(
    ("filter_json", "event", "matches"),
    [
        pytest.param({}, {"type": "m.presence", "sender": "@a:hs"}, True, id="empty"),
        pytest.param(
            {"senders": ["@a:hs"]},
            {"type": "m.presence", "content": {"user_id": "@a:hs"}},
            True,
            id="presence-sender-from-content",
        ),
        pytest.param(
            {"not_senders": ["@a:hs"]},
            {"type": "m.presence", "content": {"user_id": "@a:hs"}},
            False,
            id="presence-not-sender-from-content",
        ),
        pytest.param(
            {"senders": ["@a:hs"]}, {"type": "m.direct", "content": {}}, False, id="no-sender-vs-senders-list"
        ),
        pytest.param(
            {"not_senders": ["@a:hs"]},
            {"type": "m.direct", "content": {}},
            True,
            id="no-sender-passes-not-senders",
        ),
        pytest.param(
            {"types": ["m.*"]},
            {"type": "m.direct", "content": {"user_id": 5}},
            True,
            id="non-string-user-id-ignored",
        ),
        pytest.param({"types": ["m.push_rules"]}, {"type": "m.direct"}, False, id="types"),
    ],
)
def test_event_filter_matching(filter_json: dict[str, Any], event: dict[str, Any], matches: bool) -> None:
    assert parse_event_filter(filter_json).matches_event(event) is matches


def test_room_filter_matches_rooms_before_its_sections() -> None:
    room_filter = parse_room_filter({"rooms": ["!a:hs", "!b:hs"], "not_rooms": ["!b:hs"]})
    assert [room_filter.matches_room(r) for r in ("!a:hs", "!b:hs", "!c:hs")] == [True, False, False]
    assert RoomFilter().matches_room("!any:hs")


@pytest.mark.parametrize(
    ("event_filter", "unrestricted"),
    [
        (EventFilter(), True),
        (EventFilter(limit=3), True),
        (EventFilter(types=("*",)), True),
        (EventFilter(types=("m.*",)), False),
        (EventFilter(not_types=("x",)), False),
        (EventFilter(senders=("@a:hs",)), False),
        (EventFilter(not_senders=("@a:hs",)), False),
        (RoomEventFilter(lazy_load_members=True), True),
        (RoomEventFilter(rooms=("!r:hs",)), False),
        (RoomEventFilter(not_rooms=("!r:hs",)), False),
        (RoomEventFilter(contains_url=False), False),
        (RoomEventFilter(types=("x",)), False),
    ],
)
def test_is_unrestricted(event_filter: EventFilter, unrestricted: bool) -> None:
    assert event_filter.is_unrestricted is unrestricted


def test_limit_or_applies_default_and_cap() -> None:
    assert EventFilter().limit_or(10, cap=100) == 10
    assert EventFilter(limit=500).limit_or(10, cap=100) == 100
    assert EventFilter(limit=0).limit_or(10, cap=100) == 0


def test_filters_are_frozen_hashable_values() -> None:
    a, b = parse_room_event_filter({"types": ["m.*"]}), RoomEventFilter(types=("m.*",))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.limit = 3  # type: ignore[misc]


# -- parsing --------------------------------------------------------------------------------------

SPEC_EXAMPLE = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def test_the_spec_example_filter_parses() -> None:
    f = parse_filter(SPEC_EXAMPLE)
    assert f.event_format == "client"
    assert f.event_fields == ("type", "content", "sender")
    assert f.presence == EventFilter(types=("m.presence",), not_senders=("@alice:example.com",))
    assert f.account_data == EventFilter()
    assert f.room.timeline == RoomEventFilter(
        limit=10,
        types=("m.room.message",),
        not_rooms=("!726s6s6q:example.com",),
        not_senders=("@spam:example.com",),
    )
    assert f.room.state.types == ("m.room.*",)
    assert f.room.ephemeral.types == ("m.receipt", "m.typing")
    assert f.room.account_data == RoomEventFilter()
    assert f.room.include_leave is False and f.room.rooms is None and f.room.not_rooms == ()


def test_every_field_parses() -> None:
    f = parse_filter(
        {
            "event_format": "federation",
            "account_data": {"types": ["m.direct"], "limit": 2, "senders": ["@a:hs"]},
            "room": {
                "rooms": ["!a:hs"],
                "not_rooms": ["!b:hs"],
                "include_leave": True,
                "account_data": {"types": ["m.tag"]},
                "timeline": {
                    "lazy_load_members": True,
                    "include_redundant_members": True,
                    "unread_thread_notifications": True,
                    "contains_url": False,
                    "rooms": ["!a:hs"],
                    "limit": 5.0,
                },
            },
        }
    )
    assert f.event_format == "federation"
    assert f.account_data == EventFilter(limit=2, types=("m.direct",), senders=("@a:hs",))
    assert f.room.rooms == ("!a:hs",) and f.room.not_rooms == ("!b:hs",) and f.room.include_leave
    assert f.room.account_data.types == ("m.tag",)
    t = f.room.timeline
    assert (t.lazy_load_members, t.include_redundant_members, t.unread_thread_notifications) == (
        True,
        True,
        True,
    )
    assert (t.contains_url, t.rooms, t.limit) == (False, ("!a:hs",), 5)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {},
        {"unknown": 1, "room": {"unknown": {"x": 1}, "timeline": {"unknown": True}}},
        {"event_fields": None, "event_format": None, "presence": None, "room": None},
        {"room": {"timeline": None, "state": {"types": None, "limit": None, "contains_url": None}}},
        {"event_fields": []},
    ],
    ids=["none", "empty", "unknown-keys-ignored", "nulls-are-absent", "nested-nulls", "empty-event-fields"],
)
def test_absent_values_give_the_default_filter(raw: Any) -> None:
    assert parse_filter(raw) == DEFAULT_FILTER == Filter()


def test_duplicates_in_lists_are_dropped_in_order() -> None:
    assert parse_event_filter({"types": ["b", "a", "b"]}).types == ("b", "a")


@pytest.mark.parametrize(
    ("raw", "error", "where"),
    [
        pytest.param([], BadJson, "filter", id="not-an-object"),
        pytest.param("x", BadJson, "filter", id="a-string"),
        pytest.param({"room": []}, BadJson, "room", id="room-not-object"),
        pytest.param({"room": {"timeline": 5}}, BadJson, "room.timeline", id="timeline-not-object"),
        pytest.param({"presence": "x"}, BadJson, "presence", id="presence-not-object"),
        pytest.param(
            {"room": {"state": {"types": "m.room.*"}}}, BadJson, "room.state.types", id="types-string"
        ),
        pytest.param({"room": {"state": {"types": [1]}}}, BadJson, "room.state.types", id="types-int-item"),
        pytest.param(
            {"room": {"state": {"not_types": [None]}}}, BadJson, "not_types", id="not-types-null-item"
        ),
        pytest.param(
            {"room": {"timeline": {"limit": "10"}}}, BadJson, "room.timeline.limit", id="limit-string"
        ),
        pytest.param({"room": {"timeline": {"limit": True}}}, BadJson, "limit", id="limit-bool"),
        pytest.param({"room": {"timeline": {"limit": 1.5}}}, BadJson, "limit", id="limit-fraction"),
        pytest.param({"room": {"timeline": {"limit": -1}}}, InvalidParam, "limit", id="limit-negative"),
        pytest.param(
            {"room": {"timeline": {"lazy_load_members": "true"}}}, BadJson, "lazy_load", id="bool-str"
        ),
        pytest.param(
            {"room": {"timeline": {"contains_url": 1}}}, BadJson, "contains_url", id="contains-url-int"
        ),
        pytest.param({"room": {"include_leave": 0}}, BadJson, "room.include_leave", id="include-leave-int"),
        pytest.param({"room": {"rooms": "!a:hs"}}, BadJson, "room.rooms", id="rooms-string"),
        pytest.param(
            {"room": {"not_rooms": ["#alias:hs"]}}, InvalidParam, "room.not_rooms", id="room-not-id"
        ),
        pytest.param({"room": {"timeline": {"rooms": ["a"]}}}, InvalidParam, "timeline.rooms", id="tl-rooms"),
        pytest.param(
            {"presence": {"senders": ["alice"]}}, InvalidParam, "presence.senders", id="sender-not-id"
        ),
        pytest.param({"presence": {"not_senders": [3]}}, BadJson, "not_senders", id="sender-int"),
        pytest.param({"event_format": "xml"}, InvalidParam, "event_format", id="event-format-unknown"),
        pytest.param({"event_format": 1}, BadJson, "event_format", id="event-format-int"),
        pytest.param({"event_fields": "content"}, BadJson, "event_fields", id="event-fields-string"),
        pytest.param({"event_fields": [1]}, BadJson, "event_fields", id="event-fields-int"),
    ],
)
def test_invalid_filters_are_rejected_with_the_path(raw: Any, error: type[Exception], where: str) -> None:
    with pytest.raises(error) as caught:
        parse_filter(raw)
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", NotJson),
        ("{", NotJson),
        ('{"limit": NaN}', NotJson),
        ("[" * 100000, NotJson),
        ("[]", BadJson),
        ('"x"', BadJson),
        ("null", BadJson),
        ('{"limit": "x", "event_fields": "x"}', BadJson),
    ],
    ids=["text", "truncated", "nan", "too-deep", "list", "string", "null", "bad-field"],
)
def test_filter_query_parameters_must_be_json_objects(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_room_event_filter_json(text)
    with pytest.raises(error):
        parse_filter_json(text)


def test_filter_query_parameters_parse() -> None:
    assert parse_room_event_filter_json('{"types": ["m.*"], "lazy_load_members": true}') == RoomEventFilter(
        types=("m.*",), lazy_load_members=True
    )
    assert parse_filter_json('{"room": {"include_leave": true}}').room.include_leave is True
    assert decode_json("[1]") == [1]


def test_room_event_filter_accepts_the_event_filter_fields_too() -> None:
    f = parse_room_event_filter({"limit": 0, "senders": ["@a:hs"], "not_types": ["x*"]})
    assert (f.limit, f.senders, f.not_types) == (0, ("@a:hs",), ("x*",))
    assert parse_room_event_filter(None) == RoomEventFilter()
    assert parse_event_filter(None) == EventFilter()
    assert parse_room_filter(None) == RoomFilter()


# -- event_fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("content", ("content",)),
        ("content.body", ("content", "body")),
        ("content.m\\.relates_to", ("content", "m.relates_to")),
        ("content.m\\\\foo", ("content", "m\\foo")),
        ("content.m\\xfoo", ("content", "m\\xfoo")),
        ("content.trailing\\", ("content", "trailing\\")),
        ("a..b", ("a", "", "b")),
        ("", ("",)),
    ],
)
def test_split_field_path(path: str, names: tuple[str, ...]) -> None:
    assert split_field_path(path) == names


EVENT = {
    "type": "m.room.message",
    "sender": "@a:hs",
    "event_id": "$e",
    "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread", "event_id": "$t"}, "m\\foo": 1},
    "unsigned": {"age": 5},
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(None, EVENT, id="none-is-all"),
        pytest.param([], EVENT, id="empty-is-all"),
        pytest.param(["type", "sender"], {"type": "m.room.message", "sender": "@a:hs"}, id="top-level"),
        pytest.param(["content.body"], {"content": {"body": "hi"}}, id="nested"),
        pytest.param(
            ["content.m\\.relates_to.rel_type"],
            {"content": {"m.relates_to": {"rel_type": "m.thread"}}},
            id="escaped-dot",
        ),
        pytest.param(["content.m\\\\foo"], {"content": {"m\\foo": 1}}, id="escaped-backslash"),
        pytest.param(["content.body", "content"], {"content": EVENT["content"]}, id="whole-wins-after"),
        pytest.param(["content", "content.body"], {"content": EVENT["content"]}, id="whole-wins-before"),
        pytest.param(
            ["content.body", "unsigned.age", "type"],
            {"content": {"body": "hi"}, "unsigned": {"age": 5}, "type": "m.room.message"},
            id="several",
        ),
        pytest.param(["missing", "content.missing"], {}, id="missing-skipped"),
        pytest.param(["type.x"], {}, id="through-non-object"),
        pytest.param(["content.body.x"], {}, id="through-string"),
    ],
)
def test_apply_event_fields(fields: list[str] | None, expected: dict[str, Any]) -> None:
    before = repr(EVENT)
    assert apply_event_fields(EVENT, fields) == expected
    assert repr(EVENT) == before  # the input is untouched


def test_apply_event_fields_builds_new_objects_on_the_way() -> None:
    out = apply_event_fields(EVENT, ["content.body"])
    out["content"]["extra"] = 1
    assert "extra" not in EVENT["content"]
