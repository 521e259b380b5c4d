"""GET /capabilities tells the truth (spec capabilities.yaml): every capability it reports enabled is
backed by a route that does the work, and every one it reports disabled really is unavailable."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from events.room_versions import DEFAULT_ROOM_VERSION, ROOM_VERSIONS
from matrixsrv.views import SUPPORTED_VERSIONS
from tests.matrix_client import MatrixClient, TestUser, assert_matrix_error, q

pytestmark = pytest.mark.django_db

def capabilities(matrix: MatrixClient, user: TestUser) -> dict[str, Any]:
    body = matrix.get("capabilities", token=user).json()
    assert set(body) == {"capabilities"}
    return body["capabilities"]


def test_capabilities_need_a_token(any_prefix_client: MatrixClient) -> None:
    assert_matrix_error(any_prefix_client.get("capabilities", expect=None), 401, "M_MISSING_TOKEN")


def test_the_reported_set(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    assert capabilities(any_prefix_client, alice) == {
        "m.change_password": {"enabled": True},
        "m.room_versions": {
            "default": DEFAULT_ROOM_VERSION,
            "available": {version: "stable" for version in ROOM_VERSIONS},
        },
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.3pid_changes": {"enabled": False},
        "m.get_login_token": {"enabled": False},
    }


# Capabilities the spec added after v1.1, with their version (capabilities.yaml x-addedInMatrixVersion).
NEWER_CAPABILITIES = {
    "m.profile_fields": (1, 16),
    "m.forget_forced_upon_leave": (1, 18),
    "m.account_moderation": (1, 18),
}


def test_no_capability_of_a_spec_version_not_advertised(matrix: MatrixClient, alice: TestUser) -> None:
    """``m.profile_fields`` and the like belong to spec versions /versions does not advertise."""
    newest = max(tuple(int(p) for p in v[1:].split(".")) for v in SUPPORTED_VERSIONS if v.startswith("v"))
    reported = capabilities(matrix, alice)
    for name, added in NEWER_CAPABILITIES.items():
        if added > newest:
            assert name not in reported, name


def test_change_password_is_backed_by_a_working_route(matrix: MatrixClient, alice: TestUser) -> None:
    assert capabilities(matrix, alice)["m.change_password"] == {"enabled": True}
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": alice.password,
    }
    matrix.post("account/password", {"new_password": "brand new", "auth": auth}, token=alice)
    assert User.objects.get(mxid=alice.user_id).check_password("brand new")
    assert matrix.login("alice", "brand new")["user_id"] == alice.user_id


def test_every_available_room_version_can_be_created_and_the_default_is_used(
    matrix: MatrixClient, alice: TestUser
) -> None:
    versions = capabilities(matrix, alice)["m.room_versions"]
    assert versions["available"]
    for version in versions["available"]:
        room_id = matrix.create_room(alice, room_version=version)
        assert matrix.get_state(alice, room_id, "m.room.create")["room_version"] == version
    room_id = matrix.create_room(alice)
    assert matrix.get_state(alice, room_id, "m.room.create")["room_version"] == versions["default"]
    assert versions["default"] in versions["available"]


@pytest.mark.parametrize(("capability", "field", "value"), [
    ("m.set_displayname", "displayname", "Alice A."),
    ("m.set_avatar_url", "avatar_url", "mxc://test.local/avatar"),
])
def test_profile_capabilities_are_backed_by_working_routes(
    matrix: MatrixClient, alice: TestUser, capability: str, field: str, value: str
) -> None:
    assert capabilities(matrix, alice)[capability] == {"enabled": True}
    matrix.put(f"profile/{q(alice.user_id)}/{field}", {field: value}, token=alice)
    assert matrix.get(f"profile/{q(alice.user_id)}/{field}", token=alice).json() == {field: value}


def test_3pid_changes_are_off_and_the_user_has_no_3pids(
    any_prefix_client: MatrixClient, alice: TestUser
) -> None:
    matrix = any_prefix_client
    assert capabilities(matrix, alice)["m.3pid_changes"] == {"enabled": False}
    assert matrix.get("account/3pid", token=alice).json() == {"threepids": []}
    assert_matrix_error(matrix.get("account/3pid", expect=None), 401, "M_MISSING_TOKEN")
    # No route changes them.
    for path in ("account/3pid/add", "account/3pid/bind", "account/3pid/delete", "account/3pid/unbind"):
        assert_matrix_error(matrix.post(path, {}, token=alice, expect=None), 404, "M_UNRECOGNIZED")
    assert_matrix_error(matrix.post("account/3pid", {}, token=alice, expect=None), 405, "M_UNRECOGNIZED")


def test_get_login_token_is_off_and_not_served(matrix: MatrixClient, alice: TestUser) -> None:
    assert capabilities(matrix, alice)["m.get_login_token"] == {"enabled": False}
    resp = matrix.post("/_matrix/client/v1/login/get_token", {}, token=alice, expect=None)
    assert_matrix_error(resp, 404, "M_UNRECOGNIZED")
