"""GET /rooms/{roomId}/messages through the real routes: paging, tokens, filters, errors, query count.

The helpers at the top are shared with test_context_api.py and test_history_visibility_api.py.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from events.models import Event
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.matrix_client import TestUser as User  # not "Test…": pytest would try to collect it

_txn = itertools.count()


# -- helpers (shared by the timeline API tests) ---------------------------------------------------


def create_room(matrix: MatrixClient, user: User, *, visibility: str | None = None, **body: Any) -> str:
    """A room made through POST /createRoom; ``visibility`` sets m.room.history_visibility first."""
    if visibility is not None:
        body.setdefault("initial_state", []).append(
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": visibility},
            }
        )
    return matrix.post("createRoom", body, token=user).json()["room_id"]


def send(matrix: MatrixClient, user: User, room_id: str, body: str | None = None, **content: Any) -> str:
    """An m.room.message (``body`` and any extra content); returns its event ID."""
    payload = {"msgtype": "m.text", "body": body or "hello", **content}
    path = f"rooms/{q(room_id)}/send/m.room.message/tl{next(_txn)}"
    return matrix.put(path, payload, token=user).json()["event_id"]


def send_event(
    matrix: MatrixClient, user: User, room_id: str, event_type: str, content: dict[str, Any]
) -> str:
    path = f"rooms/{q(room_id)}/send/{q(event_type)}/tl{next(_txn)}"
    return matrix.put(path, content, token=user).json()["event_id"]


def set_state(
    matrix: MatrixClient, user: User, room_id: str, event_type: str, content: dict[str, Any]
) -> str:
    return matrix.put(f"rooms/{q(room_id)}/state/{q(event_type)}", content, token=user).json()["event_id"]


def set_visibility(matrix: MatrixClient, user: User, room_id: str, visibility: str) -> str:
    return set_state(matrix, user, room_id, "m.room.history_visibility", {"history_visibility": visibility})


def invite(matrix: MatrixClient, inviter: User, room_id: str, invitee: User) -> None:
    matrix.post(f"rooms/{q(room_id)}/invite", {"user_id": invitee.user_id}, token=inviter)


def join(matrix: MatrixClient, user: User, room_id: str) -> None:
    matrix.post(f"rooms/{q(room_id)}/join", token=user)


def leave(matrix: MatrixClient, user: User, room_id: str) -> None:
    matrix.post(f"rooms/{q(room_id)}/leave", token=user)


def messages(matrix: MatrixClient, user: User, room_id: str, *, expect: int = 200, **query: Any) -> Any:
    """GET /messages (``dir`` defaults to b here; pass dir=None to leave it out). ``filter`` may be a dict."""
    query.setdefault("dir", "b")
    if isinstance(query.get("filter"), dict):
        query["filter"] = json.dumps(query["filter"])
    response = matrix.get(f"rooms/{q(room_id)}/messages", token=user, query=query, expect=expect)
    return response.json() if expect == 200 else response


def page_through(
    matrix: MatrixClient, user: User, room_id: str, *, max_pages: int = 200, **query: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow ``end`` until it is omitted: (every event in order, every response)."""
    events: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    for _ in range(max_pages):
        page = messages(matrix, user, room_id, **query)
        pages.append(page)
        events.extend(page["chunk"])
        if "end" not in page:
            return events, pages
        query["from"] = page["end"]
    raise AssertionError("pagination did not stop")


def room_event_ids(room_id: str, *, newest_first: bool = False) -> list[str]:
    """The oracle: every event of the room in stream order, straight from the table."""
    order = "-stream_pos" if newest_first else "stream_pos"
    return list(Event.objects.filter(room_id=room_id).order_by(order).values_list("event_id", flat=True))


def bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]


# -- paging ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("remainder", [0, 1, 6], ids=["multiple-of-limit", "one-over", "six-over"])
def test_paging_back_returns_every_event_once_and_stops_at_the_create_event(
    matrix: MatrixClient, alice: User, remainder: int
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    initial = len(room_event_ids(room_id))
    for i in range(63 - initial + remainder):  # 63 = 9 pages of 7, plus `remainder` events
        send(matrix, alice, room_id, f"m{i}")
    expected = room_event_ids(room_id, newest_first=True)
    assert len(expected) == 63 + remainder

    events, pages = page_through(matrix, alice, room_id, dir="b", limit=7)

    assert [e["event_id"] for e in events] == expected  # every event exactly once, newest first
    assert [e["type"] for e in events].count("m.room.create") == 1
    assert events[-1]["type"] == "m.room.create"
    assert all(len(p["chunk"]) == 7 for p in pages[:-1])
    assert len(pages) == -(-len(expected) // 7)  # no extra empty page after the one with the create
    assert pages[-1]["chunk"] and "end" not in pages[-1]
    assert all("end" in p for p in pages[:-1])
    for previous, page in itertools.pairwise(pages):
        assert page["start"] == previous["end"]


@pytest.mark.django_db
def test_paging_forward_from_the_start_returns_every_event_in_order(
    matrix: MatrixClient, alice: User
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    for i in range(20):
        send(matrix, alice, room_id, f"m{i}")
    events, pages = page_through(matrix, alice, room_id, dir="f", limit=6)
    assert [e["event_id"] for e in events] == room_event_ids(room_id)
    assert events[0]["type"] == "m.room.create"
    assert pages[0]["start"] == "s0"
    # Forwards, the page that reaches the newest event still has an end (to come back for newer
    # events later); the next page is empty and has none.
    assert pages[-1] == {"chunk": [], "start": pages[-2]["end"]}

    later = send(matrix, alice, room_id, "later")
    after = messages(matrix, alice, room_id, dir="f", **{"from": pages[-2]["end"]})
    assert [e["event_id"] for e in after["chunk"]] == [later]


@pytest.mark.django_db
def test_without_from_paging_back_starts_at_the_newest_event(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    ids = [send(matrix, alice, room_id, f"m{i}") for i in range(3)]
    page = messages(matrix, alice, room_id, limit=2)
    assert [e["event_id"] for e in page["chunk"]] == ids[:0:-1]
    assert page["start"].startswith("s") and page["end"].startswith("s")
    rest = messages(matrix, alice, room_id, limit=1, **{"from": page["end"]})
    assert [e["event_id"] for e in rest["chunk"]] == [ids[0]]


@pytest.mark.django_db
def test_a_from_token_excludes_events_sent_after_it(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    first = send(matrix, alice, room_id, "first")
    token = messages(matrix, alice, room_id, limit=1)["start"]  # s<head>: right after "first"
    send(matrix, alice, room_id, "second")
    page = messages(matrix, alice, room_id, limit=1, **{"from": token})
    assert page["start"] == token
    assert [e["event_id"] for e in page["chunk"]] == [first]


@pytest.mark.django_db
def test_to_bounds_the_range_in_both_directions(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    send(matrix, alice, room_id, "old")
    middle = messages(matrix, alice, room_id, limit=1)["start"]
    new = [send(matrix, alice, room_id, f"new{i}") for i in range(5)]

    back, pages = page_through(matrix, alice, room_id, dir="b", limit=2, to=middle)
    assert [e["event_id"] for e in back] == new[::-1]
    assert "end" not in pages[-1]

    forward, _ = page_through(matrix, alice, room_id, dir="f", limit=3, to=middle)
    assert [e["event_id"] for e in forward] == room_event_ids(room_id)[: -len(new)]
    assert bodies(forward)[-1] == "old"

    assert messages(matrix, alice, room_id, dir="f", limit=3, to=middle, **{"from": middle})["chunk"] == []


@pytest.mark.django_db
def test_tokens_beyond_the_stream_head_are_clamped(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    last = send(matrix, alice, room_id, "last")
    page = messages(matrix, alice, room_id, limit=1, **{"from": "s99999999999"})
    assert [e["event_id"] for e in page["chunk"]] == [last]
    assert messages(matrix, alice, room_id, dir="f", **{"from": "s99999999999"}) == {
        "chunk": [],
        "start": "s99999999999",
    }


@pytest.mark.django_db
def test_limit_defaults_to_ten_and_is_capped(matrix: MatrixClient, alice: User) -> None:
    room_id = create_room(matrix, alice)
    for i in range(12):
        send(matrix, alice, room_id, f"m{i}")
    assert len(messages(matrix, alice, room_id)["chunk"]) == 10
    assert len(messages(matrix, alice, room_id, filter={"limit": 3})["chunk"]) == 3
    assert len(messages(matrix, alice, room_id, limit=4, filter={"limit": 3})["chunk"]) == 4
    everything = messages(matrix, alice, room_id, limit=100000)
    assert len(everything["chunk"]) == len(room_event_ids(room_id)) and "end" not in everything
    empty = messages(matrix, alice, room_id, limit=0)
    assert empty["chunk"] == [] and "end" in empty


@pytest.mark.django_db
def test_transaction_id_is_shown_to_the_sending_device_only(
    matrix: MatrixClient, alice: User, bob: User
) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "hi")
    mine = messages(matrix, alice, room_id, limit=1)["chunk"][0]
    theirs = messages(matrix, bob, room_id, limit=1)["chunk"][0]
    assert mine["unsigned"]["transaction_id"].startswith("tl")
    assert "transaction_id" not in theirs["unsigned"]
    assert mine["room_id"] == room_id and mine["sender"] == alice.user_id


@pytest.mark.django_db
def test_messages_answers_on_the_r0_prefix(alice: User) -> None:
    r0 = MatrixClient("r0")
    room_id = create_room(r0, alice)
    send(r0, alice, room_id, "legacy")
    assert bodies(messages(r0, alice, room_id)["chunk"]) == ["legacy"]


# -- filters --------------------------------------------------------------------------------------


@pytest.fixture
def busy_room(matrix: MatrixClient, alice: User, bob: User) -> str:
    room_id = create_room(matrix, alice, preset="public_chat", name="Busy")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "a-text")
    send(matrix, bob, room_id, "b-image", msgtype="m.image", url="mxc://test.local/img")
    send_event(matrix, alice, room_id, "com.example.custom", {"body": "custom"})
    send(matrix, bob, room_id, "b-text")
    send(matrix, alice, room_id, "a-bad-url", url=5)
    set_state(matrix, alice, room_id, "m.room.topic", {"topic": "t"})
    return room_id


def _all(
    matrix: MatrixClient, user: User, room_id: str, event_filter: dict[str, Any]
) -> list[dict[str, Any]]:
    events, _ = page_through(matrix, user, room_id, dir="f", limit=2, filter=event_filter)
    return events


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("event_filter", "expected_types"),
    [
        pytest.param({"types": ["m.room.message"]}, ["m.room.message"] * 4, id="types-exact"),
        pytest.param(
            {"types": ["m.room.m*"]},
            [
                "m.room.member",
                "m.room.member",
                "m.room.message",
                "m.room.message",
                "m.room.message",
                "m.room.message",
            ],
            id="types-trailing-wildcard",
        ),
        pytest.param({"types": ["*.custom"]}, ["com.example.custom"], id="types-leading-wildcard"),
        pytest.param({"types": ["m.*.t*c"]}, ["m.room.topic"], id="types-inner-wildcards"),
        pytest.param(
            {"types": ["m.room.message", "m.room.topic"]},
            ["m.room.message"] * 4 + ["m.room.topic"],
            id="types-several",
        ),
        pytest.param({"types": []}, [], id="types-empty"),
        pytest.param(
            {"types": ["*"], "not_types": ["m.room.*"]}, ["com.example.custom"], id="not-types-wildcard"
        ),
        pytest.param({"not_types": ["*"]}, [], id="not-types-everything"),
        pytest.param({"types": ["m.room.message"], "not_types": ["m.room.message"]}, [], id="not-types-wins"),
    ],
)
def test_type_filters(
    matrix: MatrixClient, alice: User, busy_room: str, event_filter: dict[str, Any], expected_types: list[str]
) -> None:
    events = _all(matrix, alice, busy_room, event_filter)
    if event_filter.get("types") == ["m.room.m*"]:
        events = [e for e in events if e["type"] != "m.room.member" or e["state_key"] == e["sender"]]
    assert [e["type"] for e in events] == expected_types


@pytest.mark.django_db
def test_not_types_alone_drops_only_those_types(matrix: MatrixClient, alice: User, busy_room: str) -> None:
    events = _all(matrix, alice, busy_room, {"not_types": ["m.room.message", "m.room.member"]})
    types = [e["type"] for e in events]
    assert "m.room.message" not in types and "m.room.member" not in types
    assert types[0] == "m.room.create" and "com.example.custom" in types and types[-1] == "m.room.topic"


@pytest.mark.django_db
def test_sender_filters(matrix: MatrixClient, alice: User, bob: User, busy_room: str) -> None:
    assert bodies(_all(matrix, alice, busy_room, {"senders": [bob.user_id]})) == ["b-image", "b-text"]
    assert {e["sender"] for e in _all(matrix, alice, busy_room, {"senders": [bob.user_id]})} == {bob.user_id}
    assert bodies(_all(matrix, alice, busy_room, {"not_senders": [bob.user_id]})) == ["a-text", "a-bad-url"]
    assert _all(matrix, alice, busy_room, {"senders": [bob.user_id], "not_senders": [bob.user_id]}) == []
    assert _all(matrix, alice, busy_room, {"senders": []}) == []


@pytest.mark.django_db
def test_contains_url_filter(matrix: MatrixClient, alice: User, busy_room: str) -> None:
    assert bodies(_all(matrix, alice, busy_room, {"contains_url": True})) == ["b-image"]
    unfiltered = _all(matrix, alice, busy_room, {})
    without = _all(matrix, alice, busy_room, {"contains_url": False})
    assert bodies(without) == ["a-text", "b-text", "a-bad-url"]  # url: 5 is not a URL
    assert len(without) == len(unfiltered) - 1


@pytest.mark.django_db
def test_room_filters_apply_to_the_room_itself(matrix: MatrixClient, alice: User, busy_room: str) -> None:
    assert _all(matrix, alice, busy_room, {"not_rooms": [busy_room]}) == []
    assert _all(matrix, alice, busy_room, {"rooms": ["!elsewhere:test.local"]}) == []
    assert bodies(_all(matrix, alice, busy_room, {"rooms": [busy_room], "types": ["m.room.message"]}))


@pytest.mark.django_db
def test_filters_combine_with_paging_back(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    join(matrix, bob, room_id)
    expected = []
    for i in range(30):
        send(matrix, alice, room_id, f"a{i}")
        if i % 3 == 0:
            send(matrix, bob, room_id, f"b{i}")
            expected.append(f"b{i}")
    events, pages = page_through(matrix, alice, room_id, dir="b", limit=4, filter={"senders": [bob.user_id]})
    assert bodies(events) == expected[::-1]
    assert events[-1]["type"] == "m.room.member"  # bob's join: he sent it too
    assert [len(p["chunk"]) for p in pages] == [4, 4, 3]
    assert "end" not in pages[-1]


@pytest.mark.django_db
def test_lazy_load_members_returns_the_member_events_of_the_chunk_senders(
    matrix: MatrixClient, alice: User, bob: User, make_user: Any
) -> None:
    carol = make_user("carol")
    room_id = create_room(matrix, alice, preset="public_chat")
    for user in (bob, carol):
        join(matrix, user, room_id)
    send(matrix, carol, room_id, "c1")
    send(matrix, bob, room_id, "b1")
    send(matrix, alice, room_id, "a1")

    page = messages(matrix, alice, room_id, limit=2, filter={"lazy_load_members": True})
    assert {e["sender"] for e in page["chunk"]} == {alice.user_id, bob.user_id}
    assert sorted(e["state_key"] for e in page["state"]) == sorted([alice.user_id, bob.user_id])
    assert all(e["type"] == "m.room.member" and e["content"]["membership"] == "join" for e in page["state"])

    with_redundant = messages(
        matrix, alice, room_id, limit=2, filter={"lazy_load_members": True, "include_redundant_members": True}
    )
    assert len(with_redundant["state"]) == 2
    assert "state" not in messages(matrix, alice, room_id, limit=2)
    empty = messages(matrix, alice, room_id, filter={"lazy_load_members": True, "types": []})
    assert empty["chunk"] == [] and "state" not in empty


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "status", "errcode"),
    [
        pytest.param({"dir": None}, 400, "M_MISSING_PARAM", id="dir-missing"),
        pytest.param({"dir": "x"}, 400, "M_INVALID_PARAM", id="dir-invalid"),
        pytest.param({"dir": "B"}, 400, "M_INVALID_PARAM", id="dir-case"),
        pytest.param({"from": "t123"}, 400, "M_INVALID_PARAM", id="from-not-a-token"),
        pytest.param({"from": "s-1"}, 400, "M_INVALID_PARAM", id="from-negative"),
        pytest.param({"to": "nonsense"}, 400, "M_INVALID_PARAM", id="to-not-a-token"),
        pytest.param({"limit": "ten"}, 400, "M_INVALID_PARAM", id="limit-not-int"),
        pytest.param({"limit": "-1"}, 400, "M_INVALID_PARAM", id="limit-negative"),
        pytest.param({"filter": "{not json"}, 400, "M_NOT_JSON", id="filter-not-json"),
        pytest.param({"filter": "[]"}, 400, "M_BAD_JSON", id="filter-not-object"),
        pytest.param({"filter": {"types": "m.room.message"}}, 400, "M_BAD_JSON", id="filter-types-string"),
        pytest.param({"filter": {"contains_url": "yes"}}, 400, "M_BAD_JSON", id="filter-bool-string"),
        pytest.param({"filter": {"senders": ["nobody"]}}, 400, "M_INVALID_PARAM", id="filter-sender-not-id"),
    ],
)
def test_bad_parameters(
    matrix: MatrixClient, alice: User, query: dict[str, Any], status: int, errcode: str
) -> None:
    room_id = create_room(matrix, alice)
    assert_matrix_error(messages(matrix, alice, room_id, expect=status, **query), status, errcode)


@pytest.mark.django_db
def test_strangers_and_unknown_rooms_are_forbidden(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    assert_matrix_error(messages(matrix, bob, room_id, expect=403), 403, "M_FORBIDDEN")
    assert_matrix_error(messages(matrix, bob, "!nowhere:test.local", expect=403), 403, "M_FORBIDDEN")
    response = matrix.get(f"rooms/{q(room_id)}/messages", query={"dir": "b"}, expect=401)
    assert_matrix_error(response, 401, "M_MISSING_TOKEN")
    assert_matrix_error(
        matrix.post(f"rooms/{q(room_id)}/messages", {}, token=alice, expect=405), 405, "M_UNRECOGNIZED"
    )


@pytest.mark.django_db
def test_a_forgotten_room_is_forbidden(matrix: MatrixClient, alice: User, bob: User) -> None:
    room_id = create_room(matrix, alice, preset="public_chat")
    join(matrix, bob, room_id)
    send(matrix, alice, room_id, "seen")
    leave(matrix, bob, room_id)
    assert bodies(messages(matrix, bob, room_id)["chunk"]) == ["seen"]
    matrix.post(f"rooms/{q(room_id)}/forget", token=bob)
    assert_matrix_error(messages(matrix, bob, room_id, expect=403), 403, "M_FORBIDDEN")


# -- query count ----------------------------------------------------------------------------------


def _populate(
    matrix: MatrixClient,
    owner: User,
    members: list[User],
    messages_per_member: int,
    visibility: str = "shared",
) -> str:
    room_id = create_room(matrix, owner, preset="public_chat", visibility=visibility)
    for member in members:
        join(matrix, member, room_id)
    for i in range(messages_per_member):
        for member in [owner, *members]:
            send(matrix, member, room_id, f"{member.user_id} {i}")
    return room_id


@pytest.mark.django_db
def test_messages_uses_a_constant_number_of_queries(
    matrix: MatrixClient, alice: User, make_user: Any, django_assert_max_num_queries: Any
) -> None:
    """The bound holds for limit 5 and 50, small and large rooms, lazy loading on or off, and for a
    member who joined late in a joined-only room (so most rows are skipped as invisible)."""
    members = [make_user(f"member{i}") for i in range(15)]
    small = _populate(matrix, alice, members[:2], 3)
    large = _populate(matrix, alice, members, 8, visibility="joined")
    late = make_user("latecomer")
    join(matrix, late, large)
    send(matrix, alice, large, "visible")

    # auth 1, room 1, membership 1, head 1, ignored users 1, membership history 1, page 1, lazy state 2
    bound = 9
    for user, room_id in ((alice, small), (alice, large), (members[3], large)):
        for limit in (5, 50):
            for lazy in (False, True):
                with django_assert_max_num_queries(bound):
                    page = messages(matrix, user, room_id, limit=limit, filter={"lazy_load_members": lazy})
                assert page["chunk"]
    with django_assert_max_num_queries(bound):
        page = messages(matrix, late, large, limit=50, filter={"lazy_load_members": True})
    assert bodies(page["chunk"]) == ["visible"]
    assert "end" not in page  # the rest is the room's setup, from before the visibility was set
