"""Account data in /sync (global and per room, initial and incremental, filtered, long-poll wake-ups)
and the ignored-users list (spec "Ignoring Users") in /sync and /messages."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.api import test_sync_longpoll as longpoll
from tests.api.test_sync_longpoll import SLOW, ReadCounter, async_sync, in_thread, run, sleep_until
from tests.matrix_client import MatrixClient, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import bodies, messages, pos, room_entry, state, sync, timeline, timeline_bodies

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

pytestmark = pytest.mark.django_db

# The long-poll tests' fixtures: both ways /sync reads the database, and its read counter.
db_mode = longpoll.db_mode
reads = longpoll.reads


def put_data(
    matrix: MatrixClient, user: TestUser, type: str, content: dict[str, Any], room_id: str | None = None
) -> None:
    if room_id is None:
        matrix.put(f"user/{q(user.user_id)}/account_data/{q(type)}", content, token=user)
    else:
        matrix.put(f"user/{q(user.user_id)}/rooms/{q(room_id)}/account_data/{q(type)}", content, token=user)


def put_tag(matrix: MatrixClient, user: TestUser, room_id: str, tag: str, content: dict[str, Any]) -> None:
    matrix.put(f"user/{q(user.user_id)}/rooms/{q(room_id)}/tags/{q(tag)}", content, token=user)


def ignore(matrix: MatrixClient, user: TestUser, *others: TestUser) -> None:
    put_data(matrix, user, "m.ignored_user_list", {"ignored_users": {o.user_id: {} for o in others}})


def global_data(body: dict[str, Any]) -> dict[str, Any]:
    events = body["account_data"]["events"]
    assert all(set(e) == {"type", "content"} for e in events), events
    return {e["type"]: e["content"] for e in events}


def room_data(body: dict[str, Any], room_id: str, section: str = "join") -> dict[str, Any]:
    return {e["type"]: e["content"] for e in room_entry(body, room_id, section)["account_data"]["events"]}


# -- delivery --------------------------------------------------------------------------------------


def test_initial_sync_has_all_global_and_room_account_data(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    put_data(matrix, alice, "org.example.a", {"a": 1})
    put_data(matrix, alice, "m.direct", {"@bob:test.local": [room_id]})
    put_data(matrix, alice, "org.example.r", {"r": 1}, room_id)
    put_tag(matrix, alice, room_id, "m.favourite", {"order": 0.5})
    put_data(matrix, alice, "org.example.a", {"a": 2})  # the newest content, once
    body = sync(matrix, alice)
    data = global_data(body)
    assert data.pop("m.push_rules")["global"]["override"]  # the server's rule set, unasked for
    assert data == {"org.example.a": {"a": 2}, "m.direct": {"@bob:test.local": [room_id]}}
    assert len(body["account_data"]["events"]) == 3  # each type once
    assert room_data(body, room_id) == {
        "org.example.r": {"r": 1},
        "m.tag": {"tags": {"m.favourite": {"order": 0.5}}},
    }


def test_incremental_sync_has_only_what_changed_since(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    put_data(matrix, alice, "org.example.old", {"old": True})
    put_data(matrix, alice, "org.example.r", {"r": 1}, room_id)
    since = sync(matrix, alice)["next_batch"]
    empty = sync(matrix, alice, since=since)
    assert empty["account_data"]["events"] == [] and empty["rooms"]["join"] == {}

    put_data(matrix, alice, "org.example.new", {"new": True})
    body = sync(matrix, alice, since=since)
    assert global_data(body) == {"org.example.new": {"new": True}}
    assert body["rooms"]["join"] == {}  # no room news
    assert pos(body["next_batch"]) > pos(since)
    again = sync(matrix, alice, since=body["next_batch"])
    assert again["account_data"]["events"] == []


def test_a_room_whose_only_news_is_account_data_appears_in_join(
    matrix: MatrixClient, alice: TestUser
) -> None:
    room_id = matrix.create_room(alice)
    other = matrix.create_room(alice)
    since = sync(matrix, alice)["next_batch"]
    put_tag(matrix, alice, room_id, "u.work", {})
    body = sync(matrix, alice, since=since)
    assert set(body["rooms"]["join"]) == {room_id}
    entry = room_entry(body, room_id)
    assert entry["timeline"]["events"] == [] and entry["state"]["events"] == []
    assert entry["account_data"]["events"] == [{"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    assert body["account_data"]["events"] == []
    # ... and together with timeline news, in the same entry.
    matrix.send_text(alice, other, "hello")
    put_data(matrix, alice, "org.example.r", {"x": 1}, other)
    body = sync(matrix, alice, since=body["next_batch"])
    assert set(body["rooms"]["join"]) == {other}
    assert timeline_bodies(body, other) == ["hello"]
    assert room_data(body, other) == {"org.example.r": {"x": 1}}


def test_room_account_data_of_rooms_the_user_is_not_in_is_not_synced(
    matrix: MatrixClient, alice: TestUser
) -> None:
    since = sync(matrix, alice)["next_batch"]
    put_tag(matrix, alice, "!elsewhere:test.local", "u.x", {})
    body = sync(matrix, alice, since=since)
    assert body["rooms"]["join"] == {} and body["account_data"]["events"] == []


def test_tag_removal_is_synced_as_the_new_tag_content(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    put_tag(matrix, alice, room_id, "u.a", {})
    since = sync(matrix, alice)["next_batch"]
    matrix.delete(f"user/{q(alice.user_id)}/rooms/{q(room_id)}/tags/u.a", token=alice)
    body = sync(matrix, alice, since=since)
    assert room_data(body, room_id) == {"m.tag": {"tags": {}}}


def test_account_data_is_private(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    put_data(matrix, alice, "org.example.secret", {"s": 1})
    put_tag(matrix, alice, room_id, "u.secret", {})
    body = sync(matrix, bob, since=since)
    assert body["account_data"]["events"] == [] and body["rooms"]["join"] == {}
    assert "u.secret" not in str(sync(matrix, bob))


def test_filters_select_account_data_types(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    other = matrix.create_room(alice)
    put_data(matrix, alice, "org.example.a", {})
    put_data(matrix, alice, "m.direct", {})
    put_tag(matrix, alice, room_id, "u.t", {})
    put_tag(matrix, alice, other, "u.t", {})
    put_data(matrix, alice, "org.example.r", {}, room_id)
    body = sync(
        matrix,
        alice,
        filter={
            "account_data": {"types": ["m.*"]},
            "room": {"account_data": {"not_types": ["org.*"], "not_rooms": [other]}},
        },
    )
    assert set(global_data(body)) == {"m.direct", "m.push_rules"}  # m.push_rules: always on initial sync
    assert set(room_data(body, room_id)) == {"m.tag"}
    assert room_data(body, other) == {}
    body = sync(
        matrix,
        alice,
        filter={"account_data": {"not_types": ["*"]}, "room": {"account_data": {"limit": 0, "types": []}}},
    )
    assert body["account_data"]["events"] == [] and room_data(body, room_id) == {}


def test_filtered_out_account_data_alone_is_no_news(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    flt = {"account_data": {"types": ["m.direct"]}, "room": {"account_data": {"types": ["m.tag"]}}}
    since = sync(matrix, alice, filter=flt)["next_batch"]
    put_data(matrix, alice, "org.example.a", {})
    put_data(matrix, alice, "org.example.r", {}, room_id)
    body = sync(matrix, alice, since=since, filter=flt)
    assert body["account_data"]["events"] == [] and body["rooms"]["join"] == {}


def test_m_direct_appears_in_sync(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    since = sync(matrix, alice)["next_batch"]
    put_data(matrix, alice, "m.direct", {bob.user_id: [room_id]})
    assert global_data(sync(matrix, alice, since=since)) == {"m.direct": {bob.user_id: [room_id]}}


# -- ignoring users --------------------------------------------------------------------------------


def test_ignored_users_messages_are_hidden_in_sync_but_their_state_is_not(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    ignore(matrix, bob, alice)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room_id, "from alice")
    matrix.send_text(carol, room_id, "from carol")
    matrix.send_state(alice, room_id, "m.room.topic", {"topic": "still sent"})
    body = sync(matrix, bob, since=since)
    assert timeline_bodies(body, room_id) == ["from carol"]
    events = timeline(body, room_id) + state(body, room_id)
    assert any(e["type"] == "m.room.topic" and e["sender"] == alice.user_id for e in events)
    initial = sync(matrix, bob)
    assert "from alice" not in timeline_bodies(initial, room_id)
    assert timeline_bodies(initial, room_id)[-1] == "from carol"
    assert global_data(initial)["m.ignored_user_list"] == {"ignored_users": {alice.user_id: {}}}


def test_a_room_with_only_ignored_messages_has_no_news(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    ignore(matrix, bob, alice)
    since = sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room_id, "unseen")
    body = sync(matrix, bob, since=since)
    assert body["rooms"]["join"] == {}


def test_changing_the_ignore_list_takes_effect_at_once(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob)
    matrix.send_text(alice, room_id, "before")
    since = sync(matrix, bob)["next_batch"]
    ignore(matrix, bob, alice)
    matrix.send_text(alice, room_id, "while ignored")
    body = sync(matrix, bob, since=since)
    assert room_id not in body["rooms"]["join"]
    assert "m.ignored_user_list" in global_data(body)
    ignore(matrix, bob)  # unignore: later messages come again (missed ones are not resent)
    matrix.send_text(alice, room_id, "after")
    body = sync(matrix, bob, since=body["next_batch"])
    assert timeline_bodies(body, room_id) == ["after"]
    assert global_data(body) == {"m.ignored_user_list": {"ignored_users": {}}}


def test_a_user_cannot_ignore_themselves(matrix: MatrixClient, alice: TestUser) -> None:
    room_id = matrix.create_room(alice)
    ignore(matrix, alice, alice)
    matrix.send_text(alice, room_id, "mine")
    assert timeline_bodies(sync(matrix, alice), room_id) == ["mine"]


def test_ignored_users_messages_are_hidden_in_messages(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    carol = make_user("carol")
    room_id = joined_room_with(matrix, alice, bob, carol)
    for i in range(3):
        matrix.send_text(alice, room_id, f"a{i}")
        matrix.send_text(carol, room_id, f"c{i}")
    assert bodies(messages(matrix, bob, room_id, dir="b", limit=6)["chunk"]) == [
        "c2",
        "a2",
        "c1",
        "a1",
        "c0",
        "a0",
    ]
    ignore(matrix, bob, alice)
    page = messages(matrix, bob, room_id, dir="b", limit=3)
    assert bodies(page["chunk"]) == ["c2", "c1", "c0"]
    chunk = messages(matrix, bob, room_id, dir="f", limit=100)["chunk"]
    assert bodies(chunk) == ["c0", "c1", "c2"]
    assert any(e["sender"] == alice.user_id and e["type"] == "m.room.create" for e in chunk)  # state stays
    assert bodies(messages(matrix, alice, room_id, dir="b", limit=6)["chunk"]) == [
        "c2",
        "a2",
        "c1",
        "a1",
        "c0",
        "a0",
    ]


def test_invites_from_ignored_users_are_hidden(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    carol = make_user("carol")
    ignore(matrix, bob, alice)
    since = sync(matrix, bob)["next_batch"]
    from_alice = matrix.create_room(alice)
    from_carol = matrix.create_room(carol)
    matrix.invite(alice, from_alice, bob.user_id)
    matrix.invite(carol, from_carol, bob.user_id)
    assert set(sync(matrix, bob, since=since)["rooms"]["invite"]) == {from_carol}
    assert set(sync(matrix, bob)["rooms"]["invite"]) == {from_carol}
    ignore(matrix, bob)  # unignored: the pending invite shows in an initial sync again
    assert set(sync(matrix, bob)["rooms"]["invite"]) == {from_alice, from_carol}


# -- long-poll -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_account_data_put_from_another_thread_wakes_the_long_poll(
    db_mode: str,
    reads: ReadCounter,
    matrix: MatrixClient,
    alice: TestUser,
) -> None:
    room_id = matrix.create_room(alice)
    since = sync(matrix, alice)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(alice, since=since, timeout=10_000))
        await reads.until(1)  # read, found nothing: waiting
        await sleep_until(started, 0.2)
        assert not pending.done()
        sent_at = time.monotonic()
        await in_thread(put_data, matrix, alice, "org.example.woke", {"w": 1})
        _, body = await asyncio.wait_for(pending, 5)
        return time.monotonic() - sent_at, body

    after_put, body = run(scenario)
    assert after_put < SLOW  # woken by the write, not by the 10 s timeout
    assert global_data(body) == {"org.example.woke": {"w": 1}}

    async def tagged() -> tuple[float, dict[str, Any]]:
        reads.reset()
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(alice, since=body["next_batch"], timeout=10_000))
        await reads.until(1)
        await sleep_until(started, 0.2)
        sent_at = time.monotonic()
        await in_thread(put_tag, matrix, alice, room_id, "u.late", {})
        _, answer = await asyncio.wait_for(pending, 5)
        return time.monotonic() - sent_at, answer

    after_tag, answer = run(tagged)
    assert after_tag < SLOW
    assert room_data(answer, room_id) == {"m.tag": {"tags": {"u.late": {}}}}


@pytest.mark.django_db(transaction=True)
def test_another_users_account_data_does_not_end_the_wait(
    db_mode: str,
    reads: ReadCounter,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
) -> None:
    joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=600))
        await reads.until(1)
        await in_thread(put_data, matrix, alice, "org.example.x", {})
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert elapsed >= 0.55
    assert body["account_data"]["events"] == [] and body["rooms"]["join"] == {}
