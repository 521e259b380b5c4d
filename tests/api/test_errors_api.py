"""Behaviour every client route shares: discovery, JSON errors, body parsing, CORS, rate limits."""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import Device, User
from tests.matrix_client import MatrixClient, assert_matrix_error
from tests.matrix_client import TestUser as Account

pytestmark = pytest.mark.django_db

V3 = "/_matrix/client/v3"


def _assert_cors(resp) -> None:  # type: ignore[no-untyped-def]
    assert resp["Access-Control-Allow-Origin"] == "*"
    methods = {m.strip() for m in resp["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE", "OPTIONS"} <= methods
    headers = {h.strip().lower() for h in resp["Access-Control-Allow-Headers"].split(",")}
    assert {"x-requested-with", "content-type", "authorization"} <= headers


# -- discovery --------------------------------------------------------------------------------------


def test_versions_lists_the_supported_spec_versions(matrix: MatrixClient) -> None:
    resp = matrix.get("/_matrix/client/versions")
    body = resp.json()
    assert "r0.6.1" in body["versions"]
    assert any(v.startswith("v1.") for v in body["versions"])
    assert isinstance(body.get("unstable_features", {}), dict)
    _assert_cors(resp)


def test_versions_needs_no_token_and_ignores_a_bad_one(matrix: MatrixClient) -> None:
    assert matrix.get("/_matrix/client/versions", token="garbage").json()["versions"]


def test_well_known_client_points_at_the_public_base_url(matrix: MatrixClient, settings) -> None:
    settings.MATRIX = {**settings.MATRIX, "PUBLIC_BASEURL": "https://matrix.test.local/"}
    resp = matrix.get("/.well-known/matrix/client")
    assert resp["Content-Type"].startswith("application/json")
    assert resp.json() == {"m.homeserver": {"base_url": "https://matrix.test.local/"}}
    _assert_cors(resp)


# -- unknown paths and methods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"{V3}/no/such/endpoint",
        "/_matrix/client/v9/login",
        "/_matrix/federation/v1/version",
        "/_matrix/nothing",
        "/_matrix/",
        "/_matrix",
        "/.well-known/matrix/nothing",
    ],
)
def test_unknown_paths_are_404_unrecognized_json(matrix: MatrixClient, path: str) -> None:
    resp = matrix.get(path, expect=None)
    assert resp["Content-Type"].startswith("application/json")
    assert_matrix_error(resp, 404, "M_UNRECOGNIZED")
    _assert_cors(resp)


@pytest.mark.parametrize(
    "path",
    [
        f"{V3}/login/",
        f"{V3}/account/whoami/",
        "/_matrix/client/r0/register/",
        "/_matrix/client/versions/",
        "/.well-known/matrix/client/",
        f"{V3}//login",
        "/_matrix/static/client/login",
    ],
)
def test_no_redirects_under_matrix(path: str) -> None:
    for method in ("get", "post"):
        resp = getattr(Client(), method)(path)
        assert resp.status_code not in (301, 302, 307, 308), (method, path, resp.status_code)
        if resp.status_code == 404:
            assert_matrix_error(resp, 404, "M_UNRECOGNIZED")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"{V3}/login"),
        ("PUT", f"{V3}/register"),
        ("GET", f"{V3}/logout"),
        ("DELETE", f"{V3}/account/whoami"),
        ("PATCH", f"{V3}/devices"),
        ("POST", "/_matrix/client/versions"),
        ("PUT", "/.well-known/matrix/client"),
        ("DELETE", f"{V3}/login/fallback"),
        ("PUT", "/_matrix/static/client/login/"),
    ],
)
def test_a_wrong_method_is_405_unrecognized(method: str, path: str) -> None:
    # enforce_csrf_checks: a real client sends no CSRF token, and must still get the Matrix error
    resp = Client(enforce_csrf_checks=True).generic(method, path, data=b"{}", content_type="application/json")
    assert_matrix_error(resp, 405, "M_UNRECOGNIZED")
    _assert_cors(resp)


@pytest.mark.parametrize("path", [f"{V3}/login", "/_matrix/client/versions", "/.well-known/matrix/client"])
def test_head_is_answered_like_get(path: str) -> None:
    resp = Client().head(path)
    assert resp.status_code == 200
    _assert_cors(resp)


def test_api_posts_need_no_csrf_token(alice: Account) -> None:
    client = Client(enforce_csrf_checks=True)
    body = {"type": "m.login.password", "user": "alice", "password": alice.password}
    resp = client.post(f"{V3}/login", data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 200, resp.content


# -- request bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"type": "m.login.password",', b"\xff\xfe{}", b'{"a": NaN}', b"hello"]
)
def test_a_body_that_is_not_json_is_not_json(matrix: MatrixClient, raw: bytes) -> None:
    assert_matrix_error(matrix.post("login", raw=raw, expect=None), 400, "M_NOT_JSON")


def test_a_body_that_is_not_json_changes_nothing_on_an_authenticated_route(
    matrix: MatrixClient, alice: Account
) -> None:
    resp = matrix.post("account/password", raw=b'{"new_password": "x", oops', token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_NOT_JSON")
    assert User.objects.get(localpart="alice").check_password(alice.password)


@pytest.mark.parametrize("raw", [b"[]", b'["m.login.password"]', b'"string"', b"42", b"null", b"true"])
def test_a_json_body_that_is_not_an_object_is_bad_json(matrix: MatrixClient, raw: bytes) -> None:
    assert_matrix_error(matrix.post("login", raw=raw, expect=None), 400, "M_BAD_JSON")
    assert_matrix_error(matrix.post("register", raw=raw, expect=None), 400, "M_BAD_JSON")
    assert User.objects.count() == 0


def test_a_non_object_body_on_an_authenticated_route_is_bad_json(
    matrix: MatrixClient, alice: Account
) -> None:
    for path in ("account/password", "account/deactivate", "delete_devices"):
        resp = matrix.post(path, raw=b"[1]", token=alice, expect=None)
        assert_matrix_error(resp, 400, "M_BAD_JSON")
    resp = matrix.put(f"devices/{alice.device_id}", raw=b"[]", token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")
    matrix.whoami(alice)


def test_a_field_of_the_wrong_type_is_bad_json(matrix: MatrixClient, alice: Account) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": False,
    }
    assert_matrix_error(matrix.post("login", body, expect=None), 400, "M_BAD_JSON")


def test_a_body_over_the_limit_is_too_large(matrix: MatrixClient, alice: Account, settings) -> None:
    settings.MATRIX_MAX_BODY_BYTES = 200
    body = {"type": "m.login.password", "user": "alice", "password": alice.password, "pad": "x" * 300}
    resp = matrix.post("login", body, expect=None)
    assert_matrix_error(resp, 413, "M_TOO_LARGE")
    _assert_cors(resp)
    small = {"type": "m.login.password", "user": "alice", "password": alice.password}
    matrix.post("login", small)  # under the limit is fine


def test_a_body_over_the_limit_is_too_large_even_for_authenticated_routes(
    matrix: MatrixClient, alice: Account, settings
) -> None:
    settings.MATRIX_MAX_BODY_BYTES = 100
    resp = matrix.put(f"devices/{alice.device_id}", {"display_name": "x" * 200}, token=alice, expect=None)
    assert_matrix_error(resp, 413, "M_TOO_LARGE")
    assert Device.objects.get(device_id=alice.device_id).display_name != "x" * 200


def test_an_empty_body_with_json_content_type_reads_as_an_empty_object(
    matrix: MatrixClient, alice: Account
) -> None:
    assert matrix.post("logout", raw=b"", token=alice, content_type="application/json").json() == {}
    assert_matrix_error(matrix.whoami(alice, expect=None), 401, "M_UNKNOWN_TOKEN")
    # and on an unauthenticated route: an empty register body starts user-interactive auth
    body = matrix.post("register", raw=b"", content_type="application/json", expect=401).json()
    assert body["session"]


def test_an_empty_body_without_content_type_reads_as_an_empty_object(
    matrix: MatrixClient, alice: Account
) -> None:
    assert matrix.post("logout/all", raw=b"", token=alice, content_type="").json() == {}


def test_unknown_query_parameters_are_ignored(matrix: MatrixClient, alice: Account) -> None:
    body = matrix.get(
        "account/whoami", token=alice, query={"foo": "bar", "user_id": "@bob:test.local"}
    ).json()
    assert body["user_id"] == alice.user_id
    login = {"type": "m.login.password", "user": "alice", "password": alice.password}
    assert matrix.post("login", login, query={"unknown": "1"}).json()["user_id"] == alice.user_id


def test_unknown_body_fields_are_ignored(matrix: MatrixClient, alice: Account) -> None:
    login = {"type": "m.login.password", "user": "alice", "password": alice.password, "x.custom": {"a": [1]}}
    assert matrix.post("login", login).json()["user_id"] == alice.user_id


# -- unexpected exceptions ---------------------------------------------------------------------------


def test_an_unexpected_exception_is_500_unknown_without_a_traceback(
    alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts import views

    def explode(self, request):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(views.WhoamiView, "get", explode)
    client = Client(raise_request_exception=False)
    resp = client.get(f"{V3}/account/whoami", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert resp.status_code == 500
    assert resp["Content-Type"].startswith("application/json")
    assert resp.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert b"Traceback" not in resp.content
    assert b"secret internal detail" not in resp.content
    _assert_cors(resp)


def test_an_unexpected_exception_in_an_unauthenticated_view_is_500_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from accounts import views

    def explode(self, request):  # type: ignore[no-untyped-def]
        raise KeyError("boom")

    monkeypatch.setattr(views.LoginView, "get", explode)
    resp = Client(raise_request_exception=False).get(f"{V3}/login")
    assert resp.status_code == 500
    assert resp.json() == {"errcode": "M_UNKNOWN", "error": "Internal server error"}


# -- CORS ------------------------------------------------------------------------------------------


def test_every_matrix_response_carries_cors_headers(matrix: MatrixClient, alice: Account) -> None:
    responses = [
        matrix.whoami(alice),  # 200
        matrix.get("account/whoami", expect=None),  # 401
        matrix.post(
            "login", {"type": "m.login.password", "user": "alice", "password": "x"}, expect=None
        ),  # 403
        matrix.get("no/such/thing", expect=None),  # 404
        matrix.request("DELETE", "login", expect=None),  # 405
        matrix.post("login", raw=b"{", expect=None),  # 400
        matrix.post("register", {}, expect=None),  # 401 UIA
        matrix.get("/_matrix/client/versions"),
        matrix.get("/_matrix/static/client/login/"),
    ]
    for resp in responses:
        _assert_cors(resp)


@pytest.mark.parametrize(
    "path",
    [
        f"{V3}/login",
        f"{V3}/account/whoami",
        f"{V3}/devices/ABC",
        "/_matrix/client/r0/sync",
        f"{V3}/no/such/thing",
        "/_matrix/client/versions",
        "/.well-known/matrix/client",
        "/_matrix/media/v3/upload",
    ],
)
def test_options_preflight_is_200_on_any_matrix_path(path: str) -> None:
    resp = Client().options(
        path,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert resp.status_code == 200
    _assert_cors(resp)


def test_options_runs_no_endpoint_logic(matrix: MatrixClient, alice: Account) -> None:
    resp = Client().options(f"{V3}/logout", headers={"Authorization": f"Bearer {alice.access_token}"})
    assert resp.status_code == 200
    matrix.whoami(alice)  # the token was not logged out


def test_non_matrix_paths_get_no_cors_headers() -> None:
    resp = Client().get("/admin/login/")
    assert "Access-Control-Allow-Origin" not in resp


# -- rate limiting ---------------------------------------------------------------------------------


@pytest.fixture
def rate_limited(settings):  # type: ignore[no-untyped-def]
    cache.clear()
    settings.MATRIX = {
        **settings.MATRIX,
        "RATE_LIMIT": True,
        "RATES": {"login": "2/min", "register": "2/min"},
    }
    yield
    cache.clear()


def _assert_limited(resp) -> None:  # type: ignore[no-untyped-def]
    body = assert_matrix_error(resp, 429, "M_LIMIT_EXCEEDED")
    assert isinstance(body["retry_after_ms"], int) and body["retry_after_ms"] > 0
    assert int(resp["Retry-After"]) >= 1
    _assert_cors(resp)


def test_the_third_login_attempt_in_a_minute_is_rate_limited(
    any_prefix_client: MatrixClient, alice: Account, rate_limited: None
) -> None:
    wrong = {"type": "m.login.password", "user": "alice", "password": "wrong"}
    for _ in range(2):
        assert_matrix_error(any_prefix_client.post("login", wrong, expect=None), 403, "M_FORBIDDEN")
    right = {"type": "m.login.password", "user": "alice", "password": alice.password}
    _assert_limited(any_prefix_client.post("login", right, expect=None))
    assert Device.objects.filter(user__localpart="alice").count() == 1  # the limited attempt did nothing


def test_the_third_registration_request_in_a_minute_is_rate_limited(
    matrix: MatrixClient, rate_limited: None
) -> None:
    session = matrix.post("register", {"username": "carol"}, expect=401).json()["session"]
    matrix.post("register", {"username": "carol", "auth": {"type": "m.login.dummy", "session": session}})
    _assert_limited(
        matrix.post("register", {"username": "dave", "auth": {"type": "m.login.dummy"}}, expect=None)
    )
    assert not User.objects.filter(localpart="dave").exists()


def test_login_rate_limits_count_per_client_ip(alice: Account, rate_limited: None) -> None:
    client = Client()
    body = json.dumps({"type": "m.login.password", "user": "alice", "password": alice.password})

    def login(ip: str) -> int:
        return client.post(f"{V3}/login", body, content_type="application/json", REMOTE_ADDR=ip).status_code

    assert [login("10.0.0.1"), login("10.0.0.1"), login("10.0.0.1")] == [200, 200, 429]
    assert login("10.0.0.2") == 200


def test_a_forged_x_forwarded_for_does_not_escape_the_rate_limit(alice: Account, rate_limited: None) -> None:
    client = Client()
    body = json.dumps({"type": "m.login.password", "user": "alice", "password": "wrong"})
    statuses = [
        client.post(
            f"{V3}/login",
            body,
            content_type="application/json",
            REMOTE_ADDR="10.0.0.1",
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        ).status_code
        for i in range(3)
    ]
    assert statuses == [403, 403, 429]


def test_reading_the_login_flows_is_not_rate_limited(matrix: MatrixClient, rate_limited: None) -> None:
    for _ in range(5):
        matrix.get("login")


def test_the_login_fallback_shares_the_login_rate_limit(alice: Account, rate_limited: None) -> None:
    client = Client()
    statuses = [
        client.post("/_matrix/static/client/login/", {"username": "alice", "password": "wrong"}).status_code
        for _ in range(3)
    ]
    assert statuses == [403, 403, 429]
    assert Device.objects.filter(user__localpart="alice").count() == 1


def test_registration_token_validity_is_rate_limited(matrix: MatrixClient, rate_limited: None) -> None:
    url = "/_matrix/client/v1/register/m.login.registration_token/validity"
    for _ in range(2):
        assert matrix.get(url, query={"token": "guess"}).json() == {"valid": False}
    _assert_limited(matrix.get(url, query={"token": "guess"}, expect=None))


def test_username_availability_is_rate_limited_separately_from_registration(
    matrix: MatrixClient, rate_limited: None
) -> None:
    for _ in range(2):
        matrix.get("register/available", query={"username": "carol"})
    _assert_limited(matrix.get("register/available", query={"username": "carol"}, expect=None))
    matrix.post("register", {"username": "carol", "auth": {"type": "m.login.dummy"}})  # own budget


def test_no_rate_limit_when_switched_off(matrix: MatrixClient, alice: Account, settings) -> None:
    cache.clear()
    settings.MATRIX = {
        **settings.MATRIX,
        "RATE_LIMIT": False,
        "RATES": {"login": "1/min", "register": "1/min"},
    }
    for _ in range(4):
        matrix.post("login", {"type": "m.login.password", "user": "alice", "password": alice.password})
