"""POST /user_directory/search through the real routes: who is visible (shared rooms, public rooms),
case-insensitive matching on the user ID and the display name, limits, errors, bounded queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from accounts.actions import deactivate_user
from accounts.models import User
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db


def _search(matrix: MatrixClient, user: TestUser, term: Any, expect: int | None = 200, **body: Any) -> Any:
    resp = matrix.post("user_directory/search", {"search_term": term, **body}, token=user, expect=expect)
    return resp.json() if expect == 200 else resp


def _ids(body: dict[str, Any]) -> list[str]:
    return [r["user_id"] for r in body["results"]]


@pytest.fixture
def carol(make_user) -> TestUser:
    return make_user("carol")


@pytest.fixture
def dave(make_user) -> TestUser:
    return make_user("dave")


def test_finds_users_sharing_a_private_room_and_users_in_public_rooms(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser, dave: TestUser
) -> None:
    matrix = any_prefix_client
    private = matrix.create_room(alice, preset="private_chat", invite=[bob.user_id])
    matrix.join(bob, private)
    matrix.create_room(carol, preset="public_chat")  # carol sits in a public room
    dave_private = matrix.create_room(dave, preset="private_chat")  # dave shares nothing with alice
    assert dave_private
    body = _search(matrix, alice, "")
    assert body == {"results": [], "limited": False}
    for term, expected in (("bob", [bob.user_id]), ("carol", [carol.user_id]), ("dave", [])):
        assert _ids(_search(matrix, alice, term)) == expected, term


def test_matches_display_name_and_user_id_case_insensitively(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    room_id = joined_room_with(matrix, alice, bob, carol)
    matrix.put(f"profile/{q(bob.user_id)}/displayname", {"displayname": "Robert Tables"}, token=bob)
    matrix.put(f"profile/{q(bob.user_id)}/avatar_url", {"avatar_url": "mxc://test.local/bobby"}, token=bob)
    assert room_id
    assert _search(matrix, alice, "TABLES")["results"] == [
        {"user_id": bob.user_id, "display_name": "Robert Tables", "avatar_url": "mxc://test.local/bobby"}
    ]
    assert _ids(_search(matrix, alice, "CaRoL")) == [carol.user_id]
    assert _ids(_search(matrix, alice, "test.local")) == sorted([alice.user_id, bob.user_id, carol.user_id])
    assert _search(matrix, alice, "nobody-matches") == {"results": [], "limited": False}
    # Wildcards are literal text, not patterns.
    assert _search(matrix, alice, "%")["results"] == []


def test_users_who_left_and_deactivated_users_are_not_found(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, carol: TestUser
) -> None:
    private = matrix.create_room(alice, preset="private_chat", invite=[bob.user_id, carol.user_id])
    matrix.join(bob, private)
    matrix.join(carol, private)
    matrix.leave(bob, private)
    deactivate_user(user=User.objects.get(mxid=carol.user_id))
    assert _ids(_search(matrix, alice, "bob")) == []
    assert _ids(_search(matrix, alice, "carol")) == []


def test_limit_truncates_and_says_so(matrix: MatrixClient, alice: TestUser, make_user) -> None:
    others = [make_user(f"member{i}") for i in range(4)]
    joined_room_with(matrix, alice, *others)
    body = _search(matrix, alice, "member", limit=2)
    assert body["limited"] is True
    assert _ids(body) == [others[0].user_id, others[1].user_id]
    body = _search(matrix, alice, "member", limit=4)
    assert body["limited"] is False and len(body["results"]) == 4
    assert _search(matrix, alice, "member", limit=0) == {"results": [], "limited": True}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({}, "M_MISSING_PARAM"),
        ({"search_term": 5}, "M_BAD_JSON"),
        ({"search_term": "a", "limit": "10"}, "M_BAD_JSON"),
        ({"search_term": "a", "limit": -1}, "M_BAD_JSON"),
        ({"search_term": "a", "limit": True}, "M_BAD_JSON"),
    ],
)
def test_bad_requests(matrix: MatrixClient, alice: TestUser, body: dict[str, Any], errcode: str) -> None:
    assert_matrix_error(matrix.post("user_directory/search", body, token=alice, expect=None), 400, errcode)


def test_needs_a_token(matrix: MatrixClient) -> None:
    resp = matrix.post("user_directory/search", {"search_term": "a"}, expect=None)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


def test_search_is_one_query_whatever_the_number_of_rooms(
    matrix: MatrixClient, alice: TestUser, make_user, django_assert_max_num_queries: Any
) -> None:
    for i in range(5):
        joined_room_with(matrix, alice, make_user(f"friend{i}"))
        matrix.create_room(make_user(f"stranger{i}"), preset="public_chat")
    with django_assert_max_num_queries(4):  # token, device bookkeeping, the search
        body = _search(matrix, alice, "r", limit=50)  # friendN and strangerN, not alice
    assert len(body["results"]) == 10
