"""GET /devices, GET/PUT/DELETE /devices/{deviceId} and POST /delete_devices, through the real routes."""

from __future__ import annotations

import time

import pytest

from accounts.models import Device
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.matrix_client import TestUser as Account

pytestmark = pytest.mark.django_db


def _password_auth(user: Account, *, password: str | None = None, session: str | None = None) -> dict:
    auth: dict = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password if password is None else password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def _login(matrix: MatrixClient, user: Account, **extra: object) -> dict:
    return matrix.login(user.user_id, user.password, **extra)


def _device_ids(matrix: MatrixClient, user: Account) -> list[str]:
    return sorted(d["device_id"] for d in matrix.get("devices", token=user).json()["devices"])


# -- GET /devices ----------------------------------------------------------------------------------


def test_devices_lists_every_device_of_the_user(
    any_prefix_client: MatrixClient, alice: Account, bob: Account
) -> None:
    laptop = _login(any_prefix_client, alice, initial_device_display_name="Laptop")
    devices = any_prefix_client.get("devices", token=alice).json()["devices"]
    assert sorted(d["device_id"] for d in devices) == sorted([alice.device_id, laptop["device_id"]])
    by_id = {d["device_id"]: d for d in devices}
    assert by_id[laptop["device_id"]]["display_name"] == "Laptop"
    assert bob.device_id not in by_id


def test_requests_update_last_seen_ts_and_ip(matrix: MatrixClient, alice: Account) -> None:
    auth = {"Authorization": f"Bearer {alice.access_token}"}
    before = int(time.time() * 1000)
    assert (
        matrix.http.get("/_matrix/client/v3/account/whoami", REMOTE_ADDR="10.1.2.3", headers=auth).status_code
        == 200
    )
    after = int(time.time() * 1000)
    row = Device.objects.get(user__localpart="alice", device_id=alice.device_id)
    assert row.last_seen_ip == "10.1.2.3"
    assert before <= row.last_seen_ts <= after

    # a request from a new address is recorded at once, and the listing shows it
    resp = matrix.http.get("/_matrix/client/v3/devices", REMOTE_ADDR="10.9.8.7", headers=auth)
    listed = {d["device_id"]: d for d in resp.json()["devices"]}
    assert listed[alice.device_id]["last_seen_ip"] == "10.9.8.7"
    assert listed[alice.device_id]["last_seen_ts"] >= row.last_seen_ts


def test_behind_a_trusted_proxy_last_seen_ip_is_the_forwarded_client(
    matrix: MatrixClient, alice: Account, settings
) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    headers = {"Authorization": f"Bearer {alice.access_token}", "X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    matrix.http.get("/_matrix/client/v3/account/whoami", REMOTE_ADDR="127.0.0.1", headers=headers)
    # the proxy appended the real peer; "6.6.6.6" was supplied by the client and is not believed
    assert Device.objects.get(device_id=alice.device_id).last_seen_ip == "203.0.113.9"


def test_without_trusted_proxies_x_forwarded_for_is_ignored(matrix: MatrixClient, alice: Account) -> None:
    headers = {"Authorization": f"Bearer {alice.access_token}", "X-Forwarded-For": "6.6.6.6"}
    matrix.http.get("/_matrix/client/v3/account/whoami", REMOTE_ADDR="10.4.4.4", headers=headers)
    assert Device.objects.get(device_id=alice.device_id).last_seen_ip == "10.4.4.4"


def test_a_device_never_used_since_login_still_lists(matrix: MatrixClient, alice: Account) -> None:
    unused = _login(matrix, alice)
    listed = {d["device_id"]: d for d in matrix.get("devices", token=alice).json()["devices"]}
    assert unused["device_id"] in listed
    assert listed[alice.device_id]["last_seen_ts"] is not None


def test_devices_needs_a_token(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.get("devices", expect=None), 401, "M_MISSING_TOKEN")


# -- GET / PUT /devices/{deviceId} -------------------------------------------------------------------


def test_get_device_returns_that_device(any_prefix_client: MatrixClient, alice: Account) -> None:
    body = any_prefix_client.get(f"devices/{alice.device_id}", token=alice).json()
    assert body["device_id"] == alice.device_id
    assert "display_name" in body and "last_seen_ts" in body and "last_seen_ip" in body


def test_get_unknown_device_is_not_found(matrix: MatrixClient, alice: Account) -> None:
    assert_matrix_error(matrix.get("devices/NOSUCHDEVICE", token=alice, expect=None), 404, "M_NOT_FOUND")


def test_another_users_device_is_not_found(matrix: MatrixClient, alice: Account, bob: Account) -> None:
    path = f"devices/{bob.device_id}"
    assert_matrix_error(matrix.get(path, token=alice, expect=None), 404, "M_NOT_FOUND")
    assert_matrix_error(
        matrix.put(path, {"display_name": "mine now"}, token=alice, expect=None), 404, "M_NOT_FOUND"
    )
    resp = matrix.delete(path, {"auth": _password_auth(alice)}, token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")
    device = Device.objects.get(user__localpart="bob", device_id=bob.device_id)
    assert device.display_name != "mine now"
    matrix.whoami(bob)


def test_device_ids_with_special_characters_route(matrix: MatrixClient, alice: Account) -> None:
    odd = _login(matrix, alice, device_id="dev ice/ü?#")
    body = matrix.get(f"devices/{q(odd['device_id'])}", token=alice).json()
    assert body["device_id"] == "dev ice/ü?#"


def test_put_device_sets_the_display_name(any_prefix_client: MatrixClient, alice: Account) -> None:
    path = f"devices/{alice.device_id}"
    assert any_prefix_client.put(path, {"display_name": "Work phone"}, token=alice).json() == {}
    assert any_prefix_client.get(path, token=alice).json()["display_name"] == "Work phone"


def test_put_device_without_display_name_leaves_it_unchanged(matrix: MatrixClient, alice: Account) -> None:
    path = f"devices/{alice.device_id}"
    matrix.put(path, {"display_name": "Work phone"}, token=alice)
    matrix.put(path, {}, token=alice)
    assert matrix.get(path, token=alice).json()["display_name"] == "Work phone"


def test_put_device_with_a_non_string_display_name_is_bad_json(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.put(f"devices/{alice.device_id}", {"display_name": 5}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_BAD_JSON")


def test_put_unknown_device_is_not_found_and_creates_nothing(matrix: MatrixClient, alice: Account) -> None:
    resp = matrix.put("devices/NEWDEVICE", {"display_name": "x"}, token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_NOT_FOUND")
    assert not Device.objects.filter(device_id="NEWDEVICE").exists()


# -- DELETE /devices/{deviceId} ---------------------------------------------------------------------


def test_delete_device_requires_uia_then_deletes_it_and_its_token(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    other = _login(any_prefix_client, alice)
    path = f"devices/{other['device_id']}"
    first = any_prefix_client.delete(path, token=alice, expect=401).json()
    assert first["flows"] == [{"stages": ["m.login.password"]}]
    any_prefix_client.whoami(other["access_token"])  # nothing deleted yet

    body = {"auth": _password_auth(alice, session=first["session"])}
    assert any_prefix_client.delete(path, body, token=alice).json() == {}
    assert_matrix_error(any_prefix_client.whoami(other["access_token"], expect=None), 401, "M_UNKNOWN_TOKEN")
    assert_matrix_error(any_prefix_client.get(path, token=alice, expect=None), 404, "M_NOT_FOUND")
    any_prefix_client.whoami(alice)


def test_delete_device_with_a_wrong_password_keeps_the_device(matrix: MatrixClient, alice: Account) -> None:
    other = _login(matrix, alice)
    resp = matrix.delete(
        f"devices/{other['device_id']}",
        {"auth": _password_auth(alice, password="nope")},
        token=alice,
        expect=None,
    )
    assert_matrix_error(resp, 401, "M_FORBIDDEN")
    matrix.whoami(other["access_token"])


def test_deleting_the_calling_device_logs_it_out(matrix: MatrixClient, alice: Account) -> None:
    matrix.delete(f"devices/{alice.device_id}", {"auth": _password_auth(alice)}, token=alice)
    assert_matrix_error(matrix.whoami(alice, expect=None), 401, "M_UNKNOWN_TOKEN")


# -- POST /delete_devices ---------------------------------------------------------------------------


def test_delete_devices_requires_uia_then_deletes_the_listed_devices(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    one, two, keep = (_login(any_prefix_client, alice) for _ in range(3))
    listed = [one["device_id"], two["device_id"], "NOSUCHDEVICE"]
    first = any_prefix_client.post("delete_devices", {"devices": listed}, token=alice, expect=401).json()
    assert first["flows"] == [{"stages": ["m.login.password"]}]
    assert len(_device_ids(any_prefix_client, alice)) == 4

    body = {"devices": listed, "auth": _password_auth(alice, session=first["session"])}
    assert any_prefix_client.post("delete_devices", body, token=alice).json() == {}
    assert _device_ids(any_prefix_client, alice) == sorted([alice.device_id, keep["device_id"]])
    for gone in (one, two):
        assert_matrix_error(
            any_prefix_client.whoami(gone["access_token"], expect=None), 401, "M_UNKNOWN_TOKEN"
        )
    any_prefix_client.whoami(keep["access_token"])


def test_delete_devices_with_a_wrong_password_deletes_nothing(matrix: MatrixClient, alice: Account) -> None:
    other = _login(matrix, alice)
    body = {"devices": [other["device_id"]], "auth": _password_auth(alice, password="nope")}
    assert_matrix_error(matrix.post("delete_devices", body, token=alice, expect=None), 401, "M_FORBIDDEN")
    matrix.whoami(other["access_token"])


def test_delete_devices_cannot_delete_another_users_devices(
    matrix: MatrixClient, alice: Account, bob: Account
) -> None:
    matrix.post("delete_devices", {"devices": [bob.device_id], "auth": _password_auth(alice)}, token=alice)
    matrix.whoami(bob)


def test_delete_devices_without_devices_is_missing_param(
    any_prefix_client: MatrixClient, alice: Account
) -> None:
    resp = any_prefix_client.post("delete_devices", {"auth": _password_auth(alice)}, token=alice, expect=None)
    assert_matrix_error(resp, 400, "M_MISSING_PARAM")
    any_prefix_client.whoami(alice)


@pytest.mark.parametrize("devices", ["ABC", [1, 2], {"ABC": True}])
def test_delete_devices_with_a_non_list_of_strings_is_bad_json(
    matrix: MatrixClient, alice: Account, devices: object
) -> None:
    resp = matrix.post(
        "delete_devices", {"devices": devices, "auth": _password_auth(alice)}, token=alice, expect=None
    )
    assert_matrix_error(resp, 400, "M_BAD_JSON")
