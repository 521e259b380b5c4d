"""GET /rooms/{roomId}/context/{eventId}, GET /rooms/{roomId}/event/{eventId} and
GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event through the real routes.
(History visibility on all three: test_history_visibility_api.py.)"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from events.models import Event
from tests.api.test_messages_api import (
    bodies,
    create_room,
    join,
    messages,
    room_event_ids,
    send,
    set_state,
)
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.matrix_client import TestUser as User


def context(
    matrix: MatrixClient, user: User, room_id: str, event_id: str, *, expect: int = 200, **query: Any
) -> Any:
    if isinstance(query.get("filter"), dict):
        query["filter"] = json.dumps(query["filter"])
    response = matrix.get(f"rooms/{q(room_id)}/context/{q(event_id)}", token=user, query=query, expect=expect)
    return response.json() if expect == 200 else response


@pytest.fixture
def room_of_twenty(matrix: MatrixClient, alice: User) -> tuple[str, list[str]]:
    room_id = create_room(matrix, alice, preset="public_chat")
    return room_id, [send(matrix, alice, room_id, f"m{i}") for i in range(20)]


# -- /context -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_context_returns_the_event_with_neighbours_split_around_it(
    matrix: MatrixClient, alice: User, room_of_twenty: tuple[str, list[str]]
) -> None:
    room_id, ids = room_of_twenty
    body = context(matrix, alice, room_id, ids[10], limit=6)
    assert body["event"]["event_id"] == ids[10]
    assert body["event"]["content"]["body"] == "m10"
    assert [e["event_id"] for e in body["events_before"]] == [ids[9], ids[8], ids[7]]  # newest first
    assert [e["event_id"] for e in body["events_after"]] == [ids[11], ids[12], ids[13]]
    assert set(body) == {"event", "events_before", "events_after", "start", "end", "state"}

    # The tokens continue with /messages exactly where the context stops.
    back = messages(matrix, alice, room_id, limit=2, **{"from": body["start"]})
    assert [e["event_id"] for e in back["chunk"]] == [ids[6], ids[5]]
    forward = messages(matrix, alice, room_id, dir="f", limit=2, **{"from": body["end"]})
    assert [e["event_id"] for e in forward["chunk"]] == [ids[14], ids[15]]


@pytest.mark.django_db
@pytest.mark.parametrize(("limit", "before", "after"), [(None, 5, 5), (1, 0, 1), (7, 3, 4), (0, 0, 0)])
def test_context_limit_is_split_between_before_and_after(
    matrix: MatrixClient,
    alice: User,
    room_of_twenty: tuple[str, list[str]],
    limit: int | None,
    before: int,
    after: int,
) -> None:
    room_id, ids = room_of_twenty
    body = context(matrix, alice, room_id, ids[10], limit=limit)
    assert (len(body["events_before"]), len(body["events_after"])) == (before, after)
    assert body["event"]["event_id"] == ids[10]
    assert body["start"].startswith("s") and body["end"].startswith("s")


@pytest.mark.django_db
def test_context_at_the_edges_of_the_room(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    last = send(matrix, alice, room_id, "last")
    create_id = room_event_ids(room_id)[0]

    first = context(matrix, alice, room_id, create_id, limit=4)
    assert first["event"]["type"] == "m.room.create" and first["events_before"] == []
    assert messages(matrix, alice, room_id, **{"from": first["start"]}) == {
        "chunk": [],
        "start": first["start"],
    }

    newest = context(matrix, alice, room_id, last, limit=4)
    assert newest["events_after"] == []
    later = send(matrix, alice, room_id, "later")
    assert [
        e["event_id"] for e in messages(matrix, alice, room_id, dir="f", **{"from": newest["end"]})["chunk"]
    ] == [later]


@pytest.mark.django_db
def test_context_state_is_the_state_at_the_last_event_returned(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice, name="Old name")
    early = send(matrix, alice, room_id, "early")
    set_state(matrix, alice, room_id, "m.room.name", {"name": "New name"})
    send(matrix, alice, room_id, "late")

    body = context(matrix, alice, room_id, early, limit=0)
    state = {(e["type"], e["state_key"]): e for e in body["state"]}
    assert state[("m.room.name", "")]["content"] == {"name": "Old name"}
    assert ("m.room.create", "") in state and ("m.room.member", alice.user_id) in state

    wide = context(matrix, alice, room_id, early, limit=10)  # reaches past the rename
    names = [e["content"]["name"] for e in wide["state"] if e["type"] == "m.room.name"]
    assert names == ["New name"]


@pytest.mark.django_db
def test_context_filter_applies_to_neighbours_and_state_but_not_the_event(
    matrix: MatrixClient, alice: User
) -> None:
    room_id = create_room(matrix, alice)
    send(matrix, alice, room_id, "before")
    topic = set_state(matrix, alice, room_id, "m.room.topic", {"topic": "t"})
    set_state(matrix, alice, room_id, "m.room.name", {"name": "n"})
    send(matrix, alice, room_id, "after")

    body = context(matrix, alice, room_id, topic, filter={"types": ["m.room.message"]})
    assert body["event"]["event_id"] == topic
    assert bodies(body["events_before"]) == ["before"] and len(body["events_before"]) == 1
    assert bodies(body["events_after"]) == ["after"] and len(body["events_after"]) == 1
    assert body["state"] == []

    named = context(matrix, alice, room_id, topic, filter={"types": ["m.room.n*", "m.room.t*"]})
    assert named["events_before"] == []
    assert sorted(e["type"] for e in named["state"]) == ["m.room.name", "m.room.topic"]


@pytest.mark.django_db
def test_context_lazy_loads_the_members_of_the_returned_senders(
    matrix: MatrixClient, alice: User, bob: User, make_user: Any
) -> None:
    carol = make_user("carol")
    room_id = create_room(matrix, alice, preset="public_chat")
    join(matrix, bob, room_id)
    join(matrix, carol, room_id)
    send(matrix, carol, room_id, "c")
    middle = send(matrix, bob, room_id, "b")
    send(matrix, alice, room_id, "a")

    body = context(matrix, alice, room_id, middle, limit=2, filter={"lazy_load_members": True})
    senders = {e["sender"] for e in [*body["events_before"], body["event"], *body["events_after"]]}
    assert senders == {alice.user_id, bob.user_id, carol.user_id}
    assert {e["state_key"] for e in body["state"]} == senders
    assert {e["type"] for e in body["state"]} == {"m.room.member"}

    only_bob = context(matrix, alice, room_id, middle, limit=0, filter={"lazy_load_members": True})
    assert [e["state_key"] for e in only_bob["state"]] == [bob.user_id]


@pytest.mark.django_db
def test_context_errors(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice)
    other = create_room(matrix, alice)
    event_id = send(matrix, alice, room_id, "x")
    elsewhere = send(matrix, alice, other, "y")
    assert_matrix_error(context(matrix, alice, room_id, "$nope", expect=404), 404, "M_NOT_FOUND")
    assert_matrix_error(context(matrix, alice, room_id, elsewhere, expect=404), 404, "M_NOT_FOUND")
    assert_matrix_error(context(matrix, bob, room_id, event_id, expect=403), 403, "M_FORBIDDEN")
    assert_matrix_error(
        context(matrix, alice, room_id, event_id, expect=400, limit="x"), 400, "M_INVALID_PARAM"
    )
    assert_matrix_error(context(matrix, alice, room_id, event_id, expect=400, filter="{"), 400, "M_NOT_JSON")
    assert_matrix_error(
        context(matrix, alice, room_id, event_id, expect=400, filter={"limit": "x"}), 400, "M_BAD_JSON"
    )
    assert len(context(matrix, alice, room_id, event_id, limit=100000)["events_before"]) <= 50


# -- /event ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_get_one_event(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    event_id = send(matrix, alice, room_id, "hello")
    join(matrix, bob, room_id)
    path = f"rooms/{q(room_id)}/event/{q(event_id)}"
    mine = matrix.get(path, token=alice).json()
    assert mine["event_id"] == event_id and mine["content"]["body"] == "hello" and mine["room_id"] == room_id
    assert "transaction_id" in mine["unsigned"]
    theirs = matrix.get(path, token=bob).json()
    assert "transaction_id" not in theirs["unsigned"]
    assert matrix.get(path.replace("/v3/", "/r0/"), token=bob).status_code == 200
    assert MatrixClient("r0").get(path, token=bob).json()["event_id"] == event_id


@pytest.mark.django_db
def test_get_one_event_is_404_when_unknown_elsewhere_or_not_allowed(
    matrix: MatrixClient, alice: User, bob: User
) -> None:
    room_id = create_room(matrix, alice)
    other = create_room(matrix, alice)
    event_id = send(matrix, alice, room_id, "x")
    elsewhere = send(matrix, alice, other, "y")
    for user, rid, eid in (
        (alice, room_id, "$unknown"),
        (alice, room_id, elsewhere),
        (alice, "!nowhere:test.local", event_id),
        (bob, room_id, event_id),
    ):
        response = matrix.get(f"rooms/{q(rid)}/event/{q(eid)}", token=user, expect=404)
        assert_matrix_error(response, 404, "M_NOT_FOUND")


@pytest.mark.django_db
def test_get_one_event_shows_redactions(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    event_id = send(matrix, alice, room_id, "oops")
    matrix.put(f"rooms/{q(room_id)}/redact/{q(event_id)}/r1", {"reason": "typo"}, token=alice)
    body = matrix.get(f"rooms/{q(room_id)}/event/{q(event_id)}", token=alice).json()
    assert body["content"] == {}
    assert body["unsigned"]["redacted_because"]["content"]["reason"] == "typo"


# -- /timestamp_to_event --------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Events get the timestamps we set (events.actions stamps origin_server_ts with _now_ms)."""
    import events.actions

    state = {"now": 1_000}
    monkeypatch.setattr(events.actions, "_now_ms", lambda: state["now"])
    return state


@pytest.mark.django_db
def test_timestamp_to_event_finds_the_closest_event_in_each_direction(
    matrix: MatrixClient, alice: User, clock: Any
) -> None:
    room_id = create_room(matrix, alice)  # the room's setup events: all at t=1000
    stamped = {}
    for ts in (2_000, 3_000, 3_000, 4_000):
        clock["now"] = ts
        stamped.setdefault(ts, []).append(send(matrix, alice, room_id, f"t{ts}"))
    path = f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event"

    def find(ts: int, direction: str) -> str:
        body = matrix.get(path, token=alice, query={"ts": ts, "dir": direction}).json()
        assert body["origin_server_ts"] == Event.objects.get(event_id=body["event_id"]).origin_server_ts
        return body["event_id"]

    assert find(2_500, "f") == stamped[3_000][0]  # the first of a tie, forwards
    assert find(2_500, "b") == stamped[2_000][0]
    assert find(3_000, "f") == stamped[3_000][0]
    assert find(3_000, "b") == stamped[3_000][1]  # the last of a tie, backwards
    assert find(4_000, "f") == stamped[4_000][0]
    assert find(99_999, "b") == stamped[4_000][0]
    assert find(0, "f") == room_event_ids(room_id)[0]  # the create event
    assert find(1_000, "b") == room_event_ids(room_id)[len(room_event_ids(room_id)) - 5]
    for ts, direction in ((4_001, "f"), (999, "b")):
        response = matrix.get(path, token=alice, query={"ts": ts, "dir": direction}, expect=404)
        assert_matrix_error(response, 404, "M_NOT_FOUND")


@pytest.mark.django_db
def test_timestamp_to_event_parameters_and_access(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice)
    path = f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event"
    for query, errcode in (
        ({"dir": "f"}, "M_MISSING_PARAM"),
        ({"ts": "soon", "dir": "f"}, "M_INVALID_PARAM"),
        ({"ts": 1}, "M_MISSING_PARAM"),
        ({"ts": 1, "dir": "sideways"}, "M_INVALID_PARAM"),
    ):
        assert_matrix_error(matrix.get(path, token=alice, query=query, expect=400), 400, errcode)
    assert_matrix_error(
        matrix.get(path, token=bob, query={"ts": 1, "dir": "f"}, expect=403), 403, "M_FORBIDDEN"
    )
    # Only the v1 prefix (the spec defines it there only).
    v3 = f"rooms/{q(room_id)}/timestamp_to_event"
    assert_matrix_error(
        matrix.get(v3, token=alice, query={"ts": 1, "dir": "f"}, expect=404), 404, "M_UNRECOGNIZED"
    )


@pytest.mark.django_db
def test_timestamp_to_event_scans_past_many_invisible_events(
    matrix: MatrixClient, alice: User, bob: User
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat", visibility="joined")
    for i in range(120):
        send(matrix, alice, room_id, f"hidden{i}")
    join(matrix, bob, room_id)
    seen = send(matrix, alice, room_id, "seen")
    path = f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event"
    first_hidden = Event.objects.get(content__body="hidden0").origin_server_ts
    found = matrix.get(path, token=bob, query={"ts": first_hidden, "dir": "f"}).json()["event_id"]
    assert Event.objects.get(event_id=found).type == "m.room.member"
    after = itertools.dropwhile(lambda e: e != found, room_event_ids(room_id))
    assert seen in list(after)
