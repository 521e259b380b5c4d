"""POST /register (user-interactive auth, open / token / closed modes), /register/available and the
registration token validity check, through the real routes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import AccessToken, Device, RegistrationToken, User
from tests.matrix_client import MatrixClient, assert_matrix_error

pytestmark = pytest.mark.django_db

DUMMY = {"type": "m.login.dummy"}
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


@pytest.fixture
def token_mode(settings) -> None:
    settings.MATRIX = {**settings.MATRIX, "REGISTRATION": "token"}


@pytest.fixture
def closed_mode(settings) -> None:
    settings.MATRIX = {**settings.MATRIX, "REGISTRATION": "closed"}


def _token(auth_token: str, session: str | None = None) -> dict:
    auth = {"type": "m.login.registration_token", "token": auth_token}
    if session is not None:
        auth["session"] = session
    return auth


# -- the user-interactive auth dance ---------------------------------------------------------------


def test_first_register_request_without_auth_offers_the_dummy_flow_and_a_session(
    any_prefix_client: MatrixClient,
) -> None:
    body = any_prefix_client.post("register", {"username": "carol", "password": "pw"}, expect=401).json()
    assert {"stages": ["m.login.dummy"]} in body["flows"]
    assert body["params"] == {}
    assert isinstance(body["session"], str) and body["session"]
    assert "errcode" not in body  # no stage was attempted, so nothing failed
    assert not User.objects.filter(localpart="carol").exists()


def test_register_completes_with_dummy_auth_and_the_offered_session(any_prefix_client: MatrixClient) -> None:
    session = any_prefix_client.post("register", {"username": "carol", "password": "pw"}, expect=401).json()[
        "session"
    ]
    body = any_prefix_client.post(
        "register", {"username": "carol", "password": "pw", "auth": {**DUMMY, "session": session}}
    ).json()
    assert body["user_id"] == "@carol:test.local"
    assert body["home_server"] == "test.local"
    assert isinstance(body["device_id"], str) and body["device_id"]
    whoami = any_prefix_client.whoami(body["access_token"]).json()
    assert whoami["user_id"] == "@carol:test.local"
    assert whoami["device_id"] == body["device_id"]


def test_a_completed_uia_session_cannot_be_replayed(matrix: MatrixClient) -> None:
    session = matrix.post("register", {"username": "carol"}, expect=401).json()["session"]
    matrix.post("register", {"username": "carol", "auth": {**DUMMY, "session": session}})
    again = matrix.post("register", {"username": "dave", "auth": {**DUMMY, "session": session}}, expect=None)
    assert_matrix_error(again, 400, "M_UNKNOWN")
    assert not User.objects.filter(localpart="dave").exists()


def test_unknown_uia_session_is_rejected(matrix: MatrixClient) -> None:
    resp = matrix.post(
        "register", {"username": "carol", "auth": {**DUMMY, "session": "no-such-session"}}, expect=None
    )
    assert_matrix_error(resp, 400, "M_UNKNOWN")
    assert not User.objects.filter(localpart="carol").exists()


def test_auth_with_only_a_session_reports_the_state_without_an_error(matrix: MatrixClient) -> None:
    session = matrix.post("register", {"username": "carol"}, expect=401).json()["session"]
    body = matrix.post("register", {"username": "carol", "auth": {"session": session}}, expect=401).json()
    assert body["session"] == session
    assert "errcode" not in body
    assert "completed" not in body or body["completed"] == []


def test_an_auth_type_not_offered_is_a_401_with_the_flows_and_an_error(matrix: MatrixClient) -> None:
    resp = matrix.post(
        "register",
        {"username": "carol", "auth": {"type": "m.login.password", "user": "carol", "password": "x"}},
        expect=None,
    )
    body = assert_matrix_error(resp, 401, "M_FORBIDDEN")
    assert {"stages": ["m.login.dummy"]} in body["flows"]
    assert body["session"]
    assert not User.objects.filter(localpart="carol").exists()


def test_seed_curl_registers_with_dummy_auth_without_session_and_a_form_content_type(
    matrix: MatrixClient,
) -> None:
    # curl -XPOST -d '{...}' sends Content-Type: application/x-www-form-urlencoded
    raw = b'{"username":"example", "password":"wordpass", "auth": {"type":"m.login.dummy"}}'
    body = matrix.post("register", raw=raw, content_type="application/x-www-form-urlencoded").json()
    assert body["user_id"] == "@example:test.local"
    assert set(body) >= {"user_id", "access_token", "device_id", "home_server"}
    matrix.whoami(body["access_token"])


def test_register_without_content_type_still_parses_json(matrix: MatrixClient) -> None:
    raw = b'{"username":"example", "password":"wordpass", "auth": {"type":"m.login.dummy"}}'
    body = matrix.post("register", raw=raw, content_type="").json()
    assert body["user_id"] == "@example:test.local"


# -- what gets created ----------------------------------------------------------------------------


def test_register_without_username_generates_a_valid_user_id(matrix: MatrixClient) -> None:
    body = matrix.post("register", {"password": "pw", "auth": DUMMY}).json()
    localpart, _, server = body["user_id"][1:].partition(":")
    assert server == "test.local"
    assert localpart and localpart == localpart.lower()
    assert not localpart.startswith("_")
    assert matrix.whoami(body["access_token"]).json()["user_id"] == body["user_id"]
    assert matrix.login(body["user_id"], "pw")["user_id"] == body["user_id"]


def test_two_registrations_without_username_get_different_user_ids(matrix: MatrixClient) -> None:
    first = matrix.post("register", {"auth": DUMMY}).json()["user_id"]
    second = matrix.post("register", {"auth": DUMMY}).json()["user_id"]
    assert first != second


def test_register_without_password_creates_an_account_no_password_opens(matrix: MatrixClient) -> None:
    body = matrix.post("register", {"username": "nopw", "auth": DUMMY}).json()
    matrix.whoami(body["access_token"])
    for guess in ("", "nopw", "password"):
        resp = matrix.post(
            "login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "nopw"},
                "password": guess,
            },
            expect=None,
        )
        assert_matrix_error(resp, 403, "M_FORBIDDEN")


def test_register_honours_device_id_and_initial_device_display_name(matrix: MatrixClient) -> None:
    body = matrix.post(
        "register",
        {
            "username": "carol",
            "password": "pw",
            "device_id": "MYPHONE",
            "initial_device_display_name": "Carol's phone",
            "auth": DUMMY,
        },
    ).json()
    assert body["device_id"] == "MYPHONE"
    device = matrix.get("devices/MYPHONE", token=body["access_token"]).json()
    assert device["device_id"] == "MYPHONE"
    assert device["display_name"] == "Carol's phone"


def test_inhibit_login_registers_without_a_token_or_device(any_prefix_client: MatrixClient) -> None:
    body = any_prefix_client.post(
        "register", {"username": "carol", "password": "pw", "inhibit_login": True, "auth": DUMMY}
    ).json()
    assert body["user_id"] == "@carol:test.local"
    assert "access_token" not in body
    assert "device_id" not in body
    user = User.objects.get(localpart="carol")
    assert not Device.objects.filter(user=user).exists()
    assert not AccessToken.objects.filter(user=user).exists()
    assert any_prefix_client.login("carol", "pw")["user_id"] == "@carol:test.local"


def test_the_password_is_stored_hashed(matrix: MatrixClient) -> None:
    matrix.register("carol", "s3cret-words")
    user = User.objects.get(localpart="carol")
    assert "s3cret-words" not in user.password
    assert user.check_password("s3cret-words")


# -- refused user names ---------------------------------------------------------------------------


def test_registering_a_taken_username_is_user_in_use(matrix: MatrixClient) -> None:
    matrix.register("carol")
    resp = matrix.post("register", {"username": "carol", "password": "other", "auth": DUMMY}, expect=None)
    assert_matrix_error(resp, 400, "M_USER_IN_USE")
    # the name is checked before any auth, so even the first (auth-less) request fails fast
    resp = matrix.post("register", {"username": "carol"}, expect=None)
    assert_matrix_error(resp, 400, "M_USER_IN_USE")
    assert User.objects.filter(localpart="carol").count() == 1


def test_a_case_variant_of_a_taken_name_cannot_be_registered(matrix: MatrixClient) -> None:
    matrix.register("carol")
    resp = matrix.post("register", {"username": "Carol", "auth": DUMMY}, expect=None)
    assert resp.status_code == 400
    assert resp.json()["errcode"] in {"M_USER_IN_USE", "M_INVALID_USERNAME"}
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "username",
    [
        "Carol",  # upper case
        "car ol",  # space
        "",  # empty
        "x" * 300,  # longer than a whole user ID may be
        "x" * 245,  # fits alone, but @x…:test.local is over 255 bytes
        "car:ol",  # the localpart/server separator
        "carol@home",
        "café",
    ],
)
def test_invalid_usernames_are_refused(matrix: MatrixClient, username: str) -> None:
    resp = matrix.post("register", {"username": username, "password": "pw", "auth": DUMMY}, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_USERNAME")
    assert User.objects.count() == 0


def test_a_username_at_the_length_limit_is_accepted(matrix: MatrixClient) -> None:
    username = "x" * (255 - len("@:test.local"))
    body = matrix.post("register", {"username": username, "auth": DUMMY}).json()
    assert body["user_id"] == f"@{username}:test.local"


def test_all_allowed_localpart_characters_are_accepted(matrix: MatrixClient) -> None:
    body = matrix.post("register", {"username": "a-z.0_9=/+", "auth": DUMMY}).json()
    assert body["user_id"] == "@a-z.0_9=/+:test.local"


def test_usernames_starting_with_an_underscore_are_exclusive(any_prefix_client: MatrixClient) -> None:
    resp = any_prefix_client.post("register", {"username": "_bridge", "auth": DUMMY}, expect=None)
    assert_matrix_error(resp, 400, "M_EXCLUSIVE")
    assert User.objects.count() == 0


def test_the_reserved_username_pattern_is_configurable(matrix: MatrixClient, settings) -> None:
    settings.MATRIX = {**settings.MATRIX, "RESERVED_USERNAMES": r"^admin"}
    assert_matrix_error(
        matrix.post("register", {"username": "admin2", "auth": DUMMY}, expect=None), 400, "M_EXCLUSIVE"
    )
    assert (
        matrix.post("register", {"username": "_fine", "auth": DUMMY}).json()["user_id"] == "@_fine:test.local"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", 42),
        ("password", ["a"]),
        ("device_id", {}),
        ("inhibit_login", "yes"),
        ("initial_device_display_name", 1),
    ],
)
def test_register_fields_of_the_wrong_type_are_bad_json(
    matrix: MatrixClient, field: str, value: object
) -> None:
    resp = matrix.post("register", {"username": "carol", "auth": DUMMY, field: value}, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")
    assert User.objects.count() == 0


# -- kinds and modes -------------------------------------------------------------------------------


def test_guest_registration_is_forbidden(any_prefix_client: MatrixClient) -> None:
    resp = any_prefix_client.post("register", {"auth": DUMMY}, query={"kind": "guest"}, expect=None)
    assert_matrix_error(resp, 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert User.objects.count() == 0


def test_kind_user_is_the_default_and_may_be_explicit(matrix: MatrixClient) -> None:
    body = matrix.post("register", {"username": "carol", "auth": DUMMY}, query={"kind": "user"}).json()
    assert body["user_id"] == "@carol:test.local"


def test_an_unknown_kind_is_invalid_param(matrix: MatrixClient) -> None:
    resp = matrix.post("register", {"username": "carol", "auth": DUMMY}, query={"kind": "robot"}, expect=None)
    assert_matrix_error(resp, 400, "M_INVALID_PARAM")
    assert User.objects.count() == 0


def test_closed_registration_is_forbidden(any_prefix_client: MatrixClient, closed_mode: None) -> None:
    first = any_prefix_client.post("register", {"username": "carol"}, expect=None)
    assert_matrix_error(first, 403, "M_FORBIDDEN")
    with_auth = any_prefix_client.post("register", {"username": "carol", "auth": DUMMY}, expect=None)
    assert_matrix_error(with_auth, 403, "M_FORBIDDEN")
    assert User.objects.count() == 0


def test_token_mode_offers_only_the_registration_token_flow(matrix: MatrixClient, token_mode: None) -> None:
    body = matrix.post("register", {"username": "carol"}, expect=401).json()
    assert body["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert body["session"]


def test_token_mode_refuses_dummy_auth(matrix: MatrixClient, token_mode: None) -> None:
    resp = matrix.post("register", {"username": "carol", "auth": DUMMY}, expect=None)
    assert_matrix_error(resp, 401, "M_FORBIDDEN")
    assert User.objects.count() == 0


def test_a_bad_registration_token_is_a_401_with_an_errcode(matrix: MatrixClient, token_mode: None) -> None:
    RegistrationToken.objects.create(token="good-token")
    session = matrix.post("register", {"username": "carol"}, expect=401).json()["session"]
    resp = matrix.post("register", {"username": "carol", "auth": _token("bad-token", session)}, expect=None)
    body = assert_matrix_error(resp, 401, "M_FORBIDDEN")
    assert body["flows"] == [{"stages": ["m.login.registration_token"]}]
    assert body["session"] == session
    assert User.objects.count() == 0
    # the same session may then go on with a good token
    ok = matrix.post("register", {"username": "carol", "auth": _token("good-token", session)}).json()
    assert ok["user_id"] == "@carol:test.local"


def test_a_registration_token_stage_without_a_token_is_missing_param(
    matrix: MatrixClient, token_mode: None
) -> None:
    resp = matrix.post(
        "register", {"username": "carol", "auth": {"type": "m.login.registration_token"}}, expect=None
    )
    assert resp.status_code in (400, 401)
    assert resp.json()["errcode"] == "M_MISSING_PARAM"
    assert User.objects.count() == 0


def test_a_good_registration_token_registers_and_counts_a_use(
    any_prefix_client: MatrixClient, token_mode: None
) -> None:
    RegistrationToken.objects.create(token="good-token")
    session = any_prefix_client.post("register", {"username": "carol"}, expect=401).json()["session"]
    body = any_prefix_client.post(
        "register", {"username": "carol", "password": "pw", "auth": _token("good-token", session)}
    ).json()
    assert body["user_id"] == "@carol:test.local"
    any_prefix_client.whoami(body["access_token"])
    assert RegistrationToken.objects.get(token="good-token").completed == 1


def test_registration_token_uses_allowed_is_enforced(matrix: MatrixClient, token_mode: None) -> None:
    RegistrationToken.objects.create(token="once", uses_allowed=1)
    matrix.post("register", {"username": "carol", "auth": _token("once")})
    resp = matrix.post("register", {"username": "dave", "auth": _token("once")}, expect=None)
    assert_matrix_error(resp, 401, "M_FORBIDDEN")
    assert not User.objects.filter(localpart="dave").exists()
    assert RegistrationToken.objects.get(token="once").completed == 1


def test_an_expired_registration_token_is_refused(matrix: MatrixClient, token_mode: None) -> None:
    RegistrationToken.objects.create(token="old", expiry_time=timezone.now() - timedelta(minutes=1))
    resp = matrix.post("register", {"username": "carol", "auth": _token("old")}, expect=None)
    assert_matrix_error(resp, 401, "M_FORBIDDEN")
    assert User.objects.count() == 0


def test_a_taken_username_does_not_use_up_a_registration_token(
    matrix: MatrixClient, token_mode: None
) -> None:
    RegistrationToken.objects.create(token="once", uses_allowed=1)
    matrix.post("register", {"username": "carol", "auth": _token("once")})
    RegistrationToken.objects.filter(token="once").update(uses_allowed=2)
    resp = matrix.post("register", {"username": "carol", "auth": _token("once")}, expect=None)
    assert_matrix_error(resp, 400, "M_USER_IN_USE")
    assert RegistrationToken.objects.get(token="once").completed == 1


def test_registration_token_validity(matrix: MatrixClient) -> None:
    now = timezone.now()
    RegistrationToken.objects.create(token="fresh")
    RegistrationToken.objects.create(token="used", uses_allowed=2, completed=2)
    RegistrationToken.objects.create(token="expired", expiry_time=now - timedelta(seconds=1))
    RegistrationToken.objects.create(
        token="later", expiry_time=now + timedelta(hours=1), uses_allowed=3, completed=2
    )
    for token, valid in [
        ("fresh", True),
        ("later", True),
        ("used", False),
        ("expired", False),
        ("unknown", False),
    ]:
        assert matrix.get(VALIDITY, query={"token": token}).json() == {"valid": valid}, token


def test_registration_token_validity_needs_a_token(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.get(VALIDITY, expect=None), 400, "M_MISSING_PARAM")


def test_registration_token_validity_is_only_under_v1(matrix: MatrixClient) -> None:
    resp = matrix.get("register/m.login.registration_token/validity", query={"token": "x"}, expect=None)
    assert_matrix_error(resp, 404, "M_UNRECOGNIZED")


# -- GET /register/available -----------------------------------------------------------------------


def test_an_unused_username_is_available(any_prefix_client: MatrixClient) -> None:
    body = any_prefix_client.get("register/available", query={"username": "carol"}).json()
    assert body == {"available": True}


def test_a_taken_username_is_not_available(any_prefix_client: MatrixClient) -> None:
    any_prefix_client.register("carol")
    resp = any_prefix_client.get("register/available", query={"username": "carol"}, expect=None)
    assert_matrix_error(resp, 400, "M_USER_IN_USE")


@pytest.mark.parametrize(
    ("username", "errcode"),
    [("Carol", "M_INVALID_USERNAME"), ("a b", "M_INVALID_USERNAME"), ("_bot", "M_EXCLUSIVE")],
)
def test_an_unregistrable_username_is_not_available(
    matrix: MatrixClient, username: str, errcode: str
) -> None:
    resp = matrix.get("register/available", query={"username": username}, expect=None)
    assert_matrix_error(resp, 400, errcode)


def test_register_available_needs_a_username(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.get("register/available", expect=None), 400, "M_MISSING_PARAM")
