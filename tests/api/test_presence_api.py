"""Presence (spec "Presence"): GET/PUT /presence/{userId}/status, ``set_presence`` on /sync, and
``m.presence`` in /sync's top-level ``presence`` section, including the changes that happen by
themselves (idle, offline, ``currently_active`` ending) reaching a waiting long-poll with no request
to trigger them."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from events.stream import current_stream_position
from presence import actions as presence_actions
from presence import rules
from presence.models import Presence
from sync import views as sync_views
from sync.selectors import SyncResult
from tests.api import test_sync_longpoll as longpoll
from tests.api.test_sync_longpoll import SLOW, ReadCounter, async_sync, in_thread, run
from tests.matrix_client import MatrixClient, assert_matrix_error, q
from tests.rooms_helpers import joined_room_with
from tests.sync_helpers import sync

if TYPE_CHECKING:
    from tests.matrix_client import TestUser

db_mode, reads = longpoll.db_mode, longpoll.reads

pytestmark = pytest.mark.django_db


def status_path(user: TestUser | str) -> str:
    return f"presence/{q(user if isinstance(user, str) else user.user_id)}/status"


def put_presence(matrix: MatrixClient, user: TestUser, presence: str, status_msg: str | None = None,
                 expect: int = 200) -> Any:
    body: dict[str, Any] = {"presence": presence}
    if status_msg is not None:
        body["status_msg"] = status_msg
    return matrix.put(status_path(user), body, token=user, expect=expect)


def get_presence(matrix: MatrixClient, viewer: TestUser, target: TestUser | str, expect: int = 200) -> Any:
    resp = matrix.get(status_path(target), token=viewer, expect=expect)
    return resp.json() if expect == 200 else resp


def presence_of(body: dict[str, Any], user: TestUser) -> list[dict[str, Any]]:
    """The ``m.presence`` contents about ``user`` in a sync answer."""
    events = body["presence"]["events"]
    for e in events:
        assert e["type"] == "m.presence" and e["sender"] == e["content"]["user_id"], e
    return [e["content"] for e in events if e["sender"] == user.user_id]


def quiet_sync(matrix: MatrixClient, user: TestUser, **kw: Any) -> dict[str, Any]:
    """A sync that does not touch the user's own presence."""
    return sync(matrix, user, set_presence="offline", **kw)


@pytest.fixture
def room(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> str:
    return joined_room_with(matrix, alice, bob)


@pytest.fixture
def fast_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presence timers in tenths of a second, on a grid of 10 ms (rules reads them at call time)."""
    monkeypatch.setattr(rules, "ACTIVE_MS", 150)
    monkeypatch.setattr(rules, "IDLE_MS", 300)
    monkeypatch.setattr(rules, "TICK_MS", 10)


# -- GET / PUT --------------------------------------------------------------------------------------


def test_put_then_get_own_presence(any_prefix_client: MatrixClient, alice: TestUser) -> None:
    matrix = any_prefix_client
    assert get_presence(matrix, alice, alice) == {"presence": "offline"}  # never set
    assert put_presence(matrix, alice, "online", "Making cupcakes").json() == {}
    got = get_presence(matrix, alice, alice)
    assert got["presence"] == "online" and got["status_msg"] == "Making cupcakes"
    assert got["currently_active"] is True
    assert 0 <= got["last_active_ago"] < 5_000
    put_presence(matrix, alice, "unavailable")  # no status_msg: cleared
    got = get_presence(matrix, alice, alice)
    assert got["presence"] == "unavailable" and "status_msg" not in got and "currently_active" not in got
    put_presence(matrix, alice, "offline", "on holiday")
    assert get_presence(matrix, alice, alice)["presence"] == "offline"
    assert get_presence(matrix, alice, alice)["status_msg"] == "on holiday"


def test_room_mates_may_get_presence_others_may_not(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    put_presence(matrix, alice, "online", "here")
    carol = make_user("carol")
    assert_matrix_error(get_presence(matrix, carol, alice, expect=403), 403, "M_FORBIDDEN")
    room = joined_room_with(matrix, alice, bob)
    assert get_presence(matrix, bob, alice)["status_msg"] == "here"
    matrix.leave(bob, room)
    assert_matrix_error(get_presence(matrix, bob, alice, expect=403), 403, "M_FORBIDDEN")


def test_get_of_an_unknown_user_is_404(matrix: MatrixClient, alice: TestUser) -> None:
    for target in ("@nobody:localhost", "@someone:elsewhere.example", "not-a-user-id"):
        assert_matrix_error(get_presence(matrix, alice, target, expect=404), 404, "M_NOT_FOUND")


def test_put_for_another_user_is_forbidden(matrix: MatrixClient, alice: TestUser, bob: TestUser) -> None:
    resp = matrix.put(status_path(bob), {"presence": "online"}, token=alice, expect=None)
    assert_matrix_error(resp, 403, "M_FORBIDDEN")
    assert not Presence.objects.filter(mxid=bob.user_id).exists()


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"presence": "busy"}, "M_INVALID_PARAM"),
        ({"presence": "ONLINE"}, "M_INVALID_PARAM"),
        ({"presence": 1}, "M_BAD_JSON"),
        ({}, "M_MISSING_PARAM"),
        ({"presence": "online", "status_msg": 5}, "M_BAD_JSON"),
        ({"presence": "online", "status_msg": "x" * 5000}, "M_INVALID_PARAM"),
        (["online"], "M_BAD_JSON"),
    ],
)
def test_put_body_is_validated(matrix: MatrixClient, alice: TestUser, body: Any, errcode: str) -> None:
    resp = matrix.put(status_path(alice), body, token=alice, expect=None)
    assert_matrix_error(resp, 400, errcode)
    assert not Presence.objects.filter(mxid=alice.user_id).exists()


def test_presence_needs_a_token(matrix: MatrixClient, alice: TestUser) -> None:
    assert_matrix_error(matrix.get(status_path(alice), expect=None), 401, "M_MISSING_TOKEN")


# -- /sync ------------------------------------------------------------------------------------------


def test_presence_reaches_room_mates_and_oneself_through_sync(
    any_prefix_client: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    matrix = any_prefix_client
    joined_room_with(matrix, alice, bob)
    carol = make_user("carol")  # shares no room with alice
    since_bob = quiet_sync(matrix, bob)["next_batch"]
    since_carol = quiet_sync(matrix, carol)["next_batch"]
    put_presence(matrix, alice, "online", "lunch")
    body = quiet_sync(matrix, bob, since=since_bob)
    [seen] = presence_of(body, alice)
    assert seen["presence"] == "online" and seen["status_msg"] == "lunch" and seen["currently_active"] is True
    assert seen["last_active_ago"] >= 0
    assert presence_of(quiet_sync(matrix, carol, since=since_carol), alice) == []
    assert presence_of(quiet_sync(matrix, alice), alice)[0]["status_msg"] == "lunch"  # own presence too
    # Nothing new: nothing sent again.
    assert presence_of(quiet_sync(matrix, bob, since=body["next_batch"]), alice) == []
    # An initial sync has the current presence of every room-mate.
    assert presence_of(quiet_sync(matrix, bob), alice)[0]["presence"] == "online"


def _is_read(sql: str) -> bool:
    upper = sql.lstrip("( ").upper()
    return upper.startswith(("SELECT", "WITH")) and not any(
        word in upper for word in ("INSERT ", "UPDATE ", "DELETE ")
    )


def test_sync_marks_the_user_online_then_writes_nothing(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    since = quiet_sync(matrix, bob)["next_batch"]
    first = sync(matrix, alice)  # set_presence defaults to online
    row = Presence.objects.get(mxid=alice.user_id)
    assert (row.shown_state, row.shown_active) == ("online", True)
    # The answer already holds alice's own change and ends past it: her next sync has nothing new.
    assert [c["presence"] for c in presence_of(first, alice)] == ["online"]
    assert first["next_batch"] == f"s{row.stream_pos}"
    assert presence_of(quiet_sync(matrix, alice, since=first["next_batch"]), alice) == []
    body = quiet_sync(matrix, bob, since=since)
    assert [c["presence"] for c in presence_of(body, alice)] == ["online"]
    # Already online, recently active, with a lease covering the sync: no write at all.
    head = current_stream_position()
    for query in ({}, {"set_presence": "online"}, {"timeout": 0}):
        with CaptureQueriesContext(connection) as captured:
            sync(matrix, alice, since=first["next_batch"], **query)
        sqls = [c["sql"] for c in captured.captured_queries]
        writes = [sql for sql in sqls if not _is_read(sql)]
        assert writes == [], writes
        presence_reads = [  # the token lookup joins the user's own row (accounts.selectors.load_with_token)
            sql for sql in sqls if "presence_presence" in sql and "accounts_accesstoken" not in sql
        ]
        # the presence reads: the user's own row and the room-mates' (in one batch on PostgreSQL)
        assert 1 <= len(presence_reads) <= 2, presence_reads
    assert current_stream_position() == head
    assert Presence.objects.get(mxid=alice.user_id).stream_pos == row.stream_pos


def test_set_presence_offline_and_unavailable(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    quiet_sync(matrix, alice)
    assert not Presence.objects.filter(mxid=alice.user_id).exists()  # offline: not marked online
    since = quiet_sync(matrix, bob)["next_batch"]
    sync(matrix, alice, set_presence="unavailable")
    assert get_presence(matrix, bob, alice)["presence"] == "unavailable"
    body = quiet_sync(matrix, bob, since=since)
    assert [c["presence"] for c in presence_of(body, alice)] == ["unavailable"]
    sync(matrix, alice, set_presence="online")  # back from explicitly unavailable: online, active
    got = get_presence(matrix, bob, alice)
    assert got["presence"] == "online" and got["currently_active"] is True


def test_sync_keeps_the_status_message(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str
) -> None:
    put_presence(matrix, alice, "unavailable", "in a meeting")
    sync(matrix, alice)
    assert get_presence(matrix, bob, alice) | {"last_active_ago": 0} == {
        "presence": "online", "status_msg": "in a meeting", "currently_active": True, "last_active_ago": 0
    }


def test_presence_filter(matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any) -> None:
    carol = make_user("carol")
    joined_room_with(matrix, bob, alice, carol)
    put_presence(matrix, alice, "online")
    put_presence(matrix, carol, "unavailable")

    def senders(presence_filter: dict[str, Any]) -> list[str]:
        body = quiet_sync(matrix, bob, filter={"presence": presence_filter})
        return sorted(e["sender"] for e in body["presence"]["events"])

    assert senders({}) == sorted([alice.user_id, carol.user_id])
    assert senders({"not_types": ["m.presence"]}) == []
    assert senders({"types": ["m.*"]}) == sorted([alice.user_id, carol.user_id])
    assert senders({"types": ["m.typing"]}) == []
    assert senders({"senders": [alice.user_id]}) == [alice.user_id]
    assert senders({"not_senders": [alice.user_id]}) == [carol.user_id]
    assert senders({"limit": 1}) == [carol.user_id]  # the newest change
    assert senders({"limit": 0}) == []


def test_new_room_mates_get_each_others_presence(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any
) -> None:
    room = matrix.create_room(bob, preset="public_chat")
    put_presence(matrix, alice, "online", "hello")
    since = quiet_sync(matrix, bob)["next_batch"]
    matrix.join(alice, room)  # alice's presence is older than ``since``; she is new to bob
    assert [c["status_msg"] for c in presence_of(quiet_sync(matrix, bob, since=since), alice)] == ["hello"]


def test_idle_and_offline_are_announced_once(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str, fast_timers: None
) -> None:
    put_presence(matrix, alice, "online")
    since = quiet_sync(matrix, bob)["next_batch"]
    time.sleep(0.35)  # past ACTIVE_MS and IDLE_MS
    first = quiet_sync(matrix, bob, since=since)
    assert presence_of(first, alice) == []  # due, not announced before this read: announced now
    row = Presence.objects.get(mxid=alice.user_id)
    assert row.shown_state == "unavailable" and row.stream_pos > int(since[1:])
    assert presence_actions.announce_due_presence(user_pks=[row.pk]) is None  # idempotent
    [seen] = presence_of(quiet_sync(matrix, bob, since=first["next_batch"]), alice)
    assert seen["presence"] == "unavailable" and "currently_active" not in seen
    assert seen["last_active_ago"] >= 300
    assert get_presence(matrix, bob, alice)["presence"] == "unavailable"
    # The lease (30 s after a PUT) ends: offline.
    Presence.objects.filter(pk=row.pk).update(online_until_ms=presence_actions.now_ms() - rules.TICK_MS)
    assert get_presence(matrix, bob, alice)["presence"] == "offline"


def test_a_room_mate_of_several_rooms_is_sent_once_and_announced_once(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any, fast_timers: None
) -> None:
    for _ in range(3):
        joined_room_with(matrix, alice, bob)
    carol = make_user("carol")  # online, overdue later, in no room with bob: never read for him
    put_presence(matrix, carol, "online")
    put_presence(matrix, alice, "online", "three rooms")
    since = quiet_sync(matrix, bob)["next_batch"]
    put_presence(matrix, alice, "online", "still three")
    time.sleep(0.35)  # past ACTIVE_MS and IDLE_MS: alice's and carol's changes are overdue
    first = quiet_sync(matrix, bob, since=since)
    [seen] = presence_of(first, alice)  # once, not once per room it is read through
    assert seen["status_msg"] == "still three"
    rows = {p.mxid: p for p in Presence.objects.filter(mxid__in=[alice.user_id, carol.user_id])}
    assert rows[alice.user_id].stream_pos > int(first["next_batch"][1:])  # announced by that read
    assert rows[carol.user_id].stream_pos < int(since[1:])  # not bob's business: left alone
    [idle] = presence_of(quiet_sync(matrix, bob, since=first["next_batch"]), alice)
    assert idle["presence"] == "unavailable"
    assert presence_of(quiet_sync(matrix, bob, since=since), carol) == []


def test_activity_brings_an_idle_user_back_and_is_coalesced(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str, fast_timers: None
) -> None:
    alice_user = User.objects.get(mxid=alice.user_id)
    assert presence_actions.record_activity(user=alice_user) is None  # offline: stays offline
    put_presence(matrix, alice, "online")
    assert presence_actions.record_activity(user=alice_user) is None  # just active: nothing written
    time.sleep(0.35)  # idle
    since = quiet_sync(matrix, bob)["next_batch"]
    written = presence_actions.record_activity(user=alice_user)
    assert written is not None
    pos, _ = written
    assert Presence.objects.get(mxid=alice.user_id).stream_pos == pos
    [seen] = presence_of(quiet_sync(matrix, bob, since=since), alice)
    assert seen["presence"] == "online" and seen["currently_active"] is True


def test_sending_a_message_is_pro_active(
    matrix: MatrixClient, alice: TestUser, bob: TestUser, room: str, fast_timers: None
) -> None:
    """Spec "Last active ago": sending a message to a room is a pro-active event."""
    put_presence(matrix, alice, "online")
    time.sleep(0.35)  # idle
    assert get_presence(matrix, bob, alice)["presence"] == "unavailable"
    since = quiet_sync(matrix, bob)["next_batch"]
    matrix.send_text(alice, room, "back")
    now = get_presence(matrix, bob, alice)
    assert now["presence"] == "online" and now["currently_active"] is True and now["last_active_ago"] < 150
    [seen] = presence_of(quiet_sync(matrix, bob, since=since), alice)
    assert seen["presence"] == "online"


# -- long-polls ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_put_presence_wakes_a_room_mates_long_poll(
    db_mode: str, reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    joined_room_with(matrix, alice, bob)
    since = quiet_sync(matrix, bob)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000, set_presence="offline"))
        await reads.until(1)
        await asyncio.sleep(0.05)
        assert not pending.done()
        await in_thread(put_presence, matrix, alice, "online", "back")
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert elapsed < SLOW
    assert [c["status_msg"] for c in presence_of(body, alice)] == ["back"]


@pytest.mark.django_db(transaction=True)
def test_coming_online_by_sync_wakes_a_room_mates_long_poll(
    db_mode: str, reads: ReadCounter, matrix: MatrixClient, alice: TestUser, bob: TestUser
) -> None:
    joined_room_with(matrix, alice, bob)
    since = quiet_sync(matrix, bob)["next_batch"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        reads.reset()
        pending = asyncio.create_task(async_sync(bob, since=since, timeout=10_000, set_presence="offline"))
        await reads.until(1)
        await asyncio.sleep(0.05)
        await async_sync(alice, timeout=0)  # alice's client connects: online
        return await asyncio.wait_for(pending, 5)

    elapsed, body = run(scenario)
    assert elapsed < SLOW
    assert [c["presence"] for c in presence_of(body, alice)] == ["online"]


@pytest.mark.django_db(transaction=True)
def test_idle_reaches_a_waiting_long_poll_without_any_request(
    db_mode: str, matrix: MatrixClient, alice: TestUser, bob: TestUser, fast_timers: None
) -> None:
    joined_room_with(matrix, alice, bob)
    put_presence(matrix, alice, "online")
    seen = quiet_sync(matrix, bob)
    assert presence_of(seen, alice)[0]["currently_active"] is True

    async def scenario() -> list[dict[str, Any]]:
        since, contents = seen["next_batch"], []
        while not contents or contents[-1]["presence"] != "unavailable":
            elapsed, body = await async_sync(bob, since=since, timeout=10_000, set_presence="offline")
            assert elapsed < SLOW  # woken at the transition, not at the 10 s timeout
            since = body["next_batch"]
            contents += presence_of(body, alice)
        return contents

    contents = run(scenario)
    # First currently_active ends (150 ms), then online -> unavailable (300 ms): one event each.
    assert [(c["presence"], c.get("currently_active")) for c in contents] == [
        ("online", False), ("unavailable", None)
    ]


@pytest.mark.django_db(transaction=True)
def test_offline_reaches_a_waiting_long_poll_without_any_request(
    db_mode: str, matrix: MatrixClient, alice: TestUser, bob: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules, "SYNC_ONLINE_TIMEOUT_MS", 200)
    monkeypatch.setattr(rules, "LEASE_SLACK_MS", 0)
    monkeypatch.setattr(rules, "TICK_MS", 10)
    joined_room_with(matrix, alice, bob)
    sync(matrix, alice, set_presence="unavailable")  # connected (lease: 200 ms after this sync)
    seen = quiet_sync(matrix, bob)
    assert presence_of(seen, alice)[0]["presence"] == "unavailable"

    async def scenario() -> tuple[float, dict[str, Any]]:
        return await async_sync(bob, since=seen["next_batch"], timeout=10_000, set_presence="offline")

    elapsed, body = run(scenario)
    assert elapsed < SLOW
    assert [c["presence"] for c in presence_of(body, alice)] == ["offline"]


@pytest.mark.django_db(transaction=True)
def test_the_long_polls_that_find_a_change_due_together_announce_it_once(
    db_mode: str, matrix: MatrixClient, alice: TestUser, bob: TestUser, make_user: Any, fast_timers: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Everyone in the room waits; alice stops being currently active: one announcement (one
    position) wakes them all, and each gets one event. Those that found it due in the same turn of
    the loop made one call (sync/batch.py): the others' calls found nothing left to announce."""
    others = [bob, make_user("carol"), make_user("dave")]
    joined_room_with(matrix, alice, *others)
    calls: list[tuple[frozenset[int], int | None]] = []
    announce = presence_actions.announce_due_presence

    def counted(*, user_pks: Any) -> int | None:
        pos = announce(user_pks=user_pks)
        calls.append((frozenset(user_pks), pos))
        return pos

    monkeypatch.setattr("sync.views.announce_due_presence", counted)
    put_presence(matrix, alice, "online")
    seen = [quiet_sync(matrix, user)["next_batch"] for user in others]

    async def scenario() -> list[tuple[float, dict[str, Any]]]:
        return list(await asyncio.gather(*(
            async_sync(user, since=since, timeout=10_000, set_presence="offline")
            for user, since in zip(others, seen)
        )))

    answers = run(scenario)
    alice_pk = User.objects.get(mxid=alice.user_id).pk
    assert [users for users, _ in calls] == [frozenset({alice_pk})] * len(calls)
    assert len([pos for _, pos in calls if pos is not None]) == 1
    for elapsed, body in answers:
        assert elapsed < SLOW  # woken when the change fell due, not at the timeout
        shown = [(c["presence"], c["currently_active"]) for c in presence_of(body, alice)]
        assert shown == [("online", False)]


def test_announcements_asked_for_in_one_turn_of_the_loop_are_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What long-polls woken together found due (typing rooms, presence users) is announced with one
    call of each kind, for all of them (sync/views.py, sync/batch.py)."""
    calls: list[tuple[str, frozenset[Any]]] = []
    monkeypatch.setattr("sync.views.announce_due_presence",
                        lambda *, user_pks: calls.append(("presence", frozenset(user_pks))))
    monkeypatch.setattr("sync.views.expire_typing",
                        lambda *, room_ids: calls.append(("typing", frozenset(room_ids))))
    found = [
        SyncResult(body={}, next_pos=1, is_empty=True, overdue_presence=frozenset({1})),
        SyncResult(body={}, next_pos=1, is_empty=True, overdue_presence=frozenset({1, 2}),
                   expired_typing_rooms=frozenset({"!a"})),
        SyncResult(body={}, next_pos=1, is_empty=True, expired_typing_rooms=frozenset({"!b"})),
        SyncResult(body={}, next_pos=1, is_empty=True),  # nothing due: not part of it
    ]

    async def scenario() -> None:
        await asyncio.gather(*(sync_views._announce_expired_typing(result) for result in found))

    run(scenario)
    assert sorted(calls) == [("presence", frozenset({1, 2})), ("typing", frozenset({"!a", "!b"}))]
