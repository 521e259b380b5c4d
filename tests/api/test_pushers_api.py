"""Pushers API (pusher.yaml) through the real routes: GET /pushers and POST /pushers/set."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.matrix_client import MatrixClient, assert_matrix_error

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

pytestmark = pytest.mark.django_db

GATEWAY = "https://push.example.org/_matrix/push/v1/notify"


def http_pusher(**overrides: Any) -> dict[str, Any]:
    body = {
        "kind": "http",
        "app_id": "com.example.app.ios",
        "pushkey": "APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ",
        "app_display_name": "Mat Rix",
        "device_display_name": "iPhone 9",
        "lang": "en",
        "data": {"url": GATEWAY, "format": "event_id_only"},
    }
    body.update(overrides)
    return body


def listed(body: dict[str, Any]) -> dict[str, Any]:
    """What GET /pushers shows for a pusher set with ``body``."""
    return {k: v for k, v in body.items() if k != "append"}


def pushers(matrix: MatrixClient, user: TestUser) -> list[dict[str, Any]]:
    return matrix.get("pushers", token=user).json()["pushers"]


def test_no_pushers_at_first(any_prefix_client: MatrixClient, make_user) -> None:
    assert any_prefix_client.get("pushers", token=make_user()).json() == {"pushers": []}


def test_set_http_pusher_then_list_it(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    body = http_pusher(profile_tag="xxyyzz", append=False)
    assert matrix.post("pushers/set", body, token=user).json() == {}
    assert pushers(matrix, user) == [listed(body)]


def test_profile_tag_is_listed_only_when_set(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.post("pushers/set", http_pusher(), token=alice)
    assert "profile_tag" not in pushers(matrix, alice)[0]


def test_setting_the_same_app_id_and_pushkey_updates(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.post("pushers/set", http_pusher(), token=alice)
    updated = http_pusher(device_display_name="iPhone 10", lang="fr", data={"url": GATEWAY, "custom": 1})
    matrix.post("pushers/set", updated, token=alice)
    assert pushers(matrix, alice) == [listed(updated)]


def test_different_pushkeys_or_app_ids_are_different_pushers(matrix: MatrixClient, alice: TestUser) -> None:
    first, second, third = (
        http_pusher(),
        http_pusher(pushkey="other"),
        http_pusher(app_id="com.example.app.android"),
    )
    for body in (first, second, third):
        matrix.post("pushers/set", body, token=alice)
    assert pushers(matrix, alice) == [listed(first), listed(second), listed(third)]


def test_kind_null_deletes_the_pusher(any_prefix_client: MatrixClient, make_user) -> None:
    matrix, user = any_prefix_client, make_user()
    keep = http_pusher(pushkey="keep")
    matrix.post("pushers/set", http_pusher(), token=user)
    matrix.post("pushers/set", keep, token=user)
    delete = {"kind": None, "app_id": "com.example.app.ios", "pushkey": http_pusher()["pushkey"]}
    assert matrix.post("pushers/set", delete, token=user).json() == {}
    assert pushers(matrix, user) == [listed(keep)]
    matrix.post("pushers/set", delete, token=user)  # deleting what is not there is fine
    assert pushers(matrix, user) == [listed(keep)]


def test_kind_null_deletes_only_the_callers_pusher(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    body = http_pusher(append=True)
    matrix.post("pushers/set", body, token=alice)
    matrix.post("pushers/set", body, token=bob)
    matrix.post(
        "pushers/set", {"kind": None, "app_id": body["app_id"], "pushkey": body["pushkey"]}, token=alice
    )
    assert pushers(matrix, alice) == []
    assert pushers(matrix, bob) == [listed(body)]


def test_append_false_removes_other_users_pushers_with_the_same_key(
    matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    other_app = http_pusher(app_id="com.example.other")
    matrix.post("pushers/set", http_pusher(), token=alice)
    matrix.post("pushers/set", other_app, token=alice)
    matrix.post(
        "pushers/set", http_pusher(device_display_name="Bob's phone"), token=bob
    )  # append defaults to false
    assert pushers(matrix, alice) == [listed(other_app)]
    assert pushers(matrix, bob) == [listed(http_pusher(device_display_name="Bob's phone"))]


def test_append_true_keeps_other_users_pushers(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    matrix.post("pushers/set", http_pusher(), token=alice)
    matrix.post("pushers/set", http_pusher(append=True), token=bob)
    assert pushers(matrix, alice) == [listed(http_pusher())]
    assert pushers(matrix, bob) == [listed(http_pusher())]


def test_append_false_keeps_the_users_own_other_pushers(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.post("pushers/set", http_pusher(pushkey="one"), token=alice)
    matrix.post("pushers/set", http_pusher(pushkey="two", append=False), token=alice)
    assert [p["pushkey"] for p in pushers(matrix, alice)] == ["one", "two"]


def test_email_pusher(matrix: MatrixClient, alice: TestUser) -> None:
    body = http_pusher(kind="email", app_id="m.email", pushkey="alice@example.org", data={})
    matrix.post("pushers/set", body, token=alice)
    assert pushers(matrix, alice) == [listed(body)]


def test_other_users_do_not_see_my_pushers(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    matrix.post("pushers/set", http_pusher(), token=alice)
    assert pushers(matrix, bob) == []


def test_logging_out_removes_the_devices_pushers(matrix: MatrixClient, alice: TestUser) -> None:
    second = matrix.login(alice.user_id, alice.password)["access_token"]
    matrix.post("pushers/set", http_pusher(pushkey="from-second"), token=second)
    matrix.post("pushers/set", http_pusher(pushkey="from-first"), token=alice)
    matrix.post("logout", {}, token=second)
    assert [p["pushkey"] for p in pushers(matrix, alice)] == ["from-first"]


@pytest.mark.parametrize("missing", ["kind", "app_id", "pushkey"])
def test_missing_required_key_is_400_missing_param(
    matrix: MatrixClient, alice: TestUser, missing: str
) -> None:
    body = {k: v for k, v in http_pusher().items() if k != missing}
    assert_matrix_error(matrix.post("pushers/set", body, token=alice, expect=None), 400, "M_MISSING_PARAM")
    assert pushers(matrix, alice) == []


@pytest.mark.parametrize("missing", ["app_display_name", "device_display_name", "lang", "data"])
def test_missing_key_needed_when_kind_is_set_is_400_missing_param(
    matrix: MatrixClient, alice: TestUser, missing: str
) -> None:
    body = {k: v for k, v in http_pusher().items() if k != missing}
    error = assert_matrix_error(
        matrix.post("pushers/set", body, token=alice, expect=None), 400, "M_MISSING_PARAM"
    )
    assert missing in error["error"]
    assert pushers(matrix, alice) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "sms"},
        {"kind": 5},
        {"data": {"format": "event_id_only"}},  # http needs data.url
        {"data": {"url": 5}},
        {"data": {"url": "https://push.example.org/notify"}},  # not the push gateway path
        {"data": {"url": "ftp://push.example.org/_matrix/push/v1/notify"}},
        {"data": "https://push.example.org/_matrix/push/v1/notify"},
        {"app_id": "a" * 65},
        {"pushkey": "é" * 257},  # 514 bytes
        {"kind": "email", "pushkey": "alice@example.org"},  # email pushers use app_id m.email
    ],
)
def test_invalid_pusher_is_400_invalid_param(
    matrix: MatrixClient, alice: TestUser, overrides: dict[str, Any]
) -> None:
    resp = matrix.post("pushers/set", http_pusher(**overrides), token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert pushers(matrix, alice) == []


def test_longest_app_id_and_pushkey_are_accepted(matrix: MatrixClient, alice: TestUser) -> None:
    matrix.post("pushers/set", http_pusher(app_id="a" * 64, pushkey="k" * 512), token=alice)
    assert len(pushers(matrix, alice)) == 1


@pytest.mark.parametrize(
    "body",
    [["not", "an", "object"], http_pusher(app_id=5), http_pusher(append="yes"), http_pusher(lang=["en"])],
)
def test_malformed_body_is_400_bad_json(matrix: MatrixClient, alice: TestUser, body: Any) -> None:
    assert_matrix_error(matrix.post("pushers/set", body, token=alice, expect=None), 400, "M_BAD_JSON")


def test_pushers_need_an_access_token(matrix: MatrixClient, db: None) -> None:
    assert_matrix_error(matrix.get("pushers", expect=None), 401, "M_MISSING_TOKEN")
    assert_matrix_error(matrix.post("pushers/set", http_pusher(), expect=None), 401, "M_MISSING_TOKEN")


def test_wrong_method_is_405_unrecognized(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(matrix.post("pushers", {}, token=alice, expect=None), 405, "M_UNRECOGNIZED")
    assert_matrix_error(matrix.get("pushers/set", token=alice, expect=None), 405, "M_UNRECOGNIZED")
