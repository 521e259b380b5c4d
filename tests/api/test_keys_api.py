"""End-to-end encryption keys through the real routes: upload, query, claim (once, even concurrently),
fallback keys, cross-signing, signatures, /keys/changes and the E2EE parts of /sync."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection

from tests.matrix_client import MatrixClient, assert_matrix_error
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

ALG = "signed_curve25519"


def device_keys(user: TestUser, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"curve25519:{user.device_id}": "curve" + user.device_id,
            f"ed25519:{user.device_id}": "ed" + user.device_id,
        },
        "signatures": {user.user_id: {f"ed25519:{user.device_id}": "sig"}},
        **extra,
    }


def otks(prefix: str, n: int) -> dict[str, Any]:
    return {f"{ALG}:{prefix}{i}": {"key": f"key-{prefix}{i}", "signatures": {}} for i in range(n)}


def upload(matrix: MatrixClient, user: TestUser, **body: Any) -> dict[str, Any]:
    return matrix.post("keys/upload", body, token=user).json()


def claim(matrix: MatrixClient, user: TestUser, target: TestUser) -> dict[str, Any]:
    body = {"one_time_keys": {target.user_id: {target.device_id: ALG}}}
    return matrix.post("keys/claim", body, token=user).json()["one_time_keys"]


def cross_key(user: TestUser, usage: str, public: str) -> dict[str, Any]:
    return {"user_id": user.user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}


def test_upload_query_claim_round_trip(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    body = upload(matrix, alice, device_keys=device_keys(alice), one_time_keys=otks("a", 2))
    assert body == {"one_time_key_counts": {ALG: 2}}

    queried = matrix.post("keys/query", {"device_keys": {alice.user_id: []}}, token=bob).json()
    keys = queried["device_keys"][alice.user_id][alice.device_id]
    assert keys["keys"] == device_keys(alice)["keys"]
    assert keys["signatures"] == {alice.user_id: {f"ed25519:{alice.device_id}": "sig"}}
    assert queried["failures"] == {}
    only = matrix.post("keys/query", {"device_keys": {alice.user_id: ["NOPE"]}}, token=bob).json()
    assert only["device_keys"] == {alice.user_id: {}}
    unknown = matrix.post("keys/query", {"device_keys": {"@nobody:test": []}}, token=bob).json()
    assert unknown["device_keys"] == {"@nobody:test": {}}

    first, second, third = (claim(matrix, bob, alice) for _ in range(3))
    got = [first[alice.user_id][alice.device_id], second[alice.user_id][alice.device_id]]
    assert sorted(k for d in got for k in d) == [f"{ALG}:a0", f"{ALG}:a1"]
    assert third == {}
    assert upload(matrix, alice) == {"one_time_key_counts": {ALG: 0}}


def test_device_keys_must_be_the_uploaders_own(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    resp = matrix.post("keys/upload", {"device_keys": device_keys(bob)}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")


def test_a_one_time_key_id_reused_with_other_content_is_rejected(
    matrix: MatrixClient, alice: TestUser
) -> None:
    upload(matrix, alice, one_time_keys=otks("a", 1))
    assert upload(matrix, alice, one_time_keys=otks("a", 1)) == {"one_time_key_counts": {ALG: 1}}
    resp = matrix.post(
        "keys/upload", {"one_time_keys": {f"{ALG}:a0": {"key": "other"}}}, token=alice, expect=None
    )
    assert_matrix_error(resp, 400, "M_BAD_JSON")


def test_fallback_key_is_handed_out_when_one_time_keys_run_out_and_then_reported_used(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    fallback = {f"{ALG}:fb": {"key": "fallback-key", "fallback": True, "signatures": {}}}
    upload(matrix, alice, one_time_keys=otks("a", 1), fallback_keys=fallback)
    initial = sync(matrix, alice)
    assert initial["device_one_time_keys_count"] == {ALG: 1}
    assert initial["device_unused_fallback_key_types"] == [ALG]

    assert list(claim(matrix, bob, alice)[alice.user_id][alice.device_id]) == [f"{ALG}:a0"]
    for _ in range(2):  # the fallback key is handed out as often as needed
        assert claim(matrix, bob, alice)[alice.user_id][alice.device_id] == fallback

    after = sync(matrix, alice, since=initial["next_batch"])
    assert after["device_one_time_keys_count"] == {ALG: 0}
    assert after["device_unused_fallback_key_types"] == []
    # the same fallback key again stays used; a new one is unused
    upload(matrix, alice, fallback_keys=fallback)
    assert sync(matrix, alice)["device_unused_fallback_key_types"] == []
    upload(matrix, alice, fallback_keys={f"{ALG}:fb2": {"key": "new", "fallback": True}})
    assert sync(matrix, alice)["device_unused_fallback_key_types"] == [ALG]


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_hand_out_a_key_twice(make_user) -> None:
    """Twelve claimers race for eight keys: each key goes to exactly one, the rest get nothing."""
    owner, claimer = make_user(), make_user()
    upload(MatrixClient(), owner, one_time_keys=otks("k", 8))

    def claim_one(_: int) -> list[str]:
        try:
            keys = claim(MatrixClient(), claimer, owner)
            return list(keys.get(owner.user_id, {}).get(owner.device_id, {}))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(claim_one, range(12)))
    claimed = [k for r in results for k in r]
    assert sorted(claimed) == sorted(otks("k", 8))  # every key once, none twice


def test_keys_changes_and_sync_device_lists_after_a_room_mates_upload(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user
) -> None:
    stranger = make_user()
    joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    upload(matrix, alice, device_keys=device_keys(alice))
    upload(matrix, stranger, device_keys=device_keys(stranger))

    body = sync(matrix, bob, since=since)
    assert body["device_lists"]["changed"] == [alice.user_id]  # not the stranger: no shared room
    changes = matrix.get("keys/changes", query={"from": since, "to": body["next_batch"]}, token=bob).json()
    assert changes["changed"] == [alice.user_id]
    assert sync(matrix, bob, since=body["next_batch"])["device_lists"]["changed"] == []
    # the same keys again are no change
    upload(matrix, alice, device_keys=device_keys(alice))
    assert sync(matrix, bob, since=body["next_batch"])["device_lists"]["changed"] == []


def test_keys_changes_needs_both_tokens(matrix: MatrixClient, alice: TestUser) -> None:
    resp = matrix.get("keys/changes", query={"from": "s0"}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_MISSING_PARAM")
    resp = matrix.get("keys/changes", query={"from": "x", "to": "s1"}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")


def test_cross_signing_upload_query_and_replacement_needs_uia(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    keys = {
        "master_key": cross_key(alice, "master", "MASTER"),
        "self_signing_key": cross_key(alice, "self_signing", "SELF"),
        "user_signing_key": cross_key(alice, "user_signing", "USER"),
    }
    matrix.post("keys/device_signing/upload", keys, token=alice)  # the first upload: no UIA
    matrix.post("keys/device_signing/upload", keys, token=alice)  # the same keys again: no UIA

    seen_by_bob = matrix.post("keys/query", {"device_keys": {alice.user_id: []}}, token=bob).json()
    assert seen_by_bob["master_keys"] == {alice.user_id: keys["master_key"]}
    assert seen_by_bob["self_signing_keys"] == {alice.user_id: keys["self_signing_key"]}
    assert seen_by_bob["user_signing_keys"] == {}  # only its owner sees it
    own = matrix.post("keys/query", {"device_keys": {alice.user_id: []}}, token=alice).json()
    assert own["user_signing_keys"] == {alice.user_id: keys["user_signing_key"]}

    new = {"master_key": cross_key(alice, "master", "MASTER2")}
    resp = matrix.post("keys/device_signing/upload", new, token=alice, expect=401)
    session = resp.json()["session"]
    assert resp.json()["flows"] == [{"stages": ["m.login.password"]}]
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": alice.password,
        "session": session,
    }
    matrix.post("keys/device_signing/upload", {**new, "auth": auth}, token=alice)
    own = matrix.post("keys/query", {"device_keys": {alice.user_id: []}}, token=alice).json()
    assert own["master_keys"][alice.user_id] == new["master_key"]


def test_cross_signing_key_of_another_user_is_rejected(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    resp = matrix.post(
        "keys/device_signing/upload", {"master_key": cross_key(bob, "master", "M")}, token=alice, expect=None
    )
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")


def test_signatures_upload_stores_signatures_and_reports_unknown_keys(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    upload(matrix, alice, device_keys=device_keys(alice))
    matrix.post(
        "keys/device_signing/upload",
        {
            "master_key": cross_key(alice, "master", "MASTER"),
            "self_signing_key": cross_key(alice, "self_signing", "SELF"),
        },
        token=alice,
    )
    signed_device = {**device_keys(alice), "signatures": {alice.user_id: {"ed25519:SELF": "self-sig"}}}
    body = {alice.user_id: {alice.device_id: signed_device, "UNKNOWN": signed_device}}
    failures = matrix.post("keys/signatures/upload", body, token=alice).json()["failures"]
    assert list(failures) == [alice.user_id] and list(failures[alice.user_id]) == ["UNKNOWN"]

    queried = matrix.post("keys/query", {"device_keys": {alice.user_id: []}}, token=bob).json()
    assert queried["device_keys"][alice.user_id][alice.device_id]["signatures"][alice.user_id] == {
        f"ed25519:{alice.device_id}": "sig",
        "ed25519:SELF": "self-sig",
    }


def test_key_routes_need_a_token(matrix: MatrixClient) -> None:
    for path in ("keys/upload", "keys/query", "keys/claim", "keys/signatures/upload"):
        assert_matrix_error(matrix.post(path, {}, expect=None), 401, "M_MISSING_TOKEN")


def test_key_routes_answer_on_r0(any_prefix_client: MatrixClient, make_user) -> None:
    user = make_user()
    body = any_prefix_client.post("keys/upload", {"one_time_keys": otks("x", 1)}, token=user).json()
    assert body == {"one_time_key_counts": {ALG: 1}}
