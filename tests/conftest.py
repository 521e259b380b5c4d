from __future__ import annotations

import itertools

import pytest

from sync import selectors
from tests.matrix_client import MatrixClient, TestUser

_names = itertools.count()


@pytest.fixture(autouse=True)
def _no_filters_from_earlier_tests() -> None:
    """Each test starts with an empty per-worker cache of uploaded filters (sync.selectors): a test
    database rolled back gives out its primary keys again, which a real one never does."""
    selectors._STORED_FILTERS.clear()


@pytest.fixture(params=["v3", "r0"])
def any_prefix_client(request: pytest.FixtureRequest) -> MatrixClient:
    """The same test on both the current /v3/ and the legacy /r0/ prefix."""
    return MatrixClient(request.param)


@pytest.fixture
def matrix() -> MatrixClient:
    return MatrixClient("v3")


@pytest.fixture
def make_user(matrix: MatrixClient, db: None):
    def make(name: str | None = None, password: str = "correct horse") -> TestUser:
        return matrix.register(name or f"user{next(_names)}", password)

    return make


@pytest.fixture
def alice(make_user) -> TestUser:
    return make_user("alice")


@pytest.fixture
def bob(make_user) -> TestUser:
    return make_user("bob")
