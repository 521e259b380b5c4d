"""Fixtures for end-to-end tests: the real homeserver in separate processes (tests/live.py).

* ``live_matrix_server`` (module scope): one daphne worker on a fresh database; a ``LiveServer``.
* ``live_server_url`` (module scope): its base URL, e.g. ``http://127.0.0.1:40123``.
* ``live_server_factory`` (function scope): ``start(workers=2, redis_url=...)`` starts further
  servers, each on its own fresh database, all stopped when the test ends.

(pytest-django's own ``live_server`` fixture is a different thing: an in-process server on the
test database; these names don't shadow it.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.live import LiveServer, live_server


@pytest.fixture(scope="module")
def live_matrix_server() -> Iterator[LiveServer]:
    with live_server(workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def live_server_url(live_matrix_server: LiveServer) -> str:
    return live_matrix_server.url


@pytest.fixture
def live_server_factory() -> Iterator[Callable[..., LiveServer]]:
    """``start(**kwargs)`` takes live_server()'s arguments (workers, redis_url, env, ...)."""
    with ExitStack() as stack:

        def start(**kwargs) -> LiveServer:
            return stack.enter_context(live_server(**kwargs))

        yield start
