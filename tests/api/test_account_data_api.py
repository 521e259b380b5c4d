"""Account data and room tags through the real routes (spec "Client Config", "Room Tagging"), on both
the /v3/ and the legacy /r0/ prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from accounts.models import AccountData, User
from tests.matrix_client import MatrixClient, assert_matrix_error, q

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

pytestmark = pytest.mark.django_db

ROOM = "!someroom:test.local"


def data_path(user: TestUser, type: str, room_id: str | None = None) -> str:
    if room_id is None:
        return f"user/{q(user.user_id)}/account_data/{q(type)}"
    return f"user/{q(user.user_id)}/rooms/{q(room_id)}/account_data/{q(type)}"


def tags_path(user: TestUser, room_id: str, tag: str | None = None) -> str:
    path = f"user/{q(user.user_id)}/rooms/{q(room_id)}/tags"
    return path if tag is None else f"{path}/{q(tag)}"


# -- global and room account data ------------------------------------------------------------------


def test_global_account_data_round_trips_on_both_prefixes(
    any_prefix_client: MatrixClient, alice: TestUser
) -> None:
    m = any_prefix_client
    assert m.put(data_path(alice, "org.example.config"), {"a": 1}, token=alice).json() == {}
    assert m.get(data_path(alice, "org.example.config"), token=alice).json() == {"a": 1}
    m.put(data_path(alice, "org.example.config"), {"b": [2]}, token=alice)  # replaces, no merge
    assert m.get(data_path(alice, "org.example.config"), token=alice).json() == {"b": [2]}


def test_room_account_data_round_trips_and_is_separate_from_global(
    any_prefix_client: MatrixClient, alice: TestUser
) -> None:
    m = any_prefix_client
    m.put(data_path(alice, "org.example.t", ROOM), {"room": True}, token=alice)
    assert m.get(data_path(alice, "org.example.t", ROOM), token=alice).json() == {"room": True}
    # No inheritance either way (spec: no fallback from room to global data of the same type).
    assert_matrix_error(
        m.get(data_path(alice, "org.example.t"), token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    m.put(data_path(alice, "org.example.t"), {"global": True}, token=alice)
    assert m.get(data_path(alice, "org.example.t", ROOM), token=alice).json() == {"room": True}
    assert m.get(data_path(alice, "org.example.t", "!other:test.local"), token=alice, expect=404)
    assert AccountData.objects.filter(type="org.example.t").count() == 2


def test_unknown_type_is_404(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(
        matrix.get(data_path(alice, "org.example.none"), token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    resp = matrix.get(data_path(alice, "org.example.none", ROOM), token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")


def test_account_data_is_per_user(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    matrix.put(data_path(alice, "org.example.x"), {"owner": "alice"}, token=alice)
    matrix.get(data_path(bob, "org.example.x"), token=bob, expect=404)


@pytest.mark.parametrize("room", [None, ROOM])
def test_other_users_account_data_is_forbidden(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str | None
) -> None:
    matrix.put(data_path(alice, "org.example.x", room), {"secret": 1}, token=alice)
    resp = matrix.get(data_path(alice, "org.example.x", room), token=bob, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    resp = matrix.put(data_path(alice, "org.example.x", room), {"secret": 2}, token=bob, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert matrix.get(data_path(alice, "org.example.x", room), token=alice).json() == {"secret": 1}


def test_tags_of_other_users_are_forbidden(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    assert_matrix_error(matrix.get(tags_path(alice, ROOM), token=bob, expect=None), 403, "M_FORBIDDEN")
    resp = matrix.put(tags_path(alice, ROOM, "u.x"), {}, token=bob, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    resp = matrix.delete(tags_path(alice, ROOM, "u.x"), token=bob, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


@pytest.mark.parametrize("room", [None, ROOM])
@pytest.mark.parametrize("type", ["m.fully_read", "m.push_rules"])
def test_server_managed_types_cannot_be_set(
    matrix: MatrixClient, alice: TestUser, type: str, room: str | None
) -> None:
    resp = matrix.put(data_path(alice, type, room), {"event_id": "$x"}, token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_BAD_JSON")
    assert not AccountData.objects.exists()


@pytest.mark.parametrize(
    ("raw", "errcode"), [(b"[1, 2]", "M_BAD_JSON"), (b'"text"', "M_BAD_JSON"), (b"{nope", "M_NOT_JSON")]
)
@pytest.mark.parametrize("room", [None, ROOM])
def test_body_must_be_a_json_object(
    matrix: MatrixClient, alice: TestUser, raw: bytes, errcode: str, room: str | None
) -> None:
    resp = matrix.request("PUT", data_path(alice, "org.example.x", room), raw=raw, token=alice, expect=None)
    assert_matrix_error(resp, 400, errcode)
    resp = matrix.request("PUT", tags_path(alice, ROOM, "u.work"), raw=raw, token=alice, expect=None)
    assert_matrix_error(resp, 400, errcode)


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_invalid_room_id_is_400(matrix: MatrixClient, alice: TestUser, method: str) -> None:
    resp = matrix.request(
        method, data_path(alice, "org.example.x", "not-a-room"), {}, token=alice, expect=None
    )
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    resp = matrix.request(method, tags_path(alice, "#alias:test.local"), {}, token=alice, expect=None)
    if method == "GET":
        assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    else:
        assert_matrix_error(resp, 405, "M_UNRECOGNIZED")  # PUT .../tags: no such operation


def test_needs_an_access_token(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(matrix.get(data_path(alice, "org.example.x"), expect=None), 401, "M_MISSING_TOKEN")
    assert_matrix_error(matrix.put(tags_path(alice, ROOM, "u.x"), {}, expect=None), 401, "M_MISSING_TOKEN")


def test_wrong_method_is_405(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.delete(data_path(alice, "org.example.x"), token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
    resp = matrix.post(tags_path(alice, ROOM), {}, token=alice, expect=None)
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")


def test_overlong_type_is_rejected(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.put(data_path(alice, "x" * 256), {}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")


# -- tags ------------------------------------------------------------------------------------------


def test_tags_round_trip_on_both_prefixes(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    m = any_prefix_client
    assert m.get(tags_path(alice, ROOM), token=alice).json() == {"tags": {}}
    assert m.put(tags_path(alice, ROOM, "m.favourite"), {"order": 0.25}, token=alice).json() == {}
    m.put(tags_path(alice, ROOM, "u.work"), {}, token=alice)
    assert m.get(tags_path(alice, ROOM), token=alice).json() == {
        "tags": {"m.favourite": {"order": 0.25}, "u.work": {}}
    }
    m.put(tags_path(alice, ROOM, "m.favourite"), {"order": 1}, token=alice)  # replaces the tag
    assert m.delete(tags_path(alice, ROOM, "u.work"), token=alice).json() == {}
    assert m.get(tags_path(alice, ROOM), token=alice).json() == {"tags": {"m.favourite": {"order": 1}}}
    # Tags are the room's m.tag account data.
    assert m.get(data_path(alice, "m.tag", ROOM), token=alice).json() == {
        "tags": {"m.favourite": {"order": 1}}
    }


def test_deleting_a_missing_tag_is_ok_and_writes_nothing(matrix: MatrixClient, alice: TestUser) -> None:
    assert matrix.delete(tags_path(alice, ROOM, "u.none"), token=alice).json() == {}
    assert not AccountData.objects.exists()


def test_tags_are_per_room(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.put(tags_path(alice, ROOM, "u.a"), {}, token=alice)
    assert matrix.get(tags_path(alice, "!other:test.local"), token=alice).json() == {"tags": {}}


@pytest.mark.parametrize("order", ["high", True, [1]])
def test_tag_order_must_be_a_number(matrix: MatrixClient, alice: TestUser, order: Any) -> None:
    resp = matrix.put(tags_path(alice, ROOM, "u.a"), {"order": order}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")


# -- m.direct, m.ignored_user_list ----------------------------------------------------------------


def test_m_direct_round_trips(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    content = {bob.user_id: [ROOM, "!two:test.local"]}
    matrix.put(data_path(alice, "m.direct"), content, token=alice)
    assert matrix.get(data_path(alice, "m.direct"), token=alice).json() == content


def test_writes_advance_the_stream_and_notify_the_user(
    matrix: MatrixClient,
    alice: TestUser,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from events import notify

    published: list[tuple[int, list[str], list[int]]] = []
    monkeypatch.setattr(
        notify, "_publish", lambda pos, rooms, users, events=0: published.append((pos, rooms, users))
    )
    pk = User.objects.get(mxid=alice.user_id).pk
    with django_capture_on_commit_callbacks(execute=True):
        matrix.put(data_path(alice, "org.example.a"), {}, token=alice)
        matrix.put(tags_path(alice, ROOM, "u.a"), {}, token=alice)
        matrix.delete(tags_path(alice, ROOM, "u.a"), token=alice)
        matrix.delete(tags_path(alice, ROOM, "u.a"), token=alice)  # no change: no wake-up
    positions = [p for p, _, _ in published]
    assert [(rooms, users) for _, rooms, users in published] == [([], [pk])] * 3
    assert positions == sorted(positions) and len(set(positions)) == 3
    row = AccountData.objects.get(type="m.tag")
    assert row.stream_pos == positions[-1] and row.content == {"tags": {}}
