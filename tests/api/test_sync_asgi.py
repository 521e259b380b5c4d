"""GET /sync through the ASGI entry point daphne runs (matrixsrv.asgi), whose sync handler skips
Django's per-request thread: the response still carries the API middleware's headers, and a client
that goes away mid-wait ends the long-poll and leaves no waiter behind."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connections

from matrixsrv import asgi
from sync.waiter import get_notifier
from tests.matrix_client import MatrixClient
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser


def _scope(user: TestUser, query: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/_matrix/client/v3/sync",
        "raw_path": b"/_matrix/client/v3/sync",
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"authorization", f"Bearer {user.access_token}".encode())],
        "server": ("127.0.0.1", 8008),
        "client": ("127.0.0.1", 40000),
    }


async def _call(scope: dict[str, Any], disconnect: asyncio.Event) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi.application(scope, receive, send)
    return sent


@pytest.fixture
def pooled(settings: Any) -> None:
    """The production way /sync reads (a pooled thread per read), as under daphne."""
    settings.MATRIX = {**settings.MATRIX, "SYNC_DB_IN_REQUEST_THREAD": False}


@pytest.mark.django_db(transaction=True)
def test_sync_through_the_asgi_entry_point_has_the_api_headers(pooled: None, alice: TestUser) -> None:
    async def scenario() -> list[dict[str, Any]]:
        return await _call(_scope(alice, "timeout=0"), asyncio.Event())

    sent = asyncio.run(scenario())
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 200
    assert headers["access-control-allow-origin"] == "*"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["next_batch"].startswith("s")
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_client_going_away_ends_the_long_poll_and_leaves_no_waiter(
    pooled: None, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]

    async def scenario() -> tuple[int, int, list[dict[str, Any]]]:
        disconnect = asyncio.Event()
        call = asyncio.create_task(_call(_scope(bob, f"since={since}&timeout=20000"), disconnect))
        notifier = get_notifier()
        for _ in range(400):  # until it waits
            await asyncio.sleep(0.01)
            if notifier.waiting:
                break
        waiting = notifier.waiting
        disconnect.set()
        sent = await asyncio.wait_for(call, 5)
        return waiting, notifier.waiting, sent

    waiting_before, waiting_after, sent = asyncio.run(scenario())
    assert waiting_before == 1
    assert waiting_after == 0
    assert sent == []  # nobody to answer
    connections.close_all()
