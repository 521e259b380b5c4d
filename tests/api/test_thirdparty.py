"""Third-party network lookups (spec third_party_lookup.yaml). Protocols come from bridges
(application services); none is configured here, and the answers say so: no protocols, 404
``M_NOT_FOUND`` for any named protocol, no third-party location or user for any alias or user ID."""

from __future__ import annotations

import pytest

from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error, q

pytestmark = pytest.mark.django_db


def test_no_protocols(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    assert any_prefix_client.get("thirdparty/protocols", token=alice).json() == {}


@pytest.mark.parametrize(
    "path", ["thirdparty/protocol/irc", "thirdparty/location/irc", "thirdparty/user/irc"]
)
def test_a_named_protocol_is_unknown(any_prefix_client: MatrixClient, alice: TestUser, path: str) -> None:
    resp = any_prefix_client.get(path, token=alice, query={"network": "libera.chat"}, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")


def test_reverse_lookups_find_nothing(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    matrix = any_prefix_client
    room_id = matrix.create_room(alice, room_alias_name="bridged")
    assert room_id
    assert matrix.get("thirdparty/location", token=alice, query={"alias": "#bridged:test.local"}).json() == []
    assert matrix.get("thirdparty/user", token=alice, query={"userid": bob.user_id}).json() == []


@pytest.mark.parametrize(("path", "param"), [("thirdparty/location", "alias"), ("thirdparty/user", "userid")])
def test_reverse_lookups_need_their_parameter(
    matrix: MatrixClient, alice: TestUser, path: str, param: str
) -> None:
    body = assert_matrix_error(matrix.get(path, token=alice, expect=None), 400, "M_MISSING_PARAM")
    assert param in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "thirdparty/protocols",
        "thirdparty/protocol/irc",
        "thirdparty/location/irc",
        "thirdparty/user/irc",
        "thirdparty/location?alias=%23a%3Atest.local",
        "thirdparty/user?userid=%40a%3Atest.local",
    ],
)
def test_lookups_need_a_token(matrix: MatrixClient, path: str) -> None:
    assert_matrix_error(matrix.get(path, expect=None), 401, "M_MISSING_TOKEN")


def test_a_protocol_with_reserved_characters_is_routed(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.get(f"thirdparty/protocol/{q('my protocol')}", token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")


def test_wrong_method_is_405(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.post("thirdparty/protocols", {}, token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
