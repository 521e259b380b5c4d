"""The filter API (POST/GET /user/{userId}/filter) and filters applied by /sync, through the real routes.
(The filter model itself: tests/pure/test_filters.py.) Also GET /pushrules/ and /capabilities."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sync.models import Filter as StoredFilter
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with, set_power_levels
from tests.sync_helpers import bodies, room_entry, state, state_keys, sync, timeline, timeline_bodies

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

pytestmark = pytest.mark.django_db


def upload_filter(matrix: MatrixClient, user: TestUser, definition: Any, expect: int = 200) -> Any:
    resp = matrix.post(f"user/{q(user.user_id)}/filter", definition, token=user, expect=expect)
    return resp.json()["filter_id"] if expect == 200 else resp


# -- the filter API ---------------------------------------------------------------------------------


def test_uploaded_filter_reads_back_as_sent(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    matrix = any_prefix_client
    definition = {
        "event_fields": ["type", "content.body"],
        "room": {"timeline": {"limit": 5, "types": ["m.room.*"]}, "state": {"lazy_load_members": True}},
        "presence": {"not_types": ["*"]},
    }
    filter_id = upload_filter(matrix, alice, definition)
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    got = matrix.get(f"user/{q(alice.user_id)}/filter/{q(filter_id)}", token=alice).json()
    assert got == definition
    assert upload_filter(matrix, alice, {}) != filter_id  # each upload is a filter of its own


def test_filters_of_another_user_are_forbidden(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    filter_id = upload_filter(matrix, alice, {"room": {"timeline": {"limit": 1}}})
    resp = matrix.post(f"user/{q(alice.user_id)}/filter", {}, token=bob, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    resp = matrix.get(f"user/{q(alice.user_id)}/filter/{filter_id}", token=bob, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    # Under bob's own user ID, alice's filter does not exist.
    resp = matrix.get(f"user/{q(bob.user_id)}/filter/{filter_id}", token=bob, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")
    # Nor can bob sync with it.
    assert_matrix_error(
        matrix.get("sync", token=bob, query={"filter": filter_id}, expect=None), 404, "M_NOT_FOUND"
    )


@pytest.mark.parametrize("filter_id", ["999999", "abc", "0", "01", "١", "1" * 40, "-1", "1.0"])
def test_unknown_filter_id_is_404(matrix: MatrixClient, alice: TestUser, filter_id: str) -> None:
    upload_filter(matrix, alice, {})
    resp = matrix.get(f"user/{q(alice.user_id)}/filter/{quote(filter_id, safe='')}", token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.get("sync", token=alice, query={"filter": filter_id}, expect=None), 404, "M_NOT_FOUND"
    )


@pytest.mark.parametrize(
    ("definition", "errcode"),
    [
        ([], "M_BAD_JSON"),
        ("filter", "M_BAD_JSON"),
        ({"room": []}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": "ten"}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"types": "m.room.message"}}}, "M_BAD_JSON"),
        ({"room": {"include_leave": "yes"}}, "M_BAD_JSON"),
        ({"event_fields": [1]}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": -1}}}, "M_INVALID_PARAM"),
        ({"room": {"rooms": ["no-bang"]}}, "M_INVALID_PARAM"),
        ({"room": {"timeline": {"senders": ["alice"]}}}, "M_INVALID_PARAM"),
        ({"event_format": "xml"}, "M_INVALID_PARAM"),
    ],
)
def test_invalid_filters_are_400_on_upload_and_inline(
    matrix: MatrixClient, alice: TestUser, definition: Any, errcode: str
) -> None:
    assert_matrix_error(upload_filter(matrix, alice, definition, expect=None), 400, errcode)
    if isinstance(definition, dict):
        resp = matrix.get("sync", token=alice, query={"filter": json.dumps(definition)}, expect=None)
        assert_matrix_error(resp, 400, errcode)


@pytest.mark.parametrize("raw", ["{", "{'room': {}}", '{"room": NaN}', "{" * 5000 + "}" * 5000, '{"a": 1,}'])
def test_inline_filter_that_is_not_json_is_400_not_json(
    matrix: MatrixClient, alice: TestUser, raw: str
) -> None:
    resp = matrix.get("sync", token=alice, query={"filter": raw}, expect=None)
    assert_matrix_error(resp, 400, "M_NOT_JSON")


def test_uploaded_body_that_is_not_json_is_400(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.request("POST", f"user/{q(alice.user_id)}/filter", raw=b"{nope", token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_NOT_JSON")


def test_filter_api_needs_a_token(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.post(f"user/{q(alice.user_id)}/filter", {}, expect=None)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


# -- filters in /sync -------------------------------------------------------------------------------


def test_inline_filter_limits_the_timeline(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    for i in range(3):
        matrix.send_text(alice, room_id, f"m{i}")
    # As the seed's curl sends it: the JSON, URL-encoded into the query string.
    path = "sync?filter=" + quote(json.dumps({"room": {"timeline": {"limit": 1}}}))
    body = matrix.get(path, token=alice).json()
    entry = room_entry(body, room_id)
    assert bodies(entry["timeline"]["events"]) == ["m2"] and len(entry["timeline"]["events"]) == 1
    assert entry["timeline"]["limited"] is True
    # Everything before the timeline is state.
    assert {("m.room.create", ""), ("m.room.member", alice.user_id)} <= state_keys(entry["state"]["events"])


def test_stored_filter_applies_to_sync(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    for i in range(3):
        matrix.send_text(alice, room_id, f"m{i}")
    filter_id = upload_filter(matrix, alice, {"room": {"timeline": {"limit": 2}}})
    assert timeline_bodies(sync(matrix, alice, filter=filter_id), room_id) == ["m1", "m2"]


def test_a_stored_filter_is_read_once_per_worker_and_only_ever_for_its_owner(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    for i in range(3):
        matrix.send_text(alice, room_id, f"m{i}")
    filter_id = upload_filter(matrix, alice, {"room": {"timeline": {"limit": 2}}})
    assert timeline_bodies(sync(matrix, alice, filter=filter_id), room_id) == ["m1", "m2"]
    with CaptureQueriesContext(connection) as captured:
        again = sync(matrix, alice, filter=filter_id)
    assert timeline_bodies(again, room_id) == ["m1", "m2"]
    assert not [q for q in captured.captured_queries if StoredFilter._meta.db_table in q["sql"]]
    # Bob may not use Alice's filter, whatever this worker has read.
    resp = matrix.get("sync", token=bob, query={"filter": filter_id}, expect=404)
    assert resp.json()["errcode"] == "M_NOT_FOUND"


def test_timeline_types_and_not_types_with_wildcards(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    matrix.send_text(alice, room_id, "text")
    matrix.send(alice, room_id, "org.example.custom", {"x": 1})
    matrix.send(alice, room_id, "org.example.other", {"x": 2})
    only_messages = timeline(
        sync(matrix, alice, filter={"room": {"timeline": {"types": ["m.room.mess*"]}}}), room_id
    )
    assert [e["type"] for e in only_messages] == ["m.room.message"]
    custom = timeline(sync(matrix, alice, filter={"room": {"timeline": {"types": ["org.*"]}}}), room_id)
    assert [e["type"] for e in custom] == ["org.example.custom", "org.example.other"]
    no_custom = timeline(
        sync(
            matrix,
            alice,
            filter={"room": {"timeline": {"types": ["*"], "not_types": ["org.example.c*", "m.room.*"]}}},
        ),
        room_id,
    )
    assert [e["type"] for e in no_custom] == ["org.example.other"]
    nothing = sync(matrix, alice, filter={"room": {"timeline": {"types": []}}})
    assert room_entry(nothing, room_id)["timeline"]["events"] == []


def test_timeline_filter_on_an_incremental_sync(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    only_messages = {"room": {"timeline": {"types": ["m.room.message"]}}}
    since = sync(matrix, bob, filter=only_messages)["next_batch"]
    matrix.send(alice, room_id, "org.example.custom", {"x": 1})
    body = sync(matrix, bob, since=since, filter=only_messages)
    assert body["rooms"]["join"] == {}  # the only news is filtered out
    topic = matrix.send_state(alice, room_id, "m.room.topic", {"topic": "hidden from the timeline"})
    matrix.send_text(alice, room_id, "shown")
    entry = room_entry(sync(matrix, bob, since=body["next_batch"], filter=only_messages), room_id)
    assert bodies(entry["timeline"]["events"]) == ["shown"]
    # The topic change before the timeline, left out of it by the filter, still reaches the state.
    assert [e["event_id"] for e in entry["state"]["events"]] == [topic]


def test_state_changes_a_filtered_timeline_leaves_out_reach_the_state(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, topic="first")
    only_messages = {"room": {"timeline": {"types": ["m.room.message"]}}}
    matrix.send_text(alice, room_id, "one")
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "second"})  # after the timeline's start
    matrix.send_text(alice, room_id, "two")
    entry = room_entry(sync(matrix, bob, filter=only_messages), room_id)
    assert bodies(entry["timeline"]["events"]) == ["one", "two"]
    topics = [e["content"]["topic"] for e in entry["state"]["events"] if e["type"] == "m.room.topic"]
    assert topics == ["second"]  # one value per key: the one the client ends up with
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room_id, "three")
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "third"})
    matrix.send_text(alice, room_id, "four")
    entry = room_entry(sync(matrix, bob, since=since, filter=only_messages), room_id)
    assert bodies(entry["timeline"]["events"]) == ["three", "four"]
    assert [e["content"] for e in entry["state"]["events"]] == [{"topic": "third"}]


def test_senders_and_not_senders(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.send_text(alice, room_id, "from alice")
    matrix.send_text(bob, room_id, "from bob")
    only_bob = sync(matrix, alice, filter={"room": {"timeline": {"senders": [bob.user_id]}}})
    assert {e["sender"] for e in timeline(only_bob, room_id)} == {bob.user_id}
    assert timeline_bodies(only_bob, room_id) == ["from bob"]
    not_bob = sync(matrix, alice, filter={"room": {"timeline": {"not_senders": [bob.user_id]}}})
    assert bob.user_id not in {e["sender"] for e in timeline(not_bob, room_id)}
    assert timeline_bodies(not_bob, room_id) == ["from alice"]


def test_rooms_and_not_rooms(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    first = joined_room_with(matrix, alice, bob)
    second = joined_room_with(matrix, alice, bob)
    invited = matrix.create_room(alice)
    matrix.invite(alice, invited, bob.user_id)
    only_first = sync(matrix, bob, filter={"room": {"rooms": [first]}})
    assert list(only_first["rooms"]["join"]) == [first]
    assert only_first["rooms"]["invite"] == {}
    not_first = sync(matrix, bob, filter={"room": {"not_rooms": [first]}})
    assert set(not_first["rooms"]["join"]) == {second}
    assert set(not_first["rooms"]["invite"]) == {invited}
    both = sync(matrix, bob, filter={"room": {"rooms": [first, second], "not_rooms": [second]}})
    assert list(both["rooms"]["join"]) == [first]  # not_rooms wins
    # A timeline filter's rooms only narrow the timelines: the room is still there, with its state.
    narrowed = sync(matrix, bob, filter={"room": {"timeline": {"rooms": [first]}}})
    assert room_entry(narrowed, second)["timeline"]["events"] == []
    assert ("m.room.create", "") in state_keys(state(narrowed, second))
    assert timeline(narrowed, first)


def test_lazy_load_members_sends_only_the_timeline_senders(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    quiet = [make_user() for _ in range(3)]
    room_id = joined_room_with(matrix, alice, bob, *quiet, name="Named")
    for i in range(12):
        matrix.send_text(bob, room_id, f"b{i}")
    lazy = {"room": {"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}}
    entry = room_entry(sync(matrix, alice, filter=lazy), room_id)
    members = {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {bob.user_id, alice.user_id}  # the sender, and the syncing user (spec: MUST)
    assert ("m.room.power_levels", "") in state_keys(entry["state"]["events"])  # other state unaffected
    eager = room_entry(sync(matrix, alice, filter={"room": {"timeline": {"limit": 5}}}), room_id)
    eager_members = {e["state_key"] for e in eager["state"]["events"] if e["type"] == "m.room.member"}
    assert eager_members == {alice.user_id, bob.user_id} | {u.user_id for u in quiet}


def test_lazy_loading_includes_heroes_of_an_unnamed_room(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    for i in range(12):
        matrix.send_text(alice, room_id, f"a{i}")
    entry = room_entry(sync(matrix, alice, filter={"room": {"state": {"lazy_load_members": True}}}), room_id)
    assert entry["summary"]["m.heroes"] == [bob.user_id, carol.user_id]
    members = {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id, carol.user_id}


def test_lazy_loading_incremental_gappy_sync_keeps_membership_changes_of_the_gap(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    room_id = joined_room_with(matrix, alice, bob, name="Named")
    lazy = {"room": {"timeline": {"limit": 3}, "state": {"lazy_load_members": True}}}
    since = sync(matrix, alice, filter=lazy)["next_batch"]
    carol = make_user("carol")
    matrix.join(carol, room_id)  # in the gap; carol never speaks
    for i in range(6):
        matrix.send_text(bob, room_id, f"b{i}")
    entry = room_entry(sync(matrix, alice, since=since, filter=lazy), room_id)
    assert entry["timeline"]["limited"] is True
    members = {e["state_key"] for e in entry["state"]["events"] if e["type"] == "m.room.member"}
    assert carol.user_id in members  # a change in the gap is never dropped
    assert bob.user_id in members  # the timeline's sender


def test_state_filter_types(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice, name="N", topic="T")
    for i in range(12):
        matrix.send_text(alice, room_id, f"m{i}")
    body = sync(matrix, alice, filter={"room": {"state": {"types": ["m.room.name", "m.room.topic"]}}})
    assert state_keys(state(body, room_id)) == {("m.room.name", ""), ("m.room.topic", "")}
    body = sync(matrix, alice, filter={"room": {"state": {"not_types": ["m.room.member"]}}})
    keys = state_keys(state(body, room_id))
    assert ("m.room.create", "") in keys and not any(t == "m.room.member" for t, _ in keys)


def test_state_filter_senders_apply_to_the_state_at_the_start_of_the_timeline(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    set_power_levels(matrix, alice, room_id, users={bob.user_id: 100})
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "by alice"})
    for i in range(12):
        matrix.send_text(alice, room_id, f"m{i}")
    matrix.send_state(bob, room_id, "m.room.topic", {"topic": "by bob"})  # in the timeline
    body = sync(matrix, alice, filter={"room": {"state": {"senders": [alice.user_id]}}})
    topics = [e["content"] for e in state(body, room_id) if e["type"] == "m.room.topic"]
    assert topics == [{"topic": "by alice"}]  # the value before the timeline, which alice set
    assert {e["sender"] for e in state(body, room_id)} == {alice.user_id}
    body = sync(matrix, alice, filter={"room": {"state": {"senders": [bob.user_id]}}})
    assert [e for e in state(body, room_id) if e["type"] == "m.room.topic"] == []
    assert {e["sender"] for e in state(body, room_id)} == {bob.user_id}  # bob's join


def test_event_fields(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    matrix.send_text(alice, room_id, "hello")
    body = sync(matrix, alice, filter={"event_fields": ["type", "content.body"]})
    events = timeline(body, room_id)
    assert events[-1] == {"type": "m.room.message", "content": {"body": "hello"}}
    assert all(set(e) <= {"type", "content"} for e in events)


def test_limit_zero_gives_empty_limited_timelines(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    entry = room_entry(sync(matrix, alice, filter={"room": {"timeline": {"limit": 0}}}), room_id)
    assert entry["timeline"]["events"] == []
    assert entry["timeline"]["limited"] is True
    assert ("m.room.create", "") in state_keys(entry["state"]["events"])


def test_timeline_limit_is_capped(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    for i in range(105):
        matrix.send(alice, room_id, "org.example.tick", {"i": i})
    events = timeline(sync(matrix, alice, filter={"room": {"timeline": {"limit": 10_000}}}), room_id)
    assert len(events) == 100


# -- push rules and capabilities ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["pushrules/", "pushrules"])
def test_pushrules_returns_the_default_rule_set(
    any_prefix_client: MatrixClient, alice: TestUser, path: str
) -> None:
    body = any_prefix_client.get(path, token=alice).json()
    rules = body["global"]
    assert set(rules) >= {"override", "content", "room", "sender", "underride"}
    override_ids = [r["rule_id"] for r in rules["override"]]
    assert override_ids[0] == ".m.rule.master"
    assert {".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.suppress_notices"} <= set(
        override_ids
    )
    assert [r["rule_id"] for r in rules["underride"]][-2:] == [".m.rule.message", ".m.rule.encrypted"]
    invite = next(r for r in rules["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert {"kind": "event_match", "key": "state_key", "pattern": alice.user_id} in invite["conditions"]
    for kind in ("override", "content", "room", "sender", "underride"):
        for rule in rules[kind]:
            assert {"rule_id", "default", "enabled", "actions"} <= set(rule)


def test_pushrules_needs_a_token(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.get("pushrules/", expect=None), 401, "M_MISSING_TOKEN")


def test_capabilities_lists_room_versions(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    caps = any_prefix_client.get("capabilities", token=alice).json()["capabilities"]
    versions = caps["m.room_versions"]
    assert versions["default"] == "12"
    assert versions["available"]["12"] == "stable"
    assert {"10", "11", "12"} <= set(versions["available"])
    assert set(versions["available"].values()) <= {"stable", "unstable"}
    assert caps["m.change_password"] == {"enabled": True}
