"""GET/POST /login and the HTML login fallback, through the real routes."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from django.test import Client

from accounts.models import AccessToken, Device, User
from tests.matrix_client import MatrixClient, assert_matrix_error
from tests.matrix_client import TestUser as Account

pytestmark = pytest.mark.django_db

FALLBACK_URLS = [
    "/_matrix/client/v3/login/fallback",
    "/_matrix/client/r0/login/fallback",
    "/_matrix/static/client/login/",
]


def _password_login(user: str, password: str, **extra: object) -> dict:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        **extra,
    }


def _deactivate(matrix: MatrixClient, user: Account) -> None:
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    matrix.post("account/deactivate", {"auth": auth}, token=user)


def _post_form(client: Client, url: str, **fields: str):  # type: ignore[no-untyped-def]
    return client.post(url, data=urlencode(fields), content_type="application/x-www-form-urlencoded")


def _shown_token(html: str) -> str:
    match = re.search(r'id="access_token">([^<]+)<', html)
    assert match, html
    return match.group(1)


# -- GET /login -----------------------------------------------------------------------------------


def test_login_offers_the_password_flow(any_prefix_client: MatrixClient) -> None:
    body = any_prefix_client.get("login").json()
    assert {"type": "m.login.password"} in body["flows"]


# -- POST /login ----------------------------------------------------------------------------------


def test_login_by_localpart_returns_a_working_token(any_prefix_client: MatrixClient, alice: Account) -> None:
    body = any_prefix_client.login("alice", alice.password)
    assert body["user_id"] == "@alice:test.local"
    assert body["home_server"] == "test.local"
    assert body["device_id"] and body["device_id"] != alice.device_id
    assert body["access_token"] != alice.access_token
    whoami = any_prefix_client.whoami(body["access_token"]).json()
    assert whoami == {"user_id": "@alice:test.local", "device_id": body["device_id"], "is_guest": False}


def test_login_by_full_user_id(matrix: MatrixClient, alice: Account) -> None:
    body = matrix.login("@alice:test.local", alice.password)
    assert body["user_id"] == "@alice:test.local"
    matrix.whoami(body["access_token"])


def test_login_user_is_case_insensitive(matrix: MatrixClient, alice: Account) -> None:
    assert matrix.login("Alice", alice.password)["user_id"] == "@alice:test.local"
    assert matrix.login("@ALICE:test.local", alice.password)["user_id"] == "@alice:test.local"


def test_seed_curl_logs_in_with_the_legacy_user_field_and_a_form_content_type(matrix: MatrixClient) -> None:
    matrix.register("example", "wordpass")
    raw = b'{"type":"m.login.password", "user":"example", "password":"wordpass"}'
    body = matrix.post("login", raw=raw, content_type="application/x-www-form-urlencoded").json()
    assert body["user_id"] == "@example:test.local"
    matrix.whoami(body["access_token"])


def test_every_login_makes_a_new_device_and_old_tokens_keep_working(
    matrix: MatrixClient, alice: Account
) -> None:
    first = matrix.login("alice", alice.password)
    second = matrix.login("alice", alice.password)
    assert len({alice.device_id, first["device_id"], second["device_id"]}) == 3
    for token in (alice.access_token, first["access_token"], second["access_token"]):
        matrix.whoami(token)
    assert Device.objects.filter(user__localpart="alice").count() == 3


def test_login_honours_initial_device_display_name(matrix: MatrixClient, alice: Account) -> None:
    body = matrix.login("alice", alice.password, initial_device_display_name="Laptop")
    device = matrix.get(f"devices/{body['device_id']}", token=body["access_token"]).json()
    assert device["display_name"] == "Laptop"


def test_login_response_carries_the_well_known_base_url(
    matrix: MatrixClient, alice: Account, settings
) -> None:
    settings.MATRIX = {**settings.MATRIX, "PUBLIC_BASEURL": "https://matrix.test.local/"}
    body = matrix.login("alice", alice.password)
    assert body["well_known"] == {"m.homeserver": {"base_url": "https://matrix.test.local/"}}


def test_wrong_password_is_forbidden(any_prefix_client: MatrixClient, alice: Account) -> None:
    resp = any_prefix_client.post("login", _password_login("alice", "wrong"), expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert AccessToken.objects.filter(user__localpart="alice").count() == 1


@pytest.mark.parametrize(
    "who", ["nobody", "@nobody:test.local", "@alice:elsewhere.example", "@not an id", ""]
)
def test_unknown_user_is_forbidden(matrix: MatrixClient, alice: Account, who: str) -> None:
    resp = matrix.post("login", _password_login(who, alice.password), expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")


def test_deactivated_user_gets_user_deactivated(matrix: MatrixClient, alice: Account) -> None:
    _deactivate(matrix, alice)
    resp = matrix.post("login", _password_login("alice", alice.password), expect=None)
    assert_matrix_error(resp, 403, "M_USER_DEACTIVATED")
    assert not AccessToken.objects.filter(user__localpart="alice").exists()


def test_unknown_login_type_is_rejected(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.post(
        "login", {"type": "m.login.magic", "user": "alice", "password": alice.password}, expect=None
    )
    assert_matrix_error(resp, 400, "M_UNKNOWN")
    resp = matrix.post("login", {"user": "alice", "password": alice.password}, expect=None)
    assert_matrix_error(resp, 400, "M_UNKNOWN")


def test_unknown_identifier_type_is_rejected(matrix: MatrixClient, alice: Account) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.magic", "user": "alice"},
        "password": "x",
    }
    assert_matrix_error(matrix.post("login", body, expect=None), 400, "M_UNKNOWN")


def test_an_unknown_third_party_identifier_is_forbidden(matrix: MatrixClient, alice: Account) -> None:
    # Spec, "Login": a 3PID the homeserver does not know about gets 403 Forbidden.
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"},
        "password": alice.password,
    }
    assert_matrix_error(matrix.post("login", body, expect=None), 403, "M_FORBIDDEN")


def test_missing_password_is_missing_param(matrix: MatrixClient, alice: Account) -> None:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}}
    assert_matrix_error(matrix.post("login", body, expect=None), 400, "M_MISSING_PARAM")


def test_missing_user_is_missing_param(matrix: MatrixClient) -> None:
    assert_matrix_error(
        matrix.post("login", {"type": "m.login.password", "password": "x"}, expect=None),
        400,
        "M_MISSING_PARAM",
    )
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user"}, "password": "x"}
    assert_matrix_error(matrix.post("login", body, expect=None), 400, "M_MISSING_PARAM")


@pytest.mark.parametrize(
    "body",
    [
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": 1234},
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": ["alice"]}, "password": "x"},
        {"type": "m.login.password", "identifier": "alice", "password": "x"},
        {"type": "m.login.password", "user": "alice", "password": "x", "device_id": 7},
    ],
)
def test_login_fields_of_the_wrong_type_are_bad_json(
    matrix: MatrixClient, alice: Account, body: dict
) -> None:
    assert_matrix_error(matrix.post("login", body, expect=None), 400, "M_BAD_JSON")


def test_reusing_a_device_id_invalidates_the_old_token_of_that_device(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    first = any_prefix_client.login("alice", alice.password, device_id="PHONE")
    second = any_prefix_client.login("alice", alice.password, device_id="PHONE")
    assert first["device_id"] == second["device_id"] == "PHONE"
    assert_matrix_error(any_prefix_client.whoami(first["access_token"], expect=None), 401, "M_UNKNOWN_TOKEN")
    assert any_prefix_client.whoami(second["access_token"]).json()["device_id"] == "PHONE"
    assert any_prefix_client.whoami(alice).json()["device_id"] == alice.device_id  # other devices untouched
    assert Device.objects.filter(user__localpart="alice", device_id="PHONE").count() == 1


def test_the_same_device_id_for_two_users_is_two_devices(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    a = matrix.login("alice", alice.password, device_id="SHARED")
    b = matrix.login("bob", bob.password, device_id="SHARED")
    assert matrix.whoami(a["access_token"]).json()["user_id"] == "@alice:test.local"
    assert matrix.whoami(b["access_token"]).json()["user_id"] == "@bob:test.local"


# -- the HTML login fallback ------------------------------------------------------------------------


@pytest.mark.parametrize("url", FALLBACK_URLS)
def test_login_fallback_renders_an_html_form(url: str) -> None:
    resp = Client().get(url)
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("text/html")
    html = resp.content.decode()
    assert "<form" in html and 'name="username"' in html and 'name="password"' in html


@pytest.mark.parametrize("url", FALLBACK_URLS)
def test_login_fallback_form_logs_in_and_shows_the_user_id_and_token(
    matrix: MatrixClient, alice: Account, url: str
) -> None:
    # a browser's form post: form-encoded fields and no CSRF token
    resp = _post_form(Client(enforce_csrf_checks=True), url, username="alice", password=alice.password)
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "@alice:test.local" in html
    assert "matrixLogin" in html  # the page hands the response to window.matrixLogin.onLogin
    assert matrix.whoami(_shown_token(html)).json()["user_id"] == "@alice:test.local"


def test_login_fallback_accepts_a_full_user_id(matrix: MatrixClient, alice: Account) -> None:
    resp = _post_form(Client(), FALLBACK_URLS[0], username="@alice:test.local", password=alice.password)
    assert matrix.whoami(_shown_token(resp.content.decode())).json()["user_id"] == "@alice:test.local"


def test_login_fallback_with_a_wrong_password_shows_an_error(alice: Account) -> None:
    resp = _post_form(Client(), FALLBACK_URLS[0], username="alice", password="wrong")
    assert resp.status_code == 403
    html = resp.content.decode()
    assert 'id="error"' in html
    assert "<form" in html  # the user can try again
    assert 'id="access_token"' not in html
    assert AccessToken.objects.filter(user__localpart="alice").count() == 1


def test_login_fallback_escapes_what_the_user_typed(alice: Account) -> None:
    resp = _post_form(Client(), FALLBACK_URLS[0], username='"><script>x()</script>', password="wrong")
    assert "<script>x()" not in resp.content.decode()


def test_login_fallback_forwards_query_parameters_to_login(matrix: MatrixClient, alice: Account) -> None:
    # Spec, "Login Fallback": non-credential /login parameters in the query string are forwarded.
    url = "/_matrix/static/client/login/?device_id=FALLBACKDEV&initial_device_display_name=Kiosk"
    resp = _post_form(Client(), url, username="alice", password=alice.password)
    token = _shown_token(resp.content.decode())
    assert matrix.whoami(token).json()["device_id"] == "FALLBACKDEV"
    assert Device.objects.get(user__localpart="alice", device_id="FALLBACKDEV").display_name == "Kiosk"


def test_login_fallback_for_a_deactivated_user_shows_an_error(matrix: MatrixClient, alice: Account) -> None:
    _deactivate(matrix, alice)
    resp = _post_form(Client(), FALLBACK_URLS[0], username="alice", password=alice.password)
    assert resp.status_code == 403
    assert 'id="error"' in resp.content.decode()
    assert User.objects.get(localpart="alice").is_active is False
