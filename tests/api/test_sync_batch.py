"""Syncs answered together (sync.selectors.build_sync_responses, sync/batch.py).

A batch must answer every request exactly as that request alone would have been answered (at the
same stream head): the differential test below builds one mixed batch (initial, incremental, gappy,
filtered, lazy-loading, full-state, an invite, a leave, ignored users, private receipts, typing,
to-device, the same user twice) and compares it with the requests built one by one. The cost of a
batch does not grow with the number of requests when they share a room and a ``since`` (the
long-polls one message wakes), and the long-polls one message wakes are read in one batch.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Device, User
from sync import selectors
from sync.batch import ReadBatcher, get_batcher
from sync.filters import Filter, parse_filter
from sync.selectors import SyncRequest, SyncResult, build_sync_response, build_sync_responses
from tests.api.test_sync_longpoll import ReadCounter, async_sync, in_thread, reads, run  # noqa: F401
from tests.matrix_client import MatrixClient, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync, timeline_bodies

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

VOLATILE = {"age", "last_active_ago"}  # derived from the instant of the read


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _request(
    user: TestUser, since: str | None, definition: dict[str, Any] | None = None, **kw: Any
) -> SyncRequest:
    row = User.objects.get(mxid=user.user_id)
    device = Device.objects.get(user=row, device_id=user.device_id)
    pos = int(since[1:]) if since else None
    return SyncRequest(row, device.pk, pos, parse_filter(definition) if definition else Filter(), **kw)


def _alone(request: SyncRequest) -> dict[str, Any]:
    result = build_sync_response(
        user=request.user,
        device_pk=request.device_pk,
        since=request.since,
        sync_filter=request.sync_filter,
        full_state=request.full_state,
    )
    assert result.body is not None
    return result.body


@pytest.mark.django_db
def test_a_batch_answers_each_request_as_it_would_be_answered_alone(
    matrix: MatrixClient, make_user: Any, alice: TestUser, bob: TestUser
) -> None:
    carol, dave = make_user("carol"), make_user("dave")
    lobby = joined_room_with(matrix, alice, bob, carol)
    named = joined_room_with(matrix, alice, bob, name="named")
    for i in range(3):
        matrix.send_text(alice, lobby, f"early {i}")
    s0 = sync(matrix, bob)["next_batch"]
    matrix.put(
        f"user/{q(bob.user_id)}/account_data/m.ignored_user_list",
        {"ignored_users": {carol.user_id: {}}},
        token=bob,
    )
    matrix.send_text(carol, lobby, "from carol")
    matrix.send_text(alice, named, "in named")
    private = matrix.send_text(alice, lobby, "read privately")
    matrix.post(f"rooms/{q(lobby)}/receipt/m.read.private/{q(private)}", {}, token=carol)
    matrix.post(f"rooms/{q(lobby)}/receipt/m.read/{q(private)}", {}, token=alice)
    invite_room = matrix.create_room(alice)
    matrix.invite(alice, invite_room, dave.user_id)
    s1 = sync(matrix, alice)["next_batch"]
    for i in range(12):  # a gap for a sync from s0 with the default limit of 10
        matrix.send_text(alice, lobby, f"late {i}")
    matrix.send_state(alice, lobby, "m.room.topic", {"topic": "new topic"})
    matrix.leave(carol, lobby)
    matrix.put(f"rooms/{q(named)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 30000}, token=alice)
    matrix.put(
        f"sendToDevice/m.test/{matrix.next_txn_id()}",
        {"messages": {bob.user_id: {bob.device_id: {"hello": "bob"}}}},
        token=alice,
    )

    requests = [
        _request(bob, None),
        _request(bob, s0),
        _request(bob, s1, {"room": {"timeline": {"types": ["m.room.message"], "limit": 3}}}),
        _request(carol, s0),
        _request(carol, s0, {"room": {"include_leave": True}}),
        _request(dave, s0),
        _request(alice, s1, {"room": {"timeline": {"limit": 1}}}),
        _request(alice, s0, {"room": {"state": {"lazy_load_members": True}}}),
        _request(alice, s1),
        _request(alice, s1, full_state=True),
        _request(alice, None, {"room": {"timeline": {"limit": 2}}, "presence": {"not_types": ["*"]}}),
    ]
    batch = build_sync_responses(requests)
    alone = [_alone(request) for request in requests]
    for i, (together, single) in enumerate(zip(batch, alone)):
        assert isinstance(together, SyncResult) and together.body is not None, (i, together)
        assert _stable(together.body) == _stable(single), i
    # the scenario really has what it claims to cover
    bob_since_s0 = batch[1].body
    assert bob_since_s0 is not None and bob_since_s0["rooms"]["join"][lobby]["timeline"]["limited"]
    assert "from carol" not in timeline_bodies(bob_since_s0, lobby)  # ignored
    assert bob_since_s0["to_device"]["events"][0]["content"] == {"hello": "bob"}
    assert dave.user_id and batch[5].body is not None and invite_room in batch[5].body["rooms"]["invite"]
    carol_s0 = batch[3].body
    assert carol_s0 is not None and lobby in carol_s0["rooms"]["leave"]


@pytest.mark.django_db
def test_a_request_that_fails_gets_its_error_and_the_others_their_answers(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined_room_with(matrix, alice, bob)
    requests = [_request(alice, None), _request(bob, None)]
    real = selectors._plan_rooms

    def failing_for_bob(candidates: Any, *args: Any) -> Any:
        if candidates and candidates[0].mxid == bob.user_id:
            raise RuntimeError("bob's plan fails")
        return real(candidates, *args)

    monkeypatch.setattr(selectors, "_plan_rooms", failing_for_bob)
    first, second = build_sync_responses(requests)
    assert isinstance(first, SyncResult) and first.body is not None and first.body["rooms"]["join"]
    assert isinstance(second, RuntimeError)
    with pytest.raises(RuntimeError):
        build_sync_response(
            user=requests[1].user, device_pk=requests[1].device_pk, since=None, sync_filter=Filter()
        )


@pytest.mark.django_db
def test_the_cost_of_a_batch_does_not_grow_with_the_long_polls_one_message_wakes(
    matrix: MatrixClient, make_user: Any, alice: TestUser
) -> None:
    """The long-polls one message wakes share a room and a ``since``: their reads are merged (one
    statement per kind) or identical (run once). On PostgreSQL each step of the batch is also one
    round trip (rawsql.run_batch); on SQLite the statements run one by one."""
    members = [make_user(f"member{i}") for i in range(8)]
    room_id = joined_room_with(matrix, alice, *members)
    tokens = {m.user_id: sync(matrix, m)["next_batch"] for m in members}
    since = max(tokens.values(), key=lambda t: int(t[1:]))
    matrix.send_text(alice, room_id, "to everyone")

    def cost(users: list[TestUser]) -> tuple[int, list[SyncResult | BaseException]]:
        requests = [_request(user, since) for user in users]
        with CaptureQueriesContext(connection) as captured:
            results = build_sync_responses(requests)
        return len(captured.captured_queries), results

    one, (alone,) = cost(members[:1])
    eight, together = cost(members)
    assert eight == one, (one, eight)
    assert one <= (6 if connection.vendor == "postgresql" else 10)
    for member, result in zip(members, together):
        assert isinstance(result, SyncResult) and result.body is not None
        assert timeline_bodies(result.body, room_id) == ["to everyone"], member.user_id
    assert isinstance(alone, SyncResult) and alone.body is not None
    assert _stable(alone.body) == _stable(together[0].body)  # type: ignore[union-attr]


# -- through the route ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_long_polls_one_message_wakes_are_read_in_one_batch(
    reads: ReadCounter, matrix: MatrixClient, make_user: Any, alice: TestUser
) -> None:
    members = [make_user(f"poller{i}") for i in range(6)]
    room_id = joined_room_with(matrix, alice, *members)
    for m in members:
        sync(matrix, m)  # online (their presence takes positions): then nobody has news
    since = {m.user_id: sync(matrix, m)["next_batch"] for m in members}

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        reads.reset()
        pending = [
            asyncio.create_task(async_sync(m, since=since[m.user_id], timeout=10_000)) for m in members
        ]
        await reads.until(len(members))  # every long-poll has read (or skipped its read) and waits
        await asyncio.sleep(0.05)
        before = get_batcher().batches
        await in_thread(matrix.send_text, alice, room_id, "wake up")
        bodies = [body for _, body in await asyncio.wait_for(asyncio.gather(*pending), 5)]
        return get_batcher().batches - before, bodies

    batches, bodies = run(scenario)
    assert all(timeline_bodies(body, room_id) == ["wake up"] for body in bodies)
    assert batches == 1, batches


# -- the batcher on its own ------------------------------------------------------------------------


def _fake(name: str) -> SyncRequest:
    return SyncRequest(name, None, None, Filter())  # type: ignore[arg-type]  # only passed through


def _answer(request: SyncRequest) -> SyncResult:
    return SyncResult(body={"for": request.user}, next_pos=1, is_empty=False)


def test_reads_queued_in_one_turn_of_the_loop_are_one_batch_and_later_ones_the_next() -> None:
    seen: list[list[str]] = []

    async def build(requests: Any) -> list[SyncResult | BaseException]:
        seen.append([r.user for r in requests])
        await asyncio.sleep(0.02)  # the database's time: reads queued now form the next batch
        return [_answer(r) for r in requests]

    async def scenario() -> list[SyncResult]:
        batcher = ReadBatcher()
        first = [asyncio.create_task(batcher.read(_fake(f"u{i}"), build)) for i in range(5)]
        await asyncio.sleep(0.005)  # the first batch is running
        later = [asyncio.create_task(batcher.read(_fake(f"v{i}"), build)) for i in range(3)]
        return await asyncio.gather(*first, *later)

    results = asyncio.run(scenario())
    assert seen == [[f"u{i}" for i in range(5)], [f"v{i}" for i in range(3)]]
    assert [r.body for r in results] == [{"for": f"u{i}"} for i in range(5)] + [
        {"for": f"v{i}"} for i in range(3)
    ]


def test_a_failed_request_raises_in_its_caller_only_and_a_failed_batch_in_every_caller() -> None:
    async def build(requests: Any) -> list[SyncResult | BaseException]:
        if any(r.user == "all-fail" for r in requests):
            raise ConnectionError("database went away")
        return [ValueError(r.user) if r.user == "bad" else _answer(r) for r in requests]

    async def scenario() -> tuple[list[Any], list[Any]]:
        batcher = ReadBatcher()
        one = await asyncio.gather(
            *(batcher.read(_fake(name), build) for name in ("good", "bad", "fine")), return_exceptions=True
        )
        two = await asyncio.gather(
            *(batcher.read(_fake(name), build) for name in ("all-fail", "other")), return_exceptions=True
        )
        return one, two

    one, two = asyncio.run(scenario())
    assert (
        one[0].body == {"for": "good"} and isinstance(one[1], ValueError) and one[2].body == {"for": "fine"}
    )
    assert all(isinstance(r, ConnectionError) for r in two)


def test_a_caller_that_goes_away_does_not_disturb_the_batch() -> None:
    async def build(requests: Any) -> list[SyncResult | BaseException]:
        await asyncio.sleep(0.02)
        return [_answer(r) for r in requests]

    async def scenario() -> tuple[Any, float]:
        batcher = ReadBatcher()
        leaving = asyncio.create_task(batcher.read(_fake("leaving"), build))
        staying = asyncio.create_task(batcher.read(_fake("staying"), build))
        await asyncio.sleep(0.005)
        leaving.cancel()
        started = time.monotonic()
        result = await staying
        return result, time.monotonic() - started

    result, waited = asyncio.run(scenario())
    assert result.body == {"for": "staying"} and waited < 1
