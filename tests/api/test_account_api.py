"""Access tokens, whoami, logout, logout/all, password change and deactivation, through the real routes."""

from __future__ import annotations

import hashlib

import pytest

from accounts.models import AccessToken, Device, User
from tests.matrix_client import MatrixClient, assert_matrix_error
from tests.matrix_client import TestUser as Account

pytestmark = pytest.mark.django_db


def _password_auth(
    user: Account, *, password: str | None = None, session: str | None = None, who: str | None = None
) -> dict:
    auth: dict = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": who or user.user_id},
        "password": user.password if password is None else password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def _second_login(matrix: MatrixClient, user: Account) -> str:
    return matrix.login(user.user_id, user.password)["access_token"]


# -- access tokens -------------------------------------------------------------------------------


def test_bearer_token_in_the_authorization_header_is_accepted(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.http.get(
        "/_matrix/client/v3/account/whoami", headers={"Authorization": f"Bearer {alice.access_token}"}
    )
    assert resp.status_code == 200
    assert resp.json()["user_id"] == alice.user_id


def test_access_token_query_parameter_is_accepted(any_prefix_client: MatrixClient, alice: Account) -> None:
    body = any_prefix_client.get("account/whoami", query={"access_token": alice.access_token}).json()
    assert body["user_id"] == alice.user_id


def test_missing_token_is_missing_token(any_prefix_client: MatrixClient) -> None:
    assert_matrix_error(any_prefix_client.get("account/whoami", expect=None), 401, "M_MISSING_TOKEN")


def test_a_non_bearer_authorization_header_is_missing_token(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.http.get(
        "/_matrix/client/v3/account/whoami", headers={"Authorization": f"Basic {alice.access_token}"}
    )
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")


def test_unknown_token_is_unknown_token_with_soft_logout_false(any_prefix_client: MatrixClient) -> None:
    body = assert_matrix_error(
        any_prefix_client.whoami("mxs_not-a-real-token", expect=None), 401, "M_UNKNOWN_TOKEN"
    )
    assert body["soft_logout"] is False


def test_unknown_token_in_the_query_parameter_is_unknown_token(matrix: MatrixClient) -> None:
    resp = matrix.get("account/whoami", query={"access_token": "nope"}, expect=None)
    assert_matrix_error(resp, 401, "M_UNKNOWN_TOKEN")


def test_tokens_are_stored_only_as_their_hash(matrix: MatrixClient, alice: Account) -> None:
    tokens = [alice.access_token, _second_login(matrix, alice)]
    rows = list(AccessToken.objects.values())
    assert len(rows) == 2
    for token in tokens:
        row = AccessToken.objects.get(token_hash=hashlib.sha256(token.encode()).hexdigest())
        assert row.token_hash != token
        assert all(token not in str(value) for r in rows for value in r.values())
        assert all(token not in str(value) for d in Device.objects.values() for value in d.values())


def test_access_tokens_are_long_random_and_distinct(matrix: MatrixClient, alice: Account) -> None:
    tokens = [alice.access_token] + [_second_login(matrix, alice) for _ in range(3)]
    assert len(set(tokens)) == len(tokens)
    # whatever fixed prefix the server adds, what follows must carry >= 128 bits: with at most
    # 64 symbols (6 bits) per character that is at least 22 characters.
    prefix_length = 0
    while len({t[: prefix_length + 1] for t in tokens}) == 1:
        prefix_length += 1
    assert all(len(t) - prefix_length >= 22 for t in tokens), tokens


# -- whoami --------------------------------------------------------------------------------------


def test_whoami_names_the_user_and_device_of_the_token(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    second = any_prefix_client.login("alice", alice.password)
    assert any_prefix_client.whoami(alice).json() == {
        "user_id": "@alice:test.local",
        "device_id": alice.device_id,
        "is_guest": False,
    }
    assert any_prefix_client.whoami(second["access_token"]).json()["device_id"] == second["device_id"]


# -- logout ----------------------------------------------------------------------------------------


def test_logout_kills_the_token_and_deletes_the_device(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    other = _second_login(any_prefix_client, alice)
    assert any_prefix_client.post("logout", token=alice).json() == {}
    assert_matrix_error(any_prefix_client.whoami(alice, expect=None), 401, "M_UNKNOWN_TOKEN")
    assert not Device.objects.filter(device_id=alice.device_id).exists()
    any_prefix_client.whoami(other)  # the user's other session lives on


def test_logout_needs_a_token(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.post("logout", expect=None), 401, "M_MISSING_TOKEN")


def test_logging_out_twice_is_unknown_token(matrix: MatrixClient, alice: Account) -> None:
    matrix.post("logout", token=alice)
    assert_matrix_error(matrix.post("logout", token=alice, expect=None), 401, "M_UNKNOWN_TOKEN")


def test_logout_all_kills_every_token_of_the_user_only(
    any_prefix_client: MatrixClient, alice: Account, bob: Account
) -> None:
    other = _second_login(any_prefix_client, alice)
    assert any_prefix_client.post("logout/all", token=alice).json() == {}
    for token in (alice.access_token, other):
        assert_matrix_error(any_prefix_client.whoami(token, expect=None), 401, "M_UNKNOWN_TOKEN")
    assert not Device.objects.filter(user__localpart="alice").exists()
    any_prefix_client.whoami(bob)
    assert any_prefix_client.login("alice", alice.password)["user_id"] == alice.user_id  # can log in again


# -- POST /account/password ------------------------------------------------------------------------


def test_password_change_starts_with_the_password_flow(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    body = any_prefix_client.post(
        "account/password", {"new_password": "new pw"}, token=alice, expect=401
    ).json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    assert isinstance(body["params"], dict)
    assert body["session"]
    assert User.objects.get(localpart="alice").check_password(alice.password)


def test_password_change_logs_out_other_devices_but_not_the_calling_one(
    any_prefix_client: MatrixClient, alice: Account, bob: Account
) -> None:
    other = _second_login(any_prefix_client, alice)
    session = any_prefix_client.post(
        "account/password", {"new_password": "new pw"}, token=alice, expect=401
    ).json()["session"]
    body = {"new_password": "new pw", "auth": _password_auth(alice, session=session)}
    assert any_prefix_client.post("account/password", body, token=alice).json() == {}

    any_prefix_client.whoami(alice)  # the calling device survives
    assert_matrix_error(any_prefix_client.whoami(other, expect=None), 401, "M_UNKNOWN_TOKEN")
    assert list(Device.objects.filter(user__localpart="alice").values_list("device_id", flat=True)) == [
        alice.device_id
    ]
    any_prefix_client.whoami(bob)

    assert any_prefix_client.login("alice", "new pw")["user_id"] == alice.user_id
    old = any_prefix_client.post(
        "login", {"type": "m.login.password", "user": "alice", "password": alice.password}, expect=None
    )
    assert_matrix_error(old, 403, "M_FORBIDDEN")


def test_password_change_with_logout_devices_false_keeps_other_devices(
    matrix: MatrixClient, alice: Account
) -> None:
    other = _second_login(matrix, alice)
    body = {"new_password": "new pw", "logout_devices": False, "auth": _password_auth(alice)}
    matrix.post("account/password", body, token=alice)
    matrix.whoami(alice)
    matrix.whoami(other)
    assert matrix.login("alice", "new pw")["user_id"] == alice.user_id


def test_wrong_password_in_password_change_is_401_forbidden(matrix: MatrixClient, alice: Account) -> None:
    other = _second_login(matrix, alice)
    body = {"new_password": "new pw", "auth": _password_auth(alice, password="wrong")}
    resp = matrix.post("account/password", body, token=alice, expect=None)
    err = assert_matrix_error(resp, 401, "M_FORBIDDEN")
    assert err["flows"] == [{"stages": ["m.login.password"]}]
    assert err["session"]
    matrix.whoami(other)  # nothing happened
    assert matrix.login("alice", alice.password)["user_id"] == alice.user_id
    # the failed attempt's session can be retried with the right password
    retry = {"new_password": "new pw", "auth": _password_auth(alice, session=err["session"])}
    matrix.post("account/password", retry, token=alice)
    assert matrix.login("alice", "new pw")["user_id"] == alice.user_id


def test_password_auth_as_another_user_does_not_change_the_password(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    body = {"new_password": "new pw", "auth": _password_auth(bob, who=bob.user_id)}
    assert_matrix_error(matrix.post("account/password", body, token=alice, expect=None), 401, "M_FORBIDDEN")
    assert User.objects.get(localpart="alice").check_password(alice.password)
    assert User.objects.get(localpart="bob").check_password(bob.password)


def test_a_uia_session_cannot_be_continued_by_another_user(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    session = matrix.post("account/password", {"new_password": "x"}, token=alice, expect=401).json()[
        "session"
    ]
    body = {"new_password": "hijack", "auth": _password_auth(bob, session=session)}
    resp = matrix.post("account/password", body, token=bob, expect=None)
    assert resp.status_code in (400, 401)
    assert "errcode" in resp.json()
    assert User.objects.get(localpart="bob").check_password(bob.password)


def test_password_change_password_stage_without_password_is_missing_param(
    matrix: MatrixClient, alice: Account
) -> None:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id}}
    resp = matrix.post("account/password", {"new_password": "x", "auth": auth}, token=alice, expect=None)
    assert resp.status_code in (400, 401)
    assert resp.json()["errcode"] == "M_MISSING_PARAM"
    assert User.objects.get(localpart="alice").check_password(alice.password)


def test_password_change_needs_new_password(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.post("account/password", {"auth": _password_auth(alice)}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_MISSING_PARAM")


def test_password_change_with_a_non_boolean_logout_devices_is_bad_json(
    matrix: MatrixClient, alice: Account
) -> None:
    body = {"new_password": "x", "logout_devices": "no", "auth": _password_auth(alice)}
    assert_matrix_error(matrix.post("account/password", body, token=alice, expect=None), 400, "M_BAD_JSON")
    assert User.objects.get(localpart="alice").check_password(alice.password)


def test_password_change_needs_an_access_token(matrix: MatrixClient, alice: Account) -> None:
    body = {"new_password": "x", "auth": _password_auth(alice)}
    assert_matrix_error(matrix.post("account/password", body, expect=None), 401, "M_MISSING_TOKEN")
    assert User.objects.get(localpart="alice").check_password(alice.password)


def test_password_auth_accepts_the_legacy_user_field_and_a_localpart(
    matrix: MatrixClient, alice: Account
) -> None:
    auth = {"type": "m.login.password", "user": "alice", "password": alice.password}
    matrix.post("account/password", {"new_password": "new pw", "auth": auth}, token=alice)
    assert matrix.login("alice", "new pw")["user_id"] == alice.user_id


# -- POST /account/deactivate ----------------------------------------------------------------------


def test_deactivate_starts_with_the_password_flow(any_prefix_client: MatrixClient, alice: Account) -> None:
    body = any_prefix_client.post("account/deactivate", {}, token=alice, expect=401).json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    assert body["session"]
    assert User.objects.get(localpart="alice").is_active


def test_deactivation_ends_every_session_and_login(
    any_prefix_client: MatrixClient, alice: Account, bob: Account
) -> None:
    other = _second_login(any_prefix_client, alice)
    session = any_prefix_client.post("account/deactivate", {}, token=alice, expect=401).json()["session"]
    body = any_prefix_client.post(
        "account/deactivate", {"auth": _password_auth(alice, session=session)}, token=alice
    ).json()
    assert body == {"id_server_unbind_result": "no-support"}

    for token in (alice.access_token, other):
        assert_matrix_error(any_prefix_client.whoami(token, expect=None), 401, "M_UNKNOWN_TOKEN")
    login = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": alice.password,
    }
    assert_matrix_error(any_prefix_client.post("login", login, expect=None), 403, "M_USER_DEACTIVATED")
    any_prefix_client.whoami(bob)


def test_a_deactivated_user_id_is_never_registered_again(matrix: MatrixClient, alice: Account) -> None:
    matrix.post("account/deactivate", {"auth": _password_auth(alice)}, token=alice)
    resp = matrix.post("register", {"username": "alice", "auth": {"type": "m.login.dummy"}}, expect=None)
    assert_matrix_error(resp, 400, "M_USER_IN_USE")


def test_deactivate_with_a_wrong_password_is_401_forbidden(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.post(
        "account/deactivate", {"auth": _password_auth(alice, password="wrong")}, token=alice, expect=None
    )
    assert_matrix_error(resp, 401, "M_FORBIDDEN")
    matrix.whoami(alice)
    assert User.objects.get(localpart="alice").is_active


def test_deactivate_with_erase_of_the_wrong_type_is_bad_json(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.post(
        "account/deactivate", {"erase": "yes", "auth": _password_auth(alice)}, token=alice, expect=None
    )
    assert_matrix_error(resp, 400, "M_BAD_JSON")
    assert User.objects.get(localpart="alice").is_active


def test_deactivate_needs_an_access_token(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.post("account/deactivate", {"auth": _password_auth(alice)}, expect=None)
    assert_matrix_error(resp, 401, "M_MISSING_TOKEN")
    assert User.objects.get(localpart="alice").is_active
