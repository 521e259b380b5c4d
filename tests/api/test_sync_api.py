"""GET /sync through the real route: initial and incremental syncs, the sections of a response, tokens,
and query counts. (Filters: test_sync_filters_api.py; long-polling: test_sync_longpoll.py.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests import matrix_client
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import (
    bodies,
    page_back,
    pos,
    room_entry,
    state_keys,
    sync,
    timeline,
    timeline_bodies,
)

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

pytestmark = pytest.mark.django_db


def send_many(matrix: MatrixClient, user: TestUser, room_id: str, prefix: str, n: int) -> list[str]:
    return [matrix.send_text(user, room_id, f"{prefix}{i}") for i in range(n)]


# -- initial sync ------------------------------------------------------------------------------------


def test_initial_sync_has_every_top_level_key_for_a_user_without_rooms(
    matrix: MatrixClient, alice: TestUser
) -> None:
    body = sync(matrix, alice)
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert body["device_lists"] == {"changed": [], "left": []}
    # Synapse's habit, relied on by clients: signed_curve25519 is always counted, even at 0.
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert body["device_unused_fallback_key_types"] == []
    assert body["to_device"] == {"events": []}


def test_initial_sync_of_a_new_room_has_its_whole_history_in_the_timeline_and_no_state(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    body = sync(matrix, alice)
    entry = room_entry(body, room_id)
    events = entry["timeline"]["events"]
    assert events[0]["type"] == "m.room.create"
    assert entry["timeline"]["limited"] is False
    assert entry["state"]["events"] == []  # the spec's note: all the state fits in the timeline
    assert entry["ephemeral"] == {"events": []}
    assert entry["account_data"] == {"events": []}
    assert entry["summary"]["m.joined_member_count"] == 1
    assert entry["summary"]["m.invited_member_count"] == 0
    assert entry["summary"]["m.heroes"] == []  # unnamed: required, though nobody else is there
    # /messages from prev_batch finds nothing older.
    assert page_back(matrix, alice, room_id, entry["timeline"]["prev_batch"]) == []


def test_initial_sync_timeline_is_limited_and_prev_batch_continues_exactly_where_it_began(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    sent = send_many(matrix, alice, room_id, "m", 25)
    body = sync(matrix, alice)
    entry = room_entry(body, room_id)
    events = entry["timeline"]["events"]
    assert entry["timeline"]["limited"] is True
    assert [e["event_id"] for e in events] == sent[-10:]
    older = page_back(matrix, alice, room_id, entry["timeline"]["prev_batch"])
    everything = older + events
    ids = [e["event_id"] for e in everything]
    assert len(ids) == len(set(ids))  # no overlap
    assert [e["event_id"] for e in everything if e["type"] == "m.room.message"] == sent  # no gap
    assert everything[0]["type"] == "m.room.create"


def test_initial_sync_state_is_the_state_at_the_start_of_the_timeline(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "old"})
    send_many(matrix, alice, room_id, "a", 12)
    new_topic = matrix.send_state(alice, room_id, "m.room.topic", {"topic": "new"})
    matrix.send_text(alice, room_id, "last")
    entry = room_entry(sync(matrix, bob), room_id)
    events = entry["timeline"]["events"]
    assert new_topic in [e["event_id"] for e in events]
    by_key = {(e["type"], e["state_key"]): e for e in entry["state"]["events"]}
    # The topic *before* the timeline, not the current one (which is in the timeline).
    assert by_key[("m.room.topic", "")]["content"] == {"topic": "old"}
    assert {
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.member", alice.user_id),
        ("m.room.member", bob.user_id),
    } <= set(by_key)
    timeline_ids = {e["event_id"] for e in events}
    assert not timeline_ids & {e["event_id"] for e in entry["state"]["events"]}


def test_state_event_in_the_timeline_is_not_repeated_in_state(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    send_many(matrix, alice, room_id, "x", 12)
    name_id = matrix.send_state(alice, room_id, "m.room.name", {"name": "Room"})
    entry = room_entry(sync(matrix, alice), room_id)
    assert name_id in [e["event_id"] for e in entry["timeline"]["events"]]
    assert ("m.room.name", "") not in state_keys(entry["state"]["events"])  # not set before the timeline


def test_summary_heroes_for_an_unnamed_room_and_none_for_a_named_one(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    carol = make_user("carol")
    unnamed = joined_room_with(matrix, alice, bob)
    matrix.invite(alice, unnamed, carol.user_id)
    named = matrix.create_room(alice, name="Named")
    body = sync(matrix, alice)
    summary = room_entry(body, unnamed)["summary"]
    assert summary["m.heroes"] == [bob.user_id, carol.user_id]
    assert summary["m.joined_member_count"] == 2
    assert summary["m.invited_member_count"] == 1
    assert "m.heroes" not in room_entry(body, named)["summary"]


def test_heroes_fall_back_to_members_who_left(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    summary = room_entry(sync(matrix, alice), room_id)["summary"]
    assert summary["m.heroes"] == [bob.user_id]
    assert summary["m.joined_member_count"] == 1


def test_invite_appears_with_stripped_state_including_the_invite(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, name="Secret plans", topic="t")
    matrix.send_text(alice, room_id, "not for invitees")
    matrix.invite(alice, room_id, bob.user_id)
    body = sync(matrix, bob)
    assert room_id not in body["rooms"]["join"]
    events = room_entry(body, room_id, "invite")["invite_state"]["events"]
    by_key = {(e["type"], e["state_key"]): e for e in events}
    assert by_key[("m.room.member", bob.user_id)]["content"]["membership"] == "invite"
    assert by_key[("m.room.member", bob.user_id)]["sender"] == alice.user_id
    assert by_key[("m.room.name", "")]["content"] == {"name": "Secret plans"}
    assert ("m.room.create", "") in by_key and ("m.room.join_rules", "") in by_key
    assert all(set(e) == {"type", "state_key", "sender", "content"} for e in events)  # stripped


def test_knock_appears_with_knock_state(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = matrix.create_room(alice, name="Knockable")
    matrix.send_state(alice, room_id, "m.room.join_rules", {"join_rule": "knock"})
    matrix.post(f"knock/{q(room_id)}", {}, token=bob)
    body = sync(matrix, bob)
    events = room_entry(body, room_id, "knock")["knock_state"]["events"]
    by_key = {(e["type"], e["state_key"]): e for e in events}
    assert by_key[("m.room.member", bob.user_id)]["content"]["membership"] == "knock"
    assert by_key[("m.room.name", "")]["content"] == {"name": "Knockable"}
    assert room_id not in body["rooms"]["join"]


def test_left_rooms_appear_in_initial_sync_only_with_include_leave(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.send_text(alice, room_id, "before")
    matrix.leave(bob, room_id)
    matrix.send_text(alice, room_id, "after")
    assert sync(matrix, bob)["rooms"]["leave"] == {}
    assert sync(matrix, bob, full_state=True)["rooms"]["leave"] == {}
    body = sync(matrix, bob, filter={"room": {"include_leave": True}})
    entry = room_entry(body, room_id, "leave")
    events = entry["timeline"]["events"]
    assert bodies(events) == ["before"]  # nothing after the leave
    assert events[-1]["type"] == "m.room.member" and events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"]["membership"] == "leave"
    assert entry["account_data"] == {"events": []}
    assert isinstance(entry["state"]["events"], list)


def test_left_room_entry_has_state_and_timeline_keys_even_when_empty(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    body = sync(matrix, bob, filter={"room": {"include_leave": True, "timeline": {"limit": 0}}})
    entry = room_entry(body, room_id, "leave")
    assert entry["timeline"]["events"] == []
    assert entry["state"]["events"]  # the state at the leave: the client can still show the room
    assert ("m.room.member", bob.user_id) in state_keys(entry["state"]["events"])


def test_forgotten_rooms_are_not_in_leave(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    matrix.post(f"rooms/{q(room_id)}/forget", {}, token=bob)
    assert sync(matrix, bob, filter={"room": {"include_leave": True}})["rooms"]["leave"] == {}


def test_state_of_a_left_room_is_not_what_changed_after_the_leave(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, name="Before")
    matrix.leave(bob, room_id)
    matrix.send_state(alice, room_id, "m.room.name", {"name": "After"})
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "new after"})
    body = sync(matrix, bob, filter={"room": {"include_leave": True, "timeline": {"limit": 1}}})
    entry = room_entry(body, room_id, "leave")
    by_key = {(e["type"], e["state_key"]): e for e in entry["state"]["events"]}
    assert by_key[("m.room.name", "")]["content"] == {"name": "Before"}
    assert ("m.room.topic", "") not in by_key
    assert [e["content"].get("membership") for e in entry["timeline"]["events"]] == ["leave"]


def test_history_the_user_may_not_see_is_not_in_the_timeline(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat")
    matrix.send_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "joined"})
    matrix.send_text(alice, room_id, "secret")
    matrix.join(bob, room_id)
    matrix.send_text(alice, room_id, "hello bob")
    entry = room_entry(sync(matrix, bob), room_id)
    events = entry["timeline"]["events"]
    assert bodies(events) == ["hello bob"]
    assert (events[-2]["type"], events[-2]["state_key"]) == ("m.room.member", bob.user_id)
    # Everything up to the change of visibility was "shared" (visible to a later member); the message
    # sent while it was "joined" is not.
    assert [e["type"] for e in events][-3:] == [
        "m.room.history_visibility",
        "m.room.member",
        "m.room.message",
    ]
    assert "secret" not in bodies(page_back(matrix, bob, room_id, entry["timeline"]["prev_batch"]))


def test_own_events_carry_transaction_id_only_for_the_sending_device(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    matrix.send(alice, room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"}, txn_id="my-txn")
    login = matrix.login("alice", alice.password)
    other_device = matrix_client.TestUser(alice.user_id, login["access_token"], login["device_id"], "")
    mine = timeline(sync(matrix, alice), room_id)[-1]
    assert mine["unsigned"]["transaction_id"] == "my-txn"
    theirs = timeline(sync(matrix, other_device), room_id)[-1]
    assert theirs["event_id"] == mine["event_id"]
    assert "transaction_id" not in theirs["unsigned"]
    # Incremental syncs too.
    since = sync(matrix, other_device)["next_batch"]
    matrix.send(alice, room_id, "m.room.message", {"msgtype": "m.text", "body": "again"}, txn_id="t2")
    assert timeline(sync(matrix, alice, since=since), room_id)[-1]["unsigned"]["transaction_id"] == "t2"
    assert "transaction_id" not in timeline(sync(matrix, other_device, since=since), room_id)[-1]["unsigned"]


def test_sync_answers_on_r0_and_v3(
    any_prefix_client: MatrixClient, alice: TestUser, matrix: MatrixClient
) -> None:
    room_id = matrix.create_room(alice)
    body = sync(any_prefix_client, alice)
    assert room_id in body["rooms"]["join"]


def test_sync_needs_an_access_token(matrix: MatrixClient, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):  # nothing is read for a request without a token
        assert_matrix_error(matrix.get("sync", expect=None), 401, "M_MISSING_TOKEN")
        resp = matrix.get("sync", query={"since": "s1", "timeout": "1000"}, expect=None)
        assert_matrix_error(resp, 401, "M_MISSING_TOKEN")
    assert_matrix_error(matrix.get("sync", token="nope", expect=None), 401, "M_UNKNOWN_TOKEN")
    # Authentication comes before the parameters: no probing without a token.
    resp = matrix.get("sync", query={"since": "abc", "filter": "{"}, expect=None)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


def test_sync_rejects_other_methods(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.post("sync", {}, token=alice, expect=None)
    assert resp.status_code == 405
    assert resp.json()["errcode"] == "M_UNRECOGNIZED"


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("timeout", "abc"),
        ("timeout", "-1"),
        ("full_state", "yes"),
        ("set_presence", "busy"),
    ],
)
def test_bad_parameters_are_400(matrix: MatrixClient, alice: TestUser, param: str, value: str) -> None:
    resp = matrix.get("sync", token=alice, query={param: value}, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")


# -- incremental sync -------------------------------------------------------------------------------


def test_incremental_sync_returns_new_messages_exactly_once_in_order(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    other = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    seen: list[str] = []
    sent: list[str] = []
    for round_no in range(6):
        for i in range(round_no):  # 0..5 messages per round, some rounds empty
            sent.append(f"r{round_no}-{i}")
            matrix.send_text(alice, room_id, sent[-1])
        body = sync(matrix, bob, since=since)
        assert pos(body["next_batch"]) >= pos(since)
        assert other not in body["rooms"]["join"]  # no news there: no entry
        if round_no == 0:
            assert body["rooms"]["join"] == {}
        else:
            entry = room_entry(body, room_id)
            assert entry["timeline"]["limited"] is False
            assert entry["state"]["events"] == []
            seen.extend(timeline_bodies(body, room_id))
        since = body["next_batch"]
    assert seen == sent
    assert sync(matrix, bob, since=since)["rooms"]["join"] == {}


def test_incremental_prev_batch_continues_where_the_timeline_began(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    send_many(matrix, alice, room_id, "old", 3)
    since = sync(matrix, alice)["next_batch"]
    send_many(matrix, alice, room_id, "new", 2)
    entry = room_entry(sync(matrix, alice, since=since), room_id)
    assert bodies(entry["timeline"]["events"]) == ["new0", "new1"]
    older = page_back(matrix, alice, room_id, entry["timeline"]["prev_batch"], to_token=since)
    assert older == []  # nothing between since and the timeline: not limited
    assert bodies(page_back(matrix, alice, room_id, entry["timeline"]["prev_batch"]))[-3:] == [
        "old0",
        "old1",
        "old2",
    ]


def test_gappy_incremental_sync_is_limited_and_pages_back_to_the_previous_since(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    sent = send_many(matrix, alice, room_id, "g", 8)
    topic = matrix.send_state(alice, room_id, "m.room.topic", {"topic": "changed in the gap"})
    sent += send_many(matrix, alice, room_id, "h", 15)
    body = sync(matrix, bob, since=since, filter={"room": {"timeline": {"limit": 5}}})
    entry = room_entry(body, room_id)
    assert entry["timeline"]["limited"] is True
    assert [e["event_id"] for e in entry["timeline"]["events"]] == sent[-5:]
    gap = page_back(matrix, bob, room_id, entry["timeline"]["prev_batch"], to_token=since)
    assert [e["event_id"] for e in gap] == sent[:8] + [topic] + sent[8:-5]  # exactly the gap
    # The state delta covers the change that fell in the gap.
    by_key = {(e["type"], e["state_key"]): e for e in entry["state"]["events"]}
    assert by_key[("m.room.topic", "")]["content"] == {"topic": "changed in the gap"}
    assert ("m.room.create", "") not in by_key  # unchanged state is not repeated
    assert "summary" in entry


def test_state_changes_in_the_timeline_are_only_in_the_timeline(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    topic = matrix.send_state(alice, room_id, "m.room.topic", {"topic": "t"})
    matrix.send_text(alice, room_id, "after topic")
    entry = room_entry(sync(matrix, bob, since=since), room_id)
    events = entry["timeline"]["events"]
    assert events[0]["event_id"] == topic
    assert events[0]["state_key"] == ""
    assert entry["state"]["events"] == []


def test_membership_change_updates_the_summary(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since = sync(matrix, alice)["next_batch"]
    carol = make_user("carol")
    matrix.invite(alice, room_id, carol.user_id)
    matrix.join(carol, room_id)
    summary = room_entry(sync(matrix, alice, since=since), room_id)["summary"]
    assert summary["m.joined_member_count"] == 3
    assert summary["m.invited_member_count"] == 0
    assert summary["m.heroes"] == [bob.user_id, carol.user_id]


def test_newly_joined_room_comes_with_its_full_state(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat", name="Lobby")
    send_many(matrix, alice, room_id, "before", 15)
    since = sync(matrix, bob)["next_batch"]
    matrix.join(bob, room_id)
    entry = room_entry(sync(matrix, bob, since=since), room_id)
    keys = state_keys(entry["state"]["events"]) | state_keys(
        [e for e in entry["timeline"]["events"] if "state_key" in e]
    )
    assert {
        ("m.room.create", ""),
        ("m.room.name", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", alice.user_id),
        ("m.room.member", bob.user_id),
    } <= keys
    assert entry["timeline"]["events"][-1]["state_key"] == bob.user_id
    assert entry["summary"]["m.joined_member_count"] == 2


def test_invite_arrives_in_an_incremental_sync_once(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    since = sync(matrix, bob)["next_batch"]
    matrix.invite(alice, room_id, bob.user_id)
    body = sync(matrix, bob, since=since)
    invite = room_entry(body, room_id, "invite")["invite_state"]["events"]
    assert ("m.room.member", bob.user_id) in state_keys(invite)
    body = sync(matrix, bob, since=body["next_batch"])
    assert body["rooms"]["invite"] == {}
    # Accepting: the room moves to join, with full state.
    matrix.join(bob, room_id)
    body = sync(matrix, bob, since=body["next_batch"])
    assert room_id in body["rooms"]["join"]
    assert body["rooms"]["invite"] == {}


def test_rejected_invite_moves_to_leave_without_leaking_room_history(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    matrix.invite(alice, room_id, bob.user_id)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "for members"})
    matrix.send_text(alice, room_id, "for members")
    matrix.leave(bob, room_id)
    entry = room_entry(sync(matrix, bob, since=since), room_id, "leave")
    events = entry["timeline"]["events"]
    assert [(e["type"], e["content"].get("membership")) for e in events] == [("m.room.member", "leave")]
    assert ("m.room.topic", "") not in state_keys(entry["state"]["events"])


@pytest.mark.parametrize("how", ["leave", "kick", "ban"])
def test_leaving_puts_the_room_under_leave_with_the_timeline_up_to_the_leave(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, how: str
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room_id, "seen")
    if how == "leave":
        matrix.leave(bob, room_id)
    elif how == "kick":
        matrix.kick(alice, room_id, bob.user_id)
    else:
        matrix.ban(alice, room_id, bob.user_id)
    matrix.send_text(alice, room_id, "not seen")
    body = sync(matrix, bob, since=since)
    assert room_id not in body["rooms"]["join"]
    entry = room_entry(body, room_id, "leave")
    events = entry["timeline"]["events"]
    assert bodies(events) == ["seen"]
    assert events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"]["membership"] == ("ban" if how == "ban" else "leave")
    # Afterwards the room is quiet for bob, whatever happens in it.
    matrix.send_text(alice, room_id, "still not seen")
    after = sync(matrix, bob, since=body["next_batch"])
    assert room_id not in after["rooms"]["join"] and room_id not in after["rooms"]["leave"]


def test_rejoin_brings_the_room_back_with_full_state(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.leave(bob, room_id)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "while away"})
    send_many(matrix, alice, room_id, "away", 12)
    matrix.join(bob, room_id)
    matrix.send_text(alice, room_id, "welcome back")
    entry = room_entry(sync(matrix, bob, since=since, filter={"room": {"timeline": {"limit": 2}}}), room_id)
    assert entry["timeline"]["events"][0]["state_key"] == bob.user_id
    assert bodies(entry["timeline"]["events"]) == ["welcome back"]
    by_key = {(e["type"], e["state_key"]): e for e in entry["state"]["events"]}
    assert by_key[("m.room.topic", "")]["content"] == {"topic": "while away"}
    assert ("m.room.create", "") in by_key  # full state, not a delta


def test_leave_and_rejoin_within_one_gap_brings_full_state(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.send_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "joined"})
    since = sync(matrix, bob)["next_batch"]
    matrix.leave(bob, room_id)
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "while bob was away"})
    matrix.join(bob, room_id)
    matrix.send_text(alice, room_id, "back")
    entry = room_entry(sync(matrix, bob, since=since), room_id)
    # bob may not see the topic change in the timeline, but his copy of the room state must have it.
    assert "while bob was away" not in str(entry["timeline"]["events"])
    by_key = {(e["type"], e["state_key"]): e for e in entry["state"]["events"]}
    assert by_key[("m.room.topic", "")]["content"] == {"topic": "while bob was away"}
    assert ("m.room.create", "") in by_key


def test_join_and_leave_within_one_gap_shows_the_room_under_leave_with_its_state(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = matrix.create_room(alice, preset="public_chat", name="Brief visit")
    since = sync(matrix, bob)["next_batch"]
    matrix.join(bob, room_id)
    matrix.send_text(alice, room_id, "hi bob")
    matrix.leave(bob, room_id)
    matrix.send_text(alice, room_id, "bye bob")
    entry = room_entry(sync(matrix, bob, since=since), room_id, "leave")
    assert "hi bob" in bodies(entry["timeline"]["events"])
    assert "bye bob" not in bodies(entry["timeline"]["events"])
    keys = state_keys(entry["state"]["events"]) | state_keys(
        [e for e in entry["timeline"]["events"] if "state_key" in e]
    )
    assert {("m.room.create", ""), ("m.room.name", "")} <= keys


def test_each_left_room_ends_at_its_own_leave(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    kept = joined_room_with(matrix, alice, bob)
    left = []
    for i in range(3):
        room_id = joined_room_with(matrix, alice, bob)
        matrix.send_text(alice, room_id, f"before leaving {i}")
        matrix.leave(bob, room_id)
        matrix.send_text(alice, room_id, f"after leaving {i}")
        left.append(room_id)
    matrix.send_text(alice, kept, "still here")
    body = sync(matrix, bob, filter={"room": {"include_leave": True}})
    assert timeline_bodies(body, kept) == ["still here"]
    for i, room_id in enumerate(left):
        events = timeline(body, room_id, "leave")
        assert bodies(events) == [f"before leaving {i}"]
        assert events[-1]["content"]["membership"] == "leave"


def test_full_state_returns_all_state_and_only_new_timeline_events(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    quiet = joined_room_with(matrix, alice, bob)
    send_many(matrix, alice, room_id, "old", 3)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room_id, "new")
    body = sync(matrix, bob, since=since, full_state=True, timeout=10_000)
    entry = room_entry(body, room_id)
    assert timeline_bodies(body, room_id) == ["new"]
    assert {("m.room.create", ""), ("m.room.member", bob.user_id)} <= state_keys(entry["state"]["events"])
    quiet_entry = room_entry(body, quiet)  # every joined room, even without news
    assert quiet_entry["timeline"]["events"] == []
    assert ("m.room.create", "") in state_keys(quiet_entry["state"]["events"])


def test_rooms_without_news_for_the_user_have_no_entry(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    mine = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    elsewhere = matrix.create_room(alice)
    matrix.send_text(alice, elsewhere, "not for bob")
    body = sync(matrix, bob, since=since)
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert pos(body["next_batch"]) > pos(since)  # unrelated traffic still moves the token
    assert mine not in body["rooms"]["join"]


# -- tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    ["abc", "s", "t1_2", "s-1", "s1_2", "s 1", "s+1", "s1.5", "S1", "s" + "9" * 30, "s١٢", "s²", "s0x10", ""],
)
def test_malformed_since_is_400_never_500(matrix: MatrixClient, alice: TestUser, since: str) -> None:
    resp = matrix.get("sync", token=alice, query={"since": since}, expect=None)
    if since == "":
        assert resp.status_code == 200  # an empty since is no since
        return
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")


def test_since_from_the_future_is_clamped_to_the_head(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    head = sync(matrix, alice)["next_batch"]
    body = sync(matrix, alice, since="s9999999999999999")
    assert body["next_batch"] == head
    assert body["rooms"]["join"] == {}
    matrix.send_text(alice, room_id, "after")
    assert timeline_bodies(sync(matrix, alice, since=body["next_batch"]), room_id) == ["after"]


def test_next_batch_never_goes_backwards(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    tokens = [sync(matrix, bob)["next_batch"]]
    for i in range(4):
        if i % 2:
            matrix.send_text(alice, room_id, f"m{i}")
        tokens.append(sync(matrix, bob, since=tokens[-1])["next_batch"])
    assert [pos(t) for t in tokens] == sorted(pos(t) for t in tokens)
    assert sync(matrix, bob, since=tokens[0])["next_batch"] == tokens[-1]


def test_prev_batch_and_next_batch_are_accepted_by_messages(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    send_many(matrix, alice, room_id, "m", 3)
    body = sync(matrix, alice)
    entry = room_entry(body, room_id)
    page = matrix.get(
        f"rooms/{q(room_id)}/messages",
        token=alice,
        query={"dir": "b", "from": body["next_batch"], "limit": 3},
    ).json()
    assert bodies(page["chunk"]) == ["m2", "m1", "m0"]
    matrix.get(
        f"rooms/{q(room_id)}/messages",
        token=alice,
        query={"dir": "b", "from": entry["timeline"]["prev_batch"]},
    )


# -- query counts ---------------------------------------------------------------------------------

# Measured (SQLite and PostgreSQL alike), the same bound for 1 room and for 20 rooms of 20+ events:
# * initial sync: 9 — access token, stream head, account data (all of it, with the ignored users),
#   memberships, membership history, timelines (one windowed query), heroes, current state, state
#   before the timeline (the topic set in it); with lazy-loaded members also 9;
# * incremental sync with a few new messages in every room: 6 — token, head, account data,
#   memberships, membership history, timelines (7 with lazy-loaded members: the senders' member events);
# * incremental sync with news in every room, limited (a gap): 8 — plus heroes and the state delta;
# * incremental sync without news: 4 — access token, stream head, account data, memberships;
# * a stored filter ID costs one more query;
# * E2EE adds one query to every sync (to-device messages, one-time key counts, unused fallback key
#   types and device-list changes in one UNION ALL: E2EE_QUERIES), and one more only in the sync that
#   acknowledges delivered to-device messages (their DELETE; not in these scenarios);
# * ephemeral data adds one query to every sync with joined rooms (typing rows and receipts in one
#   UNION ALL: EPHEMERAL_QUERIES), and an expiry announcement only when typing rows have expired;
# * presence adds two queries to every sync with joined rooms (the user's own row; the room-mates'
#   changes and the next due transition in one UNION ALL, which does not name the user, so that the
#   long-polls one message wakes share it: PRESENCE_QUERIES) and no write for a user who is online
#   already (bringing a user online costs 4 more, once: tests/api/test_presence_api.py pins that);
# * unread counts add one grouped query to every sync with joined rooms in its answer (UNREAD_QUERIES).
E2EE_QUERIES = 1
EPHEMERAL_QUERIES = 1
PRESENCE_QUERIES = 2
UNREAD_QUERIES = 1
EVERY_SYNC = E2EE_QUERIES + EPHEMERAL_QUERIES + PRESENCE_QUERIES
INITIAL_SYNC_QUERIES = 9 + EVERY_SYNC + UNREAD_QUERIES
NEWS_SYNC_QUERIES = 6 + EVERY_SYNC + UNREAD_QUERIES
INCREMENTAL_SYNC_QUERIES = 8 + EVERY_SYNC + UNREAD_QUERIES
EMPTY_SYNC_QUERIES = 4 + EVERY_SYNC


@pytest.fixture(params=[1, 20], ids=["1-room", "20-rooms"])
def busy_user(
    request: pytest.FixtureRequest, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> TestUser:
    for i in range(request.param):
        room_id = joined_room_with(matrix, alice, bob, name=f"room {i}" if i % 2 else None)
        send_many(matrix, alice, room_id, f"r{i}-", 20)
        matrix.send_state(alice, room_id, "m.room.topic", {"topic": f"topic {i}"})
    matrix.whoami(bob)  # the device's first request records it as seen
    matrix.put(f"presence/{q(bob.user_id)}/status", {"presence": "online"}, token=bob)  # online already
    return bob


def test_initial_sync_queries_do_not_grow_with_rooms(
    matrix: MatrixClient, busy_user: TestUser, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(INITIAL_SYNC_QUERIES):
        body = sync(matrix, busy_user, filter={"room": {"include_leave": True}})
    assert all(len(e["timeline"]["events"]) == 10 for e in body["rooms"]["join"].values())


def test_lazy_loading_initial_sync_queries_do_not_grow_with_rooms(
    matrix: MatrixClient, busy_user: TestUser, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(INITIAL_SYNC_QUERIES):
        sync(matrix, busy_user, filter={"room": {"state": {"lazy_load_members": True}}})


def test_incremental_sync_queries_do_not_grow_with_rooms(
    matrix: MatrixClient, alice: TestUser, busy_user: TestUser, django_assert_max_num_queries: Any
) -> None:
    initial = sync(matrix, busy_user)
    since, rooms = initial["next_batch"], list(initial["rooms"]["join"])
    for room_id in rooms:
        send_many(matrix, alice, room_id, "news", 2)
    with django_assert_max_num_queries(NEWS_SYNC_QUERIES):
        body = sync(matrix, busy_user, since=since)
    assert {room_id: timeline_bodies(body, room_id) for room_id in body["rooms"]["join"]} == {
        room_id: ["news0", "news1"] for room_id in rooms
    }
    for room_id in rooms:
        send_many(matrix, alice, room_id, "late", 12)  # gappy: limited, with a state delta
    with django_assert_max_num_queries(INCREMENTAL_SYNC_QUERIES):
        body = sync(matrix, busy_user, since=body["next_batch"])
    assert set(body["rooms"]["join"]) == set(rooms)
    assert all(entry["timeline"]["limited"] for entry in body["rooms"]["join"].values())
    with django_assert_max_num_queries(EMPTY_SYNC_QUERIES):
        empty = sync(matrix, busy_user, since=body["next_batch"])
    assert empty["rooms"]["join"] == {}


def test_stored_filter_costs_one_query(
    matrix: MatrixClient, busy_user: TestUser, django_assert_max_num_queries: Any
) -> None:
    filter_id = matrix.post(
        f"user/{q(busy_user.user_id)}/filter", {"room": {"timeline": {"limit": 3}}}, token=busy_user
    ).json()["filter_id"]
    with django_assert_max_num_queries(INITIAL_SYNC_QUERIES + 1):
        body = sync(matrix, busy_user, filter=filter_id)
    assert all(len(e["timeline"]["events"]) == 3 for e in body["rooms"]["join"].values())
