"""Long-polling /sync: real concurrency, through the real route, and the notifier underneath.

The API tests commit their data (``transaction=True``) and run in one event loop (``asyncio.run``),
the topology of a worker process: the async /sync view waits on the loop while the write arrives
through a sync view running in another thread, whose wake-up is published back on the loop (what
asgiref does under daphne). Each test takes well under a second.

They run both ways the view reads the database: in the request thread (tests/settings.py's
``SYNC_DB_IN_REQUEST_THREAD``) and the production path (a pooled thread whose connection is closed
after each read).

The unit tests at the bottom drive ``sync.waiter`` directly: registration and clean-up, wake-up by
position, stale positions, timeouts, a broken subscription, and leaving the group on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.test import AsyncClient

from events.notify import WAKEUP_GROUP, _publish
from sync import views as sync_views
from sync.waiter import Notifier, Waiter, get_notifier
from tests.matrix_client import MatrixClient
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import assert_sync_shape, pos, sync, timeline_bodies

if TYPE_CHECKING:
    from tests.matrix_client import TestUser  # not at runtime: pytest would try to collect it

T = Any
# Upper bounds on "at once" / "woken early": far below the 10 s timeouts they are told apart from, and
# loose enough for a busy CI machine (a typical run takes a few hundredths of a second).
SLOW = 3.0


@pytest.fixture(params=["request-thread", "pooled-thread"])
def db_mode(request: pytest.FixtureRequest, settings: Any) -> str:
    """Both ways /sync runs its queries (sync/views.py::run_db)."""
    settings.MATRIX = {**settings.MATRIX, "SYNC_DB_IN_REQUEST_THREAD": request.param == "request-thread"}
    return request.param


async def async_sync(user: TestUser, **query: Any) -> tuple[float, dict[str, Any]]:
    """GET /sync through Django's AsyncClient (the view runs on this loop); (seconds taken, body)."""
    client = AsyncClient()
    if isinstance(query.get("filter"), dict):
        query["filter"] = json.dumps(query["filter"])
    path = "/_matrix/client/v3/sync?" + urlencode({k: v for k, v in query.items() if v is not None})
    started = time.monotonic()
    resp = await client.get(path, headers={"Authorization": f"Bearer {user.access_token}"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.content[:500]
    body = resp.json()
    assert_sync_shape(body)
    return elapsed, body


def in_thread(fn: Callable[..., T], *args: Any) -> Awaitable[T]:
    """Run a blocking call (a write through the sync test client) in another thread, closing that
    thread's database connection afterwards (the test client does not: it disconnects Django's
    ``close_old_connections``; PostgreSQL could not drop the test database while it stays open)."""

    def call() -> T:
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return sync_to_async(call, thread_sensitive=False)()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run`` the scenario, then close the database connection of asgiref's shared thread,
    where the request-thread mode ran the view's queries."""

    async def main() -> T:
        try:
            return await scenario()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


class ReadCounter:
    """Counts the /sync view's completed database reads (``build_sync_response`` calls).

    A test writes only once the long-poll's first read is over, so the write provably comes after the
    read (the case the wake-up exists for), and so that SQLite's shared-cache in-memory test database,
    where a reader meeting a writer's uncommitted table fails at once ("database table is locked"),
    never sees the two overlap.
    """

    def __init__(self) -> None:
        self.done = 0
        self.skipped = 0  # first reads a long-poll skipped (sync/quiet.py): it parked without one
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        def counted(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.done += 1

        return counted

    def wrap_batch(self, fn: Callable[..., list[T]]) -> Callable[..., list[T]]:
        """A batch of reads (sync/batch.py) counts one per request."""

        def counted(requests: Any) -> list[T]:
            try:
                return fn(requests)
            finally:
                with self._lock:
                    self.done += len(requests)

        return counted

    def wrap_skip(self, fn: Callable[..., T]) -> Callable[..., T]:
        def counted(*args: Any, **kwargs: Any) -> T:
            result = fn(*args, **kwargs)
            if result is not None:
                with self._lock:
                    self.skipped += 1
            return result

        return counted

    def reset(self) -> None:
        with self._lock:
            self.done = self.skipped = 0

    async def until(self, n: int, timeout_s: float = 5.0) -> None:
        """Until ``n`` reads are over, counting a skipped first read as one (the long-poll waits)."""
        deadline = time.monotonic() + timeout_s
        while self.done + self.skipped < n:
            assert time.monotonic() < deadline, f"only {self.done} (+{self.skipped} skipped) of {n} reads done"
            await asyncio.sleep(0.005)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> ReadCounter:
    counter = ReadCounter()
    monkeypatch.setattr(sync_views, "build_sync_response", counter.wrap(sync_views.build_sync_response))
    monkeypatch.setattr(sync_views, "build_sync_responses", counter.wrap_batch(sync_views.build_sync_responses))
    monkeypatch.setattr(sync_views, "_quiet_result", counter.wrap_skip(sync_views._quiet_result))
    return counter


async def sleep_until(started: float, seconds: float) -> None:
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))


@pytest.fixture
def pair(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> tuple[str, str]:
    """A room of alice and bob, and bob's sync token after it."""
    room_id = joined_room_with(matrix, alice, bob)
    return room_id, sync(matrix, bob)["next_batch"]


# -- through the route ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_timeout_without_news_returns_empty_after_the_timeout(
    db_mode: str, bob: TestUser, pair: tuple[str, str]
) -> None:
    _, since = pair

    async def scenario() -> tuple[float, dict[str, Any]]:
        return await async_sync(bob, since=since, timeout=300)

    elapsed, body = run(scenario)
    assert 0.28 <= elapsed < SLOW
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert pos(body["next_batch"]) >= pos(since)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group_messages", ["delivered", "lost"])
def test_message_from_another_thread_wakes_the_long_poll(
    db_mode: str,
    group_messages: str,
    reads: ReadCounter,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
    pair: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """"lost": every message to the channel layer's group is dropped; events.notify still wakes the
    writing worker's own waiters directly (other workers hear of the write through the group)."""
    room_id, since = pair
    if group_messages == "lost":

        async def lost(self: Any, group: str, message: dict[str, Any]) -> None:
            return None

        monkeypatch.setattr(type(get_channel_layer()), "group_send", lost)

    async def scenario() -> tuple[float, float, dict[str, Any]]:
        reads.reset()  # count only this scenario's reads
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000))
        await reads.until(1)  # the long-poll read the database and found nothing: it waits
        await sleep_until(started, 0.3)
        assert not pending.done()
        sent_at = time.monotonic()
        await in_thread(matrix.send_text, alice, room_id, "ping")
        elapsed, body = await asyncio.wait_for(pending, 5)
        return elapsed, time.monotonic() - sent_at, body

    elapsed, after_send, body = run(scenario)
    assert elapsed >= 0.29
    assert after_send < SLOW  # woken by the write, not by the 10 s timeout
    assert timeline_bodies(body, room_id) == ["ping"]
    assert pos(body["next_batch"]) > pos(since)


@pytest.mark.django_db(transaction=True)
def test_event_in_a_room_the_user_is_not_in_does_not_end_the_wait(
    db_mode: str,
    reads: ReadCounter,
    matrix: MatrixClient,
    alice: TestUser,
    bob: TestUser,
    pair: tuple[str, str],
) -> None:
    _, since = pair
    elsewhere = matrix.create_room(alice)

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()  # count only this scenario's reads
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=700))
        await reads.until(1)
        await sleep_until(started, 0.15)
        await in_thread(matrix.send_text, alice, elsewhere, "not for bob")
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert reads.done == 1  # bob was not even woken
    assert elapsed >= 0.68
    assert body["rooms"]["join"] == {}
    assert pos(body["next_batch"]) > pos(since)  # unrelated traffic still moves the token


@pytest.mark.django_db(transaction=True)
def test_wake_up_the_filter_drops_keeps_waiting_then_a_relevant_one_returns(
    reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    watched = joined_room_with(matrix, alice, bob)
    ignored = joined_room_with(matrix, alice, bob)
    since = sync(matrix, bob)["next_batch"]
    only_watched = {"room": {"rooms": [watched]}}

    async def scenario() -> tuple[float, dict[str, Any], float, dict[str, Any]]:
        reads.reset()  # count only this scenario's reads
        first = asyncio.create_task(async_sync(bob, since=since, timeout=600, filter=only_watched))
        await reads.until(1)
        await in_thread(matrix.send_text, alice, ignored, "filtered out")
        quiet_elapsed, quiet = await asyncio.wait_for(first, 5)
        # The waiter is routed by the rooms its filter covers: the other room never woke it.
        assert reads.done == 1
        second = asyncio.create_task(
            async_sync(bob, since=quiet["next_batch"], timeout=10_000, filter=only_watched)
        )
        await reads.until(2)
        await in_thread(matrix.send_text, alice, watched, "wanted")
        elapsed, body = await asyncio.wait_for(second, 5)
        return quiet_elapsed, quiet, elapsed, body

    quiet_elapsed, quiet, elapsed, body = run(scenario)
    assert quiet_elapsed >= 0.58 and quiet["rooms"]["join"] == {}
    assert elapsed < SLOW
    assert list(body["rooms"]["join"]) == [watched]
    assert timeline_bodies(body, watched) == ["wanted"]


@pytest.mark.django_db(transaction=True)
def test_no_waiter_is_left_registered_after_a_request_ends_or_is_cancelled(
    db_mode: str, reads: ReadCounter, bob: TestUser, pair: tuple[str, str]
) -> None:
    _, since = pair

    async def scenario() -> tuple[int, int, int, Notifier]:
        reads.reset()  # count only this scenario's reads
        notifier = get_notifier()
        await async_sync(bob, since=since, timeout=50)
        after_timeout = notifier.waiting
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000))
        # The same position again: its first read is skipped (sync/quiet.py): it parks at once.
        deadline = time.monotonic() + 5.0
        while notifier.waiting < 1:
            assert time.monotonic() < deadline, "the second long-poll never parked"
            await asyncio.sleep(0.005)
        during = notifier.waiting
        assert reads.done == 1  # the first long-poll read; the second parked without reading
        pending.cancel()  # what ASGI does when the client goes away
        with pytest.raises(asyncio.CancelledError):
            await pending
        return after_timeout, during, notifier.waiting, notifier

    after_timeout, during, after_cancel, notifier = run(scenario)
    assert (after_timeout, during, after_cancel) == (0, 1, 0)
    # The loop is gone: its notifier left the wake-up group (no queue keeps filling for it).
    assert notifier.channel is not None
    assert notifier.channel not in get_channel_layer().groups.get(WAKEUP_GROUP, {})


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_from_an_unchanged_position_parks_without_a_read_and_answers_from_one(
    db_mode: str, reads: ReadCounter, matrix: MatrixClient, bob: TestUser, pair: tuple[str, str]
) -> None:
    """sync/quiet.py: the next long-poll from the position a read ended at, with the stream head
    still there, skips its first read, but its answer at the timeout is read: the one-time key count
    changed meanwhile (uploading keys takes no position) and the answer has the new count."""
    _, since = pair

    async def scenario() -> tuple[dict[str, Any], int, float, dict[str, Any], int]:
        reads.reset()
        _, first = await async_sync(bob, since=since, timeout=50)
        after_first = reads.done
        await in_thread(
            lambda: matrix.post("keys/upload", {"one_time_keys": {"signed_curve25519:AAAA": {"key": "k"}}},
                                token=bob)
        )
        elapsed, second = await async_sync(bob, since=first["next_batch"], timeout=300)
        return first, after_first, elapsed, second, reads.done

    first, after_first, elapsed, second, total = run(scenario)
    assert after_first == 1
    assert total == 2  # the second long-poll read only once: at its timeout, for its answer
    assert 0.28 <= elapsed < SLOW
    assert first["device_one_time_keys_count"].get("signed_curve25519", 0) == 0
    assert second["device_one_time_keys_count"]["signed_curve25519"] == 1
    assert second["next_batch"] == first["next_batch"]


@pytest.mark.django_db(transaction=True)
def test_a_skipped_read_with_a_tiny_timeout_still_answers_from_a_read(
    db_mode: str, reads: ReadCounter, bob: TestUser, pair: tuple[str, str]
) -> None:
    """A timeout that has run out before the wait even starts: the answer is still read."""
    _, since = pair

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int, int]:
        _, first = await async_sync(bob, since=since, timeout=50)
        reads.reset()
        _, second = await async_sync(bob, since=first["next_batch"], timeout=1)
        return first, second, reads.done, reads.skipped

    first, second, done, skipped = run(scenario)
    assert (done, skipped) == (1, 1)
    assert second["next_batch"] == first["next_batch"]
    assert second["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}


@pytest.mark.django_db(transaction=True)
def test_a_skipped_read_still_wakes_for_news_and_for_a_moved_head(
    db_mode: str, reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser,
    pair: tuple[str, str],
) -> None:
    """A long-poll parked without a read is woken by a message (its rooms were remembered); and a
    long-poll from a remembered position that the head has moved past reads at once."""
    room_id, since = pair

    async def scenario() -> tuple[float, dict[str, Any], float, dict[str, Any]]:
        _, first = await async_sync(bob, since=since, timeout=50)
        reads.reset()
        started = time.monotonic()
        pending = asyncio.create_task(async_sync(bob, since=first["next_batch"], timeout=10_000))
        await sleep_until(started, 0.3)
        assert not pending.done() and reads.done == 0  # parked without reading
        await in_thread(matrix.send_text, alice, room_id, "ping")
        woken_after, woken = await asyncio.wait_for(pending, 5)
        # The head moved past ``first``'s position: from there, the message is read at once.
        again_after, again = await async_sync(bob, since=first["next_batch"], timeout=10_000)
        return woken_after, woken, again_after, again

    woken_after, woken, again_after, again = run(scenario)
    assert woken_after < SLOW and timeline_bodies(woken, room_id) == ["ping"]
    assert again_after < SLOW and timeline_bodies(again, room_id) == ["ping"]


@pytest.mark.django_db(transaction=True)
def test_timeout_is_capped(settings: Any, bob: TestUser, pair: tuple[str, str]) -> None:
    _, since = pair
    settings.MATRIX = {**settings.MATRIX, "SYNC_TIMEOUT_CAP_MS": 300}

    async def scenario() -> tuple[float, dict[str, Any]]:
        return await async_sync(bob, since=since, timeout=3_600_000)

    elapsed, body = run(scenario)
    assert 0.28 <= elapsed < SLOW
    assert body["rooms"]["join"] == {}


@pytest.mark.django_db(transaction=True)
def test_initial_sync_and_full_state_do_not_wait(bob: TestUser, pair: tuple[str, str]) -> None:
    room_id, since = pair

    async def scenario() -> tuple[float, float]:
        initial, body = await async_sync(bob, timeout=10_000)
        assert room_id in body["rooms"]["join"]
        full, body = await async_sync(bob, since=since, timeout=10_000, full_state="true")
        assert room_id in body["rooms"]["join"]
        return initial, full

    initial, full = run(scenario)
    assert initial < SLOW and full < SLOW


@pytest.mark.django_db(transaction=True)
def test_news_already_there_returns_at_once(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, pair: tuple[str, str]
) -> None:
    room_id, since = pair
    matrix.send_text(alice, room_id, "waiting for you")

    async def scenario() -> tuple[float, dict[str, Any]]:
        return await async_sync(bob, since=since, timeout=10_000)

    elapsed, body = run(scenario)
    assert elapsed < SLOW
    assert timeline_bodies(body, room_id) == ["waiting for you"]


# -- the notifier and its waiters ---------------------------------------------------------------------


def test_waiter_wakes_only_for_a_newer_position() -> None:
    async def scenario() -> None:
        waiter = Waiter()
        waiter.advance(5)
        assert await waiter.wait(after_pos=5, timeout_s=0.05) is False  # stale: at or below after_pos
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, waiter.advance, 4)  # older: ignored
        loop.call_later(0.1, waiter.advance, 6)
        started = time.monotonic()
        assert await waiter.wait(after_pos=5, timeout_s=5) is True
        assert 0.08 <= time.monotonic() - started < SLOW
        assert waiter.pos == 6
        assert await waiter.wait(after_pos=5, timeout_s=5) is True  # already past: at once

    run(scenario)


def test_waiter_times_out() -> None:
    async def scenario() -> float:
        started = time.monotonic()
        assert await Waiter().wait(after_pos=0, timeout_s=0.1) is False
        return time.monotonic() - started

    assert 0.09 <= run(scenario) < SLOW


def test_forced_wake_up_ends_one_wait_only() -> None:
    async def scenario() -> None:
        waiter = Waiter()
        waiter.force()
        assert await waiter.wait(after_pos=10, timeout_s=5) is True
        started = time.monotonic()
        assert await waiter.wait(after_pos=10, timeout_s=0.1) is False  # not a busy loop
        assert time.monotonic() - started >= 0.09

    run(scenario)


def test_notifier_wakes_the_named_users_waiters_by_position() -> None:
    async def scenario() -> None:
        notifier = get_notifier()
        assert get_notifier() is notifier  # one per loop
        layer = get_channel_layer()
        async with notifier.listen(1) as one, notifier.listen(1) as one_again, notifier.listen(2) as two:
            assert notifier.waiting == 3
            await sync_to_async(_publish)(42, [], [1, 3])  # the real publisher, from a worker thread
            assert await one.wait(after_pos=41, timeout_s=2) is True
            assert await one_again.wait(after_pos=41, timeout_s=2) is True
            assert await two.wait(after_pos=0, timeout_s=0.1) is False  # not named
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 40, "users": [1]})
            assert await one.wait(after_pos=42, timeout_s=0.1) is False  # stale position
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "oops": True})  # malformed
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 50, "users": [2]})
            assert await two.wait(after_pos=42, timeout_s=2) is True  # still listening
        assert notifier.waiting == 0
        assert notifier._waiters == {}

    run(scenario)


def test_waiter_is_unregistered_when_its_task_is_cancelled() -> None:
    async def scenario() -> None:
        notifier = get_notifier()

        async def long_poll() -> None:
            async with notifier.listen(7) as waiter:
                await waiter.wait(after_pos=0, timeout_s=30)

        task = asyncio.create_task(long_poll())
        while notifier.waiting == 0:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert notifier.waiting == 0

    run(scenario)


def test_a_broken_subscription_wakes_everyone_to_re_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sync.waiter.RETRY_INTERVAL_S", 0.01)

    async def scenario() -> None:
        notifier = Notifier()
        layer = get_channel_layer()
        async with notifier.listen(9) as waiter:
            real_receive = layer.receive
            calls = 0

            async def failing_receive(channel: str) -> dict[str, Any]:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise ConnectionError("redis went away")
                return await real_receive(channel)

            monkeypatch.setattr(layer, "receive", failing_receive)
            # The notifier is already waiting in the real receive: break it on the next message.
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 1, "users": [999]})
            assert await waiter.wait(after_pos=100, timeout_s=2) is True  # forced: re-read
            # Resubscribed, everyone re-reads once more (wake-ups sent meanwhile were lost) ...
            assert await waiter.wait(after_pos=100, timeout_s=2) is True
            assert waiter.pos == 0
            # ... and real wake-ups work again.
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 101, "users": [9]})
            assert await waiter.wait(after_pos=100, timeout_s=2) is True
            assert waiter.pos == 101

    run(scenario)


def test_room_wake_ups_reach_waiters_by_room_even_before_their_rooms_are_known() -> None:
    async def scenario() -> None:
        notifier = get_notifier()
        layer = get_channel_layer()
        async with notifier.listen(1) as early, notifier.listen(2) as other:
            # A wake-up for room A arrives between subscribing and learning the rooms (the read).
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 7, "rooms": ["!a"], "users": []})
            await asyncio.sleep(0.05)
            notifier.route(early, frozenset({"!a", "!b"}))
            notifier.route(other, frozenset({"!c"}))
            assert await early.wait(after_pos=5, timeout_s=1) is True  # remembered, then matched
            assert await other.wait(after_pos=5, timeout_s=0.1) is False  # not its room
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 9, "rooms": ["!c"], "users": []})
            assert await other.wait(after_pos=7, timeout_s=1) is True
            notifier.route(other, frozenset({"!d"}))  # left !c, joined !d
            await layer.group_send(WAKEUP_GROUP, {"type": "stream.advanced", "pos": 11, "rooms": ["!c"], "users": []})
            assert await other.wait(after_pos=9, timeout_s=0.1) is False
        assert notifier.waiting == 0 and notifier._by_room == {} and notifier._unrouted == set()

    run(scenario)
