import pytest

from tests.matrix_client import MatrixClient, assert_matrix_error


@pytest.mark.django_db
def test_register_then_whoami_on_both_prefixes(any_prefix_client: MatrixClient) -> None:
    user = any_prefix_client.register("carol")
    assert user.user_id == "@carol:test.local"
    body = any_prefix_client.whoami(user).json()
    assert body == {"user_id": "@carol:test.local", "device_id": user.device_id, "is_guest": False}


@pytest.mark.django_db
def test_unknown_path_is_m_unrecognized(matrix: MatrixClient) -> None:
    assert_matrix_error(matrix.get("no/such/endpoint", expect=None), 404, "M_UNRECOGNIZED")
