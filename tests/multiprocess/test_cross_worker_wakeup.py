"""A write on one daphne worker wakes a /sync long-poll waiting on another (DESIGN.md §4.5, §5.8).

Two real daphne processes (tests/live.py) share a fresh PostgreSQL database and a Redis channel
layer. Everything goes through HTTP only (no peeking at Redis keys or at the server's internals),
so the tests hold whatever way the wake-ups are routed inside the server:

* bob's message sent through worker B answers alice's long-poll on worker A within a second, with
  the message in its timeline (the long-poll's own timeout is 20 s);
* the negative control: with nothing sent, the long-poll answers at its timeout (2 s), empty, with
  a ``next_batch`` that didn't go backwards;
* an invite sent through B wakes the invitee's long-poll on A.

"The long-poll is waiting" is not observable over HTTP; the tests give it a moment (0.5 s) after
the request started and check it hasn't answered yet before sending, so a pass really went through
the wake-up path (a send that raced ahead of the first read would also be answered at once, by
that read, and prove nothing).

The workers get a Redis database of their own (``redis_database()``): channels_redis's key prefix
("matrixsrv") is fixed in the settings, so the database number is what keeps concurrent runs apart.

PostgreSQL and Redis only. Run with e.g.
``DATABASE_URL=postgres://root@127.0.0.1:5432/test MATRIX_TEST_DB_NAME=test_x pytest -m slow tests/multiprocess``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import pytest

from tests.live import POSTGRES_SCHEMES, LiveServer, live_server

requires_postgres = pytest.mark.skipif(
    urlsplit(os.environ.get("DATABASE_URL", "")).scheme not in POSTGRES_SCHEMES,
    reason="several workers need PostgreSQL (DATABASE_URL=postgres://...)",
)
pytestmark = [pytest.mark.slow, pytest.mark.redis, requires_postgres]

REDIS_BASE_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
# Redis databases these tests may take, one per live server; each is claimed with a key (SET NX
# with an expiry) before it is emptied, so two test runs on one machine never share or flush one.
REDIS_DBS = (7, 8, 9, 10, 11, 12, 13, 14, 15)
CLAIM_KEY = "matrixsrv-tests:claimed-by"
CLAIM_TTL_S = 900
LONG_POLL_MS = 20_000
SETTLE_S = 0.5  # time given to a long-poll to reach its wait before the write that should wake it


# -- Redis: a database of our own -----------------------------------------------------------------------

def _redis_url(db: int) -> str:
    parts = urlsplit(REDIS_BASE_URL)
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextmanager
def redis_database() -> Iterator[str]:
    """Claim a free Redis database among ``REDIS_DBS``, empty it, yield its URL; release it after.

    Skips the test when Redis doesn't answer."""
    import redis

    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    claimed: tuple[redis.Redis, int] | None = None
    try:
        for db in REDIS_DBS:
            client = redis.Redis.from_url(_redis_url(db), socket_timeout=5, socket_connect_timeout=2)
            try:
                if client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_TTL_S):
                    claimed = (client, db)
                    break
            except redis.exceptions.ConnectionError as exc:
                client.close()
                pytest.skip(f"Redis at {REDIS_BASE_URL} doesn't answer: {exc}")
            client.close()
        if claimed is None:
            pytest.fail(f"every Redis database in {REDIS_DBS} is claimed by another run ({CLAIM_KEY})")
        client, db = claimed
        # Leftovers of an earlier (crashed) run: everything but our claim goes (a FLUSHDB that keeps it).
        stale = [k for k in client.scan_iter(count=1000) if k != CLAIM_KEY.encode()]
        if stale:
            client.delete(*stale)
        yield _redis_url(db)
    finally:
        if claimed is not None:
            client, _ = claimed
            try:
                if client.get(CLAIM_KEY) == token.encode():
                    client.flushdb()
            finally:
                client.close()


@contextmanager
def live_server_with_redis(workers: int) -> Iterator[LiveServer]:
    with redis_database() as redis_url, live_server(workers=workers, redis_url=redis_url) as server:
        yield server


# -- a minimal HTTP client (the server is a black box) -------------------------------------------------

class HttpError(AssertionError):
    def __init__(self, method: str, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {url} -> {status} {body[:500]!r}")
        self.status = status


def http(method: str, url: str, body: Any = None, token: str | None = None, *, timeout: float = 30) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise HttpError(method, url, exc.code, exc.read()) from None


class Api:
    """One worker's client API (``base`` is the worker's URL)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.v3 = f"{base}/_matrix/client/v3"

    def register(self, username: str) -> dict:
        return http("POST", f"{self.v3}/register",
                    {"username": username, "password": "pw pw pw pw", "auth": {"type": "m.login.dummy"}})

    def create_room(self, token: str, **body: Any) -> str:
        return http("POST", f"{self.v3}/createRoom", body, token)["room_id"]

    def join(self, token: str, room_id: str) -> None:
        http("POST", f"{self.v3}/join/{quote(room_id, safe='')}", {}, token)

    def invite(self, token: str, room_id: str, user_id: str) -> None:
        http("POST", f"{self.v3}/rooms/{quote(room_id, safe='')}/invite", {"user_id": user_id}, token)

    def send_text(self, token: str, room_id: str, body: str, txn_id: str | None = None) -> str:
        txn = txn_id or secrets.token_hex(8)
        return http("PUT", f"{self.v3}/rooms/{quote(room_id, safe='')}/send/m.room.message/{txn}",
                    {"msgtype": "m.text", "body": body}, token)["event_id"]

    def sync(self, token: str, *, since: str | None = None, timeout_ms: int = 0,
             filter: dict | None = None) -> dict:
        query: dict[str, Any] = {"timeout": timeout_ms}
        if since is not None:
            query["since"] = since
        if filter is not None:
            query["filter"] = json.dumps(filter, separators=(",", ":"))
        return http("GET", f"{self.v3}/sync?{urlencode(query)}", token=token,
                    timeout=timeout_ms / 1000 + 30)


def stream_pos(token: str) -> int:
    """The position in a ``s<pos>`` sync token (matrixsrv's format; DESIGN.md §4.4)."""
    match = re.fullmatch(r"s(\d+)", token)
    assert match, f"unexpected sync token {token!r}"
    return int(match.group(1))


def timeline(body: dict, room_id: str) -> list[dict]:
    return body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])


def all_timeline_events(body: dict) -> list[dict]:
    return [e for room in body.get("rooms", {}).get("join", {}).values()
            for e in room.get("timeline", {}).get("events", [])]


class TimedLongPoll:
    """A /sync long-poll in a thread; ``answered_at`` is time.monotonic() when its answer arrived."""

    def __init__(self, pool: ThreadPoolExecutor, api: Api, token: str, since: str, timeout_ms: int) -> None:
        self.answered_at: float | None = None
        self.started_at = time.monotonic()

        def run() -> dict:
            try:
                return api.sync(token, since=since, timeout_ms=timeout_ms)
            finally:
                self.answered_at = time.monotonic()

        self.future: Future[dict] = pool.submit(run)

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float) -> dict:
        return self.future.result(timeout=timeout)


def _explain(server: LiveServer) -> str:
    return "\n" + server.logs()[-6000:]


# -- the tests -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_workers() -> Iterator[LiveServer]:
    with live_server_with_redis(workers=2) as server:
        yield server


@pytest.fixture
def alice_bob_room(two_workers: LiveServer) -> tuple[Api, Api, dict, dict, str]:
    """alice (registered on A) and bob (on B) both joined to a room bob created on B."""
    a, b = (Api(u) for u in two_workers.urls)
    tag = secrets.token_hex(3)
    alice, bob = a.register(f"alice{tag}"), b.register(f"bob{tag}")
    room_id = b.create_room(bob["access_token"], preset="public_chat")
    a.join(alice["access_token"], room_id)
    return a, b, alice, bob, room_id


def _settle(poll: TimedLongPoll, server: LiveServer) -> None:
    """Give the long-poll time to reach its wait; it must not have answered (nothing happened yet)."""
    time.sleep(SETTLE_S)
    if poll.done():
        pytest.fail(f"the long-poll answered before anything was sent: {poll.result(1)}" + _explain(server))


def test_message_sent_on_worker_b_wakes_long_poll_on_worker_a(two_workers, alice_bob_room) -> None:
    a, b, alice, bob, room_id = alice_bob_room
    since = a.sync(alice["access_token"])["next_batch"]  # also warms worker A up
    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = TimedLongPoll(pool, a, alice["access_token"], since, LONG_POLL_MS)
        _settle(poll, two_workers)
        sent_at = time.monotonic()
        event_id = b.send_text(bob["access_token"], room_id, "ping across workers")
        send_done_at = time.monotonic()
        body = poll.result(timeout=LONG_POLL_MS / 1000 + 10)

    assert poll.answered_at is not None
    latency = poll.answered_at - sent_at
    print(f"send took {1000 * (send_done_at - sent_at):.0f} ms; A answered {1000 * latency:.0f} ms after "
          f"the send started (long-poll waited {poll.answered_at - poll.started_at:.2f} s)")
    assert latency < 1.0, f"A answered {latency:.2f} s after the send: not woken" + _explain(two_workers)
    events = timeline(body, room_id)
    assert event_id in [e["event_id"] for e in events], body
    assert [e["content"]["body"] for e in events if e["event_id"] == event_id] == ["ping across workers"]
    assert stream_pos(body["next_batch"]) > stream_pos(since)


def test_negative_control_nothing_sent_long_poll_runs_to_its_timeout(two_workers, alice_bob_room) -> None:
    a, _b, alice, _bob, room_id = alice_bob_room
    since = a.sync(alice["access_token"])["next_batch"]
    started = time.monotonic()
    body = a.sync(alice["access_token"], since=since, timeout_ms=2000)
    elapsed = time.monotonic() - started
    print(f"idle long-poll answered after {elapsed:.2f} s")
    assert 1.9 <= elapsed <= 3.0, f"answered after {elapsed:.2f} s, expected ~2 s" + _explain(two_workers)
    assert all_timeline_events(body) == [], body
    assert timeline(body, room_id) == []
    assert body["rooms"]["invite"] == {} and body["rooms"]["leave"] == {}, body
    assert stream_pos(body["next_batch"]) >= stream_pos(since)


def test_invite_sent_on_worker_b_wakes_the_invitee_on_worker_a(two_workers) -> None:
    a, b = (Api(u) for u in two_workers.urls)
    tag = secrets.token_hex(3)
    carol, dave = a.register(f"carol{tag}"), b.register(f"dave{tag}")
    room_id = b.create_room(dave["access_token"], preset="private_chat")
    since = a.sync(carol["access_token"])["next_batch"]
    assert room_id not in a.sync(carol["access_token"], since=since)["rooms"]["invite"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = TimedLongPoll(pool, a, carol["access_token"], since, LONG_POLL_MS)
        _settle(poll, two_workers)
        sent_at = time.monotonic()
        b.invite(dave["access_token"], room_id, carol["user_id"])
        body = poll.result(timeout=LONG_POLL_MS / 1000 + 10)

    assert poll.answered_at is not None
    latency = poll.answered_at - sent_at
    print(f"invite: A answered {1000 * latency:.0f} ms after the invite started")
    assert latency < 1.0, f"A answered {latency:.2f} s after the invite: not woken" + _explain(two_workers)
    invite = body["rooms"]["invite"].get(room_id)
    assert invite is not None, body
    members = [e for e in invite["invite_state"]["events"]
               if e["type"] == "m.room.member" and e["state_key"] == carol["user_id"]]
    assert [e["content"]["membership"] for e in members] == ["invite"], invite


def test_a_room_joined_during_a_long_poll_wakes_it_and_then_its_messages_do(two_workers) -> None:
    """erin waits on A in no room; her own join through B (another device) wakes that long-poll; her
    next long-poll on A is woken by a message in the room she just joined."""
    a, b = (Api(u) for u in two_workers.urls)
    tag = secrets.token_hex(3)
    erin, frank = a.register(f"erin{tag}"), b.register(f"frank{tag}")
    room_id = b.create_room(frank["access_token"], preset="public_chat")
    since = a.sync(erin["access_token"])["next_batch"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = TimedLongPoll(pool, a, erin["access_token"], since, LONG_POLL_MS)
        _settle(poll, two_workers)
        sent_at = time.monotonic()
        b.join(erin["access_token"], room_id)
        body = poll.result(timeout=LONG_POLL_MS / 1000 + 10)
        assert poll.answered_at is not None
        latency = poll.answered_at - sent_at
        assert latency < 1.0, f"the join woke A after {latency:.2f} s" + _explain(two_workers)
        assert room_id in body["rooms"]["join"], body

        poll = TimedLongPoll(pool, a, erin["access_token"], body["next_batch"], LONG_POLL_MS)
        _settle(poll, two_workers)
        sent_at = time.monotonic()
        event_id = b.send_text(frank["access_token"], room_id, "welcome")
        body = poll.result(timeout=LONG_POLL_MS / 1000 + 10)
    assert poll.answered_at is not None
    latency = poll.answered_at - sent_at
    assert latency < 1.0, f"a message in the new room woke A after {latency:.2f} s" + _explain(two_workers)
    assert [e["event_id"] for e in timeline(body, room_id)] == [event_id], body


def test_long_polls_on_both_workers_are_woken_by_one_send(two_workers, alice_bob_room) -> None:
    """alice waits on A and bob waits on B; alice's send on A wakes both (the local and the remote)."""
    a, b, alice, bob, room_id = alice_bob_room
    # Both come online first (a first sync sets presence, which wakes the other's long-poll: right,
    # but not what this test waits for); their second syncs write nothing.
    a.sync(alice["access_token"])
    b.sync(bob["access_token"])
    since_a = a.sync(alice["access_token"])["next_batch"]
    since_b = b.sync(bob["access_token"])["next_batch"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        poll_a = TimedLongPoll(pool, a, alice["access_token"], since_a, LONG_POLL_MS)
        poll_b = TimedLongPoll(pool, b, bob["access_token"], since_b, LONG_POLL_MS)
        _settle(poll_a, two_workers)
        _settle(poll_b, two_workers)
        sent_at = time.monotonic()
        event_id = a.send_text(alice["access_token"], room_id, "hello both")
        bodies = [p.result(timeout=LONG_POLL_MS / 1000 + 10) for p in (poll_a, poll_b)]

    for who, poll, body in (("alice on A", poll_a, bodies[0]), ("bob on B", poll_b, bodies[1])):
        assert poll.answered_at is not None
        latency = poll.answered_at - sent_at
        assert latency < 1.0, f"{who} answered {latency:.2f} s after the send" + _explain(two_workers)
        assert event_id in [e["event_id"] for e in timeline(body, room_id)], (who, body)


def test_a_waiter_is_not_woken_by_a_room_it_is_not_in(two_workers, alice_bob_room) -> None:
    """Traffic in a room alice isn't in, sent on B, leaves her long-poll on A waiting (it may wake
    and re-read, but it must not answer with that traffic, nor early with nothing)."""
    a, b, alice, bob, _room_id = alice_bob_room
    other_room = b.create_room(bob["access_token"], preset="private_chat")
    since = a.sync(alice["access_token"])["next_batch"]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = TimedLongPoll(pool, a, alice["access_token"], since, 2000)
        time.sleep(SETTLE_S)
        for i in range(3):
            b.send_text(bob["access_token"], other_room, f"not for alice {i}")
        body = poll.result(timeout=15)
    elapsed = (poll.answered_at or time.monotonic()) - started
    assert 1.9 <= elapsed <= 3.5, f"answered after {elapsed:.2f} s" + _explain(two_workers)
    assert all_timeline_events(body) == [], body
    assert other_room not in body["rooms"]["join"]
    assert stream_pos(body["next_batch"]) >= stream_pos(since)

