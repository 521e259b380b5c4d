"""GET /sync through the ASGI entry point daphne runs (matrixsrv.asgi), whose sync handler skips
Django's per-request thread: the response still carries the API middleware's headers and is counted
in the metrics, errors are Matrix errors (an unexpected one too), the middleware still answers
preflights and oversized bodies, a client that goes away mid-wait ends the long-poll and leaves no
waiter behind, and long-polls that come in together are authenticated together."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connections

from matrixsrv import asgi, metrics
from sync import views
from sync.batch import get_auth_batcher
from sync.waiter import get_notifier
from tests.matrix_client import MatrixClient
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser


def _scope(
    user: TestUser | None, query: str, *, method: str = "GET", path: str = "/_matrix/client/v3/sync",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    auth = [(b"authorization", f"Bearer {user.access_token}".encode())] if user is not None else []
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": auth + (headers or []),
        "server": ("127.0.0.1", 8008),
        "client": ("127.0.0.1", 40000),
    }


def _answer(sent: list[dict[str, Any]]) -> tuple[int, dict[str, str], dict[str, Any]]:
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, json.loads(body)


def _once(scope: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    return _answer(asyncio.run(_call(scope, asyncio.Event())))


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


@pytest.mark.django_db(transaction=True)
def test_sync_through_the_asgi_entry_point_is_counted_under_its_route(pooled: None, alice: TestUser) -> None:
    def count(route: str, status: str) -> float:
        return metrics.HTTP_REQUESTS.labels("GET", route, status)._value.get()

    before = count("_matrix/client/r0/sync", "200"), count("_matrix/client/v3/sync", "401")
    status, headers, body = _once(_scope(alice, "timeout=0", path="/_matrix/client/r0/sync"))
    assert status == 200 and body["next_batch"].startswith("s")
    status, headers, body = _once(_scope(None, "timeout=0"))
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
    assert headers["access-control-allow-origin"] == "*"  # errors carry the API headers too
    after = count("_matrix/client/r0/sync", "200"), count("_matrix/client/v3/sync", "401")
    assert after == (before[0] + 1, before[1] + 1)
    connections.close_all()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("method", "headers", "status", "errcode"),
    [
        ("OPTIONS", [], 200, None),  # a CORS preflight: answered by the middleware, no token needed
        ("GET", [(b"content-length", b"999999999")], 413, "M_TOO_LARGE"),
        ("GET", [(b"content-length", b"many")], 400, "M_INVALID_PARAM"),
        ("POST", [], 405, "M_UNRECOGNIZED"),
    ],
)
def test_the_api_middleware_still_answers_before_the_view(
    pooled: None, alice: TestUser, method: str, headers: list[tuple[bytes, bytes]], status: int,
    errcode: str | None,
) -> None:
    got, got_headers, body = _once(_scope(alice, "timeout=0", method=method, headers=headers))
    assert got == status
    assert body.get("errcode") == errcode
    assert got_headers["access-control-allow-origin"] == "*"
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_an_unexpected_error_is_a_matrix_500(
    pooled: None, alice: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "_authenticate_and_read", broken)
    status, headers, body = _once(_scope(alice, "timeout=0"))
    assert (status, body["errcode"]) == (500, "M_UNKNOWN")
    assert headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "*"
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_long_polls_that_come_in_together_are_authenticated_together(
    pooled: None, matrix: MatrixClient, make_user: Any, alice: TestUser
) -> None:
    """The clients a message answered ask again at once: their access tokens (and the stream head)
    are read in one thread hop and one round trip; each still gets its own answer, a bad token
    only its own 401."""
    members = [make_user(f"again{i}") for i in range(4)]
    joined_room_with(matrix, alice, *members)
    since = {m.user_id: sync(matrix, m)["next_batch"] for m in members}
    _once(_scope(alice, "timeout=0"))  # the schema gate has looked (once per process)

    async def scenario() -> tuple[int, list[list[dict[str, Any]]]]:
        scopes = [_scope(m, f"since={since[m.user_id]}&timeout=1") for m in members]
        anyone = f"since={since[members[0].user_id]}&timeout=1"
        bad = [(b"authorization", b"Bearer not-a-token")]
        scopes += [_scope(None, anyone, headers=bad), _scope(None, anyone)]
        before = get_auth_batcher().batches
        sent = await asyncio.wait_for(asyncio.gather(*(_call(s, asyncio.Event()) for s in scopes)), 10)
        return get_auth_batcher().batches - before, sent

    batches, sent = asyncio.run(scenario())
    *answers, unknown, missing = [_answer(s) for s in sent]
    assert batches == 1, batches
    assert [status for status, _, _ in answers] == [200] * len(members)
    assert [body["next_batch"] >= since[m.user_id] for m, (_, _, body) in zip(members, answers)] == [True] * 4
    assert (unknown[0], unknown[2]["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert (missing[0], missing[2]["errcode"]) == (401, "M_MISSING_TOKEN")
    connections.close_all()


def test_the_workers_startup_heap_is_out_of_the_collectors_sight() -> None:
    """matrixsrv.asgi freezes what exists before the first request (Django, DRF, Twisted...): a full
    garbage collection no longer walks it (it took 60-200 ms with the event loop stopped)."""
    assert gc.get_freeze_count() > 50_000


@pytest.mark.django_db(transaction=True)
def test_the_sync_paths_are_resolved_once(
    pooled: None, alice: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved: list[str] = []
    resolve = asgi.ClientAPIHandler.resolve_request

    def counted(self: Any, request: Any) -> Any:
        resolved.append(request.path_info)
        return resolve(self, request)

    monkeypatch.setattr(asgi.ClientAPIHandler, "resolve_request", counted)
    monkeypatch.setattr(asgi.sync_application, "_matches", {})
    for path in ["/_matrix/client/v3/sync", "/_matrix/client/r0/sync"] * 3:
        status, _, body = _once(_scope(alice, "timeout=0", path=path))
        assert status == 200 and body["next_batch"].startswith("s")
    assert resolved == ["/_matrix/client/v3/sync", "/_matrix/client/r0/sync"]
    connections.close_all()
