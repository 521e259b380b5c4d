"""Query pins (DESIGN.md 4.10): a write or a listing costs the same number of queries whatever the
size of the room or of the directory, so an N+1 (over members, over rooms) fails here.

Measured (inside the test's transaction a request's atomic block is a SAVEPOINT/RELEASE pair, both
counted; PostgreSQL sends each of the write path's batches, ``matrixsrv.rawsql.run_batch``, as one
statement, SQLite runs their statements one by one):

* PUT /send: 5 on PostgreSQL — token (with the sender's presence row, which the send may update:
  sending is pro-active, a write only every 30 s), savepoint, one batch for the room lock, the auth
  state and the joined members with their push rules, one batch for the stream position, the event,
  the room tip and their notifications, release. On SQLite 10 (the batches' 4 and 4 statements).
  (Waking members costs no query: events/notify.py names the room.) A retransmission: 7 and 10 (the
  new event is refused by the unique (device, txn_id) index, then the first one is looked up).
* PUT /state: 7 on PostgreSQL (the current state row on top), 10 on SQLite.
* POST /join: 14, /leave: 13 (the member row and the user's pk on top).
* POST /createRoom with an empty body: 45 (six events of ~6 queries each, plus the room row); with
  alias, name, topic, one invite and publication: 78.
* GET /members, /joined_members, /state, /joined_rooms, /publicRooms: at most 6.

A device's first request also records it as seen (one UPDATE), so the counted requests come from
users who made a request before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection

from tests.matrix_client import MatrixClient, q
from tests.rooms_helpers import joined_room_with

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db

POSTGRES = connection.vendor == "postgresql"
SEND_QUERIES = 5 if POSTGRES else 10
SEND_REPLAY_QUERIES = 7 if POSTGRES else 10
STATE_SEND_QUERIES = 7 if POSTGRES else 10
JOIN_QUERIES = 14
CREATE_ROOM_QUERIES = 45
CREATE_ROOM_FULL_QUERIES = 78
LIST_QUERIES = 6


@pytest.fixture(params=[2, 20], ids=["2-members", "20-members"])
def room_of(
    request: pytest.FixtureRequest, matrix: MatrixClient, alice: TestUser, make_user
) -> tuple[str, list]:
    members = [make_user() for _ in range(request.param - 1)]
    room_id = joined_room_with(matrix, alice, *members)
    matrix.send_text(alice, room_id, "warm up")
    return room_id, members


def test_send_queries_do_not_grow_with_members(
    matrix: MatrixClient, alice: TestUser, room_of: tuple[str, list], django_assert_max_num_queries: Any
) -> None:
    room_id, _ = room_of
    with django_assert_max_num_queries(SEND_QUERIES):
        matrix.send(alice, room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"}, txn_id="counted")


def test_send_replay_queries(
    matrix: MatrixClient, alice: TestUser, room_of: tuple[str, list], django_assert_max_num_queries: Any
) -> None:
    room_id, _ = room_of
    matrix.send(alice, room_id, "m.room.message", {"body": "hi"}, txn_id="again")
    with django_assert_max_num_queries(SEND_REPLAY_QUERIES):
        matrix.send(alice, room_id, "m.room.message", {"body": "hi"}, txn_id="again")


def test_state_send_queries_do_not_grow_with_members(
    matrix: MatrixClient, alice: TestUser, room_of: tuple[str, list], django_assert_max_num_queries: Any
) -> None:
    room_id, _ = room_of
    with django_assert_max_num_queries(STATE_SEND_QUERIES):
        matrix.send_state(alice, room_id, "m.room.topic", {"topic": "counted"})


def test_join_and_leave_queries_do_not_grow_with_members(
    matrix: MatrixClient, room_of: tuple[str, list], make_user, django_assert_max_num_queries: Any
) -> None:
    room_id, _ = room_of
    newcomer = make_user()
    matrix.whoami(newcomer)  # the device's first request records it as seen (one more UPDATE)
    with django_assert_max_num_queries(JOIN_QUERIES):
        matrix.join(newcomer, room_id)
    with django_assert_max_num_queries(JOIN_QUERIES):
        matrix.leave(newcomer, room_id)


def test_member_lists_do_not_grow_with_members(
    matrix: MatrixClient, alice: TestUser, room_of: tuple[str, list], django_assert_max_num_queries: Any
) -> None:
    room_id, members = room_of
    with django_assert_max_num_queries(LIST_QUERIES):
        assert len(matrix.get(f"rooms/{q(room_id)}/members", token=alice).json()["chunk"]) == len(members) + 1
    with django_assert_max_num_queries(LIST_QUERIES):
        joined = matrix.get(f"rooms/{q(room_id)}/joined_members", token=alice).json()["joined"]
        assert len(joined) == len(members) + 1
    with django_assert_max_num_queries(LIST_QUERIES):
        matrix.get(f"rooms/{q(room_id)}/state", token=alice)
    # A former member reads the members at their leave.
    matrix.leave(members[0], room_id)
    with django_assert_max_num_queries(LIST_QUERIES):
        matrix.get(f"rooms/{q(room_id)}/members", token=members[0], query={"membership": "join"})


def test_create_room_queries(
    matrix: MatrixClient, alice: TestUser, django_assert_max_num_queries: Any
) -> None:
    matrix.create_room(alice)  # warm up
    with django_assert_max_num_queries(CREATE_ROOM_QUERIES):
        matrix.create_room(alice)


def test_create_room_with_everything_queries(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, django_assert_max_num_queries: Any
) -> None:
    matrix.whoami(alice)
    with django_assert_max_num_queries(CREATE_ROOM_FULL_QUERIES):
        matrix.create_room(
            alice,
            preset="public_chat",
            room_alias_name="full",
            name="n",
            topic="t",
            invite=[bob.user_id],
            visibility="public",
        )


@pytest.mark.parametrize("n_rooms", [1, 20])
def test_public_rooms_and_joined_rooms_do_not_grow_with_rooms(
    matrix: MatrixClient, alice: TestUser, n_rooms: int, django_assert_max_num_queries: Any
) -> None:
    for _ in range(n_rooms):
        matrix.create_room(alice, visibility="public")
    with django_assert_max_num_queries(LIST_QUERIES):
        assert len(matrix.get("publicRooms").json()["chunk"]) == n_rooms
    with django_assert_max_num_queries(LIST_QUERIES):
        matrix.post("publicRooms", {"limit": 5, "filter": {"generic_search_term": "x"}}, token=alice)
    with django_assert_max_num_queries(LIST_QUERIES):
        assert len(matrix.get("joined_rooms", token=alice).json()["joined_rooms"]) == n_rooms
