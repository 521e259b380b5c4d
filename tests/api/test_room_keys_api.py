"""Server-side key backups through the real routes: versions (create, current, update, delete) and
keys at the three granularities, with the spec's etag/count and key replacement rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.matrix_client import MatrixClient, assert_matrix_error, q

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:test"


def new_version(matrix: MatrixClient, user: TestUser, public_key: str = "pk") -> str:
    body = {"algorithm": ALG, "auth_data": {"public_key": public_key}}
    version = matrix.post("room_keys/version", body, token=user).json()["version"]
    assert isinstance(version, str)
    return version


def key(first: int = 0, forwarded: int = 0, verified: bool = False, tag: str = "x") -> dict[str, Any]:
    return {
        "first_message_index": first,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": {"ciphertext": tag},
    }


def put_session(
    matrix: MatrixClient, user: TestUser, version: str, session: str, data: dict[str, Any], **kw: Any
) -> Any:
    return matrix.put(
        f"room_keys/keys/{q(ROOM)}/{q(session)}", data, token=user, query={"version": version}, **kw
    )


def test_versions_lifecycle(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    assert_matrix_error(matrix.get("room_keys/version", token=alice, expect=None), 404, "M_NOT_FOUND")
    v1 = new_version(matrix, alice)
    v2 = new_version(matrix, alice, "pk2")
    current = matrix.get("room_keys/version", token=alice).json()
    assert current == {
        "algorithm": ALG,
        "auth_data": {"public_key": "pk2"},
        "count": 0,
        "etag": current["etag"],
        "version": v2,
    }
    assert matrix.get(f"room_keys/version/{v1}", token=alice).json()["version"] == v1
    assert_matrix_error(matrix.get(f"room_keys/version/{v1}", token=bob, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(matrix.get("room_keys/version/nope", token=alice, expect=None), 404, "M_NOT_FOUND")

    matrix.put(f"room_keys/version/{v2}", {"algorithm": ALG, "auth_data": {"public_key": "new"}}, token=alice)
    assert matrix.get("room_keys/version", token=alice).json()["auth_data"] == {"public_key": "new"}
    bad = matrix.put(
        f"room_keys/version/{v2}", {"algorithm": "other", "auth_data": {}}, token=alice, expect=None
    )
    assert_matrix_error(bad, 400, "M_INVALID_PARAM")
    bad = matrix.put(
        f"room_keys/version/{v2}",
        {"algorithm": ALG, "auth_data": {}, "version": v1},
        token=alice,
        expect=None,
    )
    assert_matrix_error(bad, 400, "M_INVALID_PARAM")

    matrix.delete(f"room_keys/version/{v2}", token=alice)
    matrix.delete(f"room_keys/version/{v2}", token=alice)  # again: still a success
    assert matrix.get("room_keys/version", token=alice).json()["version"] == v1
    assert_matrix_error(matrix.get(f"room_keys/version/{v2}", token=alice, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.delete("room_keys/version/999999", token=alice, expect=None), 404, "M_NOT_FOUND"
    )


def test_keys_store_get_replace_and_delete_with_etag_and_count(matrix: MatrixClient, alice: TestUser) -> None:
    version = new_version(matrix, alice)
    etag0 = matrix.get("room_keys/version", token=alice).json()["etag"]
    first = put_session(matrix, alice, version, "s1", key(first=5, tag="a")).json()
    assert first["count"] == 1 and first["etag"] != etag0
    # a worse key (higher first_message_index) is ignored: the etag stays
    same = put_session(matrix, alice, version, "s1", key(first=7, tag="worse")).json()
    assert same == first
    better = put_session(matrix, alice, version, "s1", key(first=2, tag="better")).json()
    assert better["count"] == 1 and better["etag"] != first["etag"]
    # verified beats a lower index
    put_session(matrix, alice, version, "s1", key(first=9, verified=True, tag="verified"))
    got = matrix.get(f"room_keys/keys/{q(ROOM)}/s1", token=alice, query={"version": version}).json()
    assert got["session_data"] == {"ciphertext": "verified"}

    body = {"rooms": {ROOM: {"sessions": {"s2": key()}}, "!other:test": {"sessions": {"s3": key()}}}}
    assert matrix.put("room_keys/keys", body, token=alice, query={"version": version}).json()["count"] == 3
    matrix.put(
        f"room_keys/keys/{q(ROOM)}", {"sessions": {"s4": key()}}, token=alice, query={"version": version}
    )
    every = matrix.get("room_keys/keys", token=alice, query={"version": version}).json()
    assert {r: sorted(v["sessions"]) for r, v in every["rooms"].items()} == {
        ROOM: ["s1", "s2", "s4"],
        "!other:test": ["s3"],
    }
    room = matrix.get(f"room_keys/keys/{q(ROOM)}", token=alice, query={"version": version}).json()
    assert sorted(room["sessions"]) == ["s1", "s2", "s4"]
    assert matrix.get(
        f"room_keys/keys/{q('!none:test')}", token=alice, query={"version": version}
    ).json() == {"sessions": {}}
    missing = matrix.get(
        f"room_keys/keys/{q(ROOM)}/nope", token=alice, query={"version": version}, expect=None
    )
    assert_matrix_error(missing, 404, "M_NOT_FOUND")

    assert (
        matrix.delete(f"room_keys/keys/{q(ROOM)}/s1", token=alice, query={"version": version}).json()["count"]
        == 3
    )
    assert (
        matrix.delete(f"room_keys/keys/{q(ROOM)}", token=alice, query={"version": version}).json()["count"]
        == 1
    )
    assert matrix.delete("room_keys/keys", token=alice, query={"version": version}).json()["count"] == 0
    assert matrix.get("room_keys/version", token=alice).json()["count"] == 0


def test_uploading_to_an_old_version_is_403_with_the_current_version(
    matrix: MatrixClient, alice: TestUser
) -> None:
    old = new_version(matrix, alice)
    current = new_version(matrix, alice)
    body = assert_matrix_error(
        put_session(matrix, alice, old, "s1", key(), expect=None), 403, "M_WRONG_ROOM_KEYS_VERSION"
    )
    assert body["current_version"] == current
    assert_matrix_error(put_session(matrix, alice, "12345678", "s1", key(), expect=None), 404, "M_NOT_FOUND")
    resp = matrix.put(f"room_keys/keys/{q(ROOM)}/s1", key(), token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_MISSING_PARAM")


def test_deleting_a_version_deletes_its_keys(matrix: MatrixClient, alice: TestUser) -> None:
    version = new_version(matrix, alice)
    put_session(matrix, alice, version, "s1", key())
    matrix.delete(f"room_keys/version/{version}", token=alice)
    resp = matrix.get("room_keys/keys", token=alice, query={"version": version}, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")


def test_bad_key_data_is_400(matrix: MatrixClient, alice: TestUser) -> None:
    version = new_version(matrix, alice)
    resp = put_session(matrix, alice, version, "s1", {"first_message_index": "0"}, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")
