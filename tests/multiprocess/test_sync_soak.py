"""Soak: many /sync clients following next_batch on three workers while several senders write.

Three daphne workers (tests/live.py) share a fresh PostgreSQL database and a Redis channel layer.
12 users sit in 4 rooms (8 of them in two rooms). While 6 sender threads send 60 messages each,
round-robin over the workers, every user runs a sync loop in its own thread: long-polls
(``timeout=5000``) following ``next_batch``, each against a randomly chosen worker. A 13th user,
syncing the same way from the start while in no room, joins one room once a third of the messages
are out. When the senders are done, every client syncs until it has caught up (bounded in time),
then once more with ``timeout=0`` to see that nothing further arrives.

Checked, over HTTP only:

* every client got every message of every room it is in (all of them were sent after everyone
  joined and after each client's first sync), exactly once, and nothing else;
* per room, in stream order: the order a client received a room's messages is the order
  ``GET /rooms/{id}/messages?dir=f`` returns them from the room's start. (The order of the send
  responses is not it: concurrent sends commit in an order their responses needn't follow.)
* the late joiner got every message after its join, exactly once, in stream order (and of the
  history before it, at most what the joined room's first timeline showed, in order);
* no timeline was ``limited`` (each room gets 90 messages, under the filter's timeline limit of
  100, so a gap would be a server fault, not truncation; only the late joiner's first look at its
  new room may be), and ``next_batch`` never went backwards.

PostgreSQL and Redis only.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import pytest

from tests.multiprocess.test_cross_worker_wakeup import (
    Api,
    http,
    live_server_with_redis,
    requires_postgres,
    stream_pos,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis, requires_postgres]

WORKERS = 3
USERS = 12  # plus the late joiner
LATE_ROOM = 2  # the room the late joiner joins ...
LATE_AFTER = 120  # ... once this many messages have been sent
# room -> its members (users by index); the first creates the room. 8 users are in two rooms.
ROOMS = [
    [0, 1, 2, 3, 4],
    [3, 4, 5, 6, 7],
    [6, 7, 8, 9, 10],
    [9, 10, 11, 0, 1],
]
# sender -> (user, the rooms it alternates between): every room gets 3 senders x 30 = 90 messages.
SENDERS = [(0, (0, 3)), (3, (0, 1)), (6, (1, 2)), (9, (2, 3)), (1, (3, 0)), (7, (2, 1))]
PER_SENDER = 60
LONG_POLL_MS = 5000
TIMELINE_LIMIT = 100
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": TIMELINE_LIMIT}}}, separators=(",", ":"))
SEND_PHASE_LIMIT_S = 60.0  # senders stop starting requests after this
CATCH_UP_LIMIT_S = 25.0  # after the senders are done, clients have this long to catch up
MAX_POLLS_PER_CLIENT = 5000


def _sync(base: str, token: str, since: str, timeout_ms: int) -> dict:
    query = urlencode({"since": since, "timeout": timeout_ms, "filter": SYNC_FILTER})
    return http("GET", f"{base}/_matrix/client/v3/sync?{query}", token=token, timeout=timeout_ms / 1000 + 30)


@dataclass
class SyncClient:
    """One user's sync loop and everything it received after its first sync."""

    index: int
    user_id: str
    token: str
    since: str
    rooms: set[str]
    received: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # room -> event_ids
    foreign: list[tuple[str, str, str]] = field(default_factory=list)  # (room, type, event_id) not ours
    others: list[tuple[str, str, str]] = field(default_factory=list)  # (room, type, state_key) not messages
    limited: list[str] = field(default_factory=list)
    first_seen: set[str] = field(default_factory=set)  # rooms some answer has shown already
    may_be_limited: bool = False  # the late joiner: its new room's first timeline may be limited
    backwards: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    polls: int = 0
    nonempty: int = 0
    caught_up: bool = False
    final_extra: list[str] = field(default_factory=list)  # what the last timeout=0 sync still brought

    def absorb(self, body: dict) -> list[str]:
        """Record one answer; returns the event ids it carried."""
        got: list[str] = []
        nxt = body["next_batch"]
        if stream_pos(nxt) < stream_pos(self.since):
            self.backwards.append((self.since, nxt))
        for room_id, entry in body.get("rooms", {}).get("join", {}).items():
            tl = entry.get("timeline", {})
            if tl.get("limited") and not (self.may_be_limited and room_id not in self.first_seen):
                self.limited.append(room_id)
            self.first_seen.add(room_id)
            for event in tl.get("events", []):
                if room_id not in self.rooms:
                    self.foreign.append((room_id, event.get("type"), event.get("event_id")))
                    continue
                if event.get("type") != "m.room.message":
                    # The late joiner's join (and, for the late joiner, whatever state history its
                    # new room's first timeline reaches back to): checked by the test.
                    self.others.append((room_id, event.get("type"), event.get("state_key")))
                    continue
                self.received[room_id].append(event["event_id"])
                got.append(event["event_id"])
        for section in ("invite", "leave", "knock"):
            for room_id in body.get("rooms", {}).get(section, {}):
                self.foreign.append((room_id, section, ""))
        if got:
            self.nonempty += 1
        self.since = nxt
        return got

    def seen(self) -> set[str]:
        return {e for ids in self.received.values() for e in ids}


def _stream_order(base: str, token: str, room_id: str) -> list[dict]:
    """The room's events in stream order: /messages?dir=f from the start."""
    events: list[dict] = []
    from_token: str | None = None
    for _ in range(50):  # bounded: 90 messages fit in one page of 1000
        query = {"dir": "f", "limit": 1000}
        if from_token:
            query["from"] = from_token
        page = http("GET", f"{base}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages?{urlencode(query)}",
                    token=token)
        events += page["chunk"]
        from_token = page.get("end")
        if not page["chunk"] or not from_token:
            break
    return events


def test_sync_soak_three_workers_every_client_sees_every_event_once_in_order() -> None:
    started = time.monotonic()
    with live_server_with_redis(WORKERS) as server:
        urls = server.urls
        apis = [Api(u) for u in urls]
        tag = secrets.token_hex(3)
        users = [apis[i % WORKERS].register(f"soak{tag}u{i}") for i in range(USERS)]
        room_ids: list[str] = []
        for r, members in enumerate(ROOMS):
            creator = users[members[0]]
            room_ids.append(apis[r % WORKERS].create_room(creator["access_token"], preset="public_chat",
                                                           name=f"soak {r}"))
            for k, m in enumerate(members[1:]):
                apis[(r + k) % WORKERS].join(users[m]["access_token"], room_ids[-1])
        rooms_of = {i: {room_ids[r] for r, ms in enumerate(ROOMS) if i in ms} for i in range(USERS)}

        late_user = apis[USERS % WORKERS].register(f"soak{tag}late")
        late_room = room_ids[LATE_ROOM]

        # Each client's starting point: an initial sync (everything up to here is "before").
        clients = []
        for i, u in enumerate(users):
            first = apis[i % WORKERS].sync(u["access_token"])
            assert set(first["rooms"]["join"]) == rooms_of[i], first["rooms"]["join"].keys()
            clients.append(SyncClient(i, u["user_id"], u["access_token"], first["next_batch"], rooms_of[i]))
        first = apis[USERS % WORKERS].sync(late_user["access_token"])
        assert first["rooms"]["join"] == {}, first
        late = SyncClient(USERS, late_user["user_id"], late_user["access_token"], first["next_batch"], {late_room},
                          may_be_limited=True)
        clients.append(late)

        senders_done = threading.Event()
        wanted: dict[int, set[str]] = {}  # client -> the messages it must get; set before senders_done
        hard_deadline = time.monotonic() + SEND_PHASE_LIMIT_S + CATCH_UP_LIMIT_S
        rng = random.Random(tag)
        worker_choices = [[rng.randrange(WORKERS) for _ in range(MAX_POLLS_PER_CLIENT)] for _ in clients]

        def sync_loop(client: SyncClient) -> None:
            choices = iter(worker_choices[client.index])
            catch_up_deadline: float | None = None
            try:
                while client.polls < MAX_POLLS_PER_CLIENT and time.monotonic() < hard_deadline:
                    if senders_done.is_set():
                        if catch_up_deadline is None:
                            catch_up_deadline = time.monotonic() + CATCH_UP_LIMIT_S
                        if wanted[client.index] <= client.seen():
                            client.caught_up = True
                            break
                        if time.monotonic() > catch_up_deadline:
                            break
                    body = _sync(urls[next(choices)], client.token, client.since, LONG_POLL_MS)
                    client.polls += 1
                    client.absorb(body)
                if client.caught_up:  # nothing more may come: no duplicates, no strays
                    body = _sync(urls[next(choices)], client.token, client.since, 0)
                    client.final_extra = client.absorb(body)
            except Exception as exc:  # noqa: BLE001 - reported by the test below
                client.errors.append(repr(exc))

        sent: dict[str, list[str]] = defaultdict(list)  # room -> event ids, in send-response order
        send_errors: list[str] = []
        send_lock = threading.Lock()

        def send_loop(k: int) -> None:
            user_index, sender_rooms = SENDERS[k]
            token = users[user_index]["access_token"]
            for i in range(PER_SENDER):
                if time.monotonic() > send_deadline:
                    send_errors.append(f"sender {k} stopped at {i}: time limit")
                    return
                room_id = room_ids[sender_rooms[i % len(sender_rooms)]]
                try:
                    event_id = apis[(k + i) % WORKERS].send_text(token, room_id, f"soak {k}/{i}", f"s{k}-{i}")
                except Exception as exc:  # noqa: BLE001 - reported by the test below
                    send_errors.append(f"sender {k} message {i}: {exc!r}")
                    continue
                with send_lock:
                    sent[room_id].append(event_id)

        sync_threads = [threading.Thread(target=sync_loop, args=(c,), name=f"sync-{c.index}", daemon=True)
                        for c in clients]
        for t in sync_threads:
            t.start()
        time.sleep(0.5)  # let the first long-polls start before the traffic does
        send_started = time.monotonic()
        send_deadline = send_started + SEND_PHASE_LIMIT_S
        send_threads = [threading.Thread(target=send_loop, args=(k,), name=f"send-{k}", daemon=True)
                        for k in range(len(SENDERS))]
        for t in send_threads:
            t.start()
        # The late join, through a worker chosen at random, while the senders are going.
        late_joined_at_count: int | None = None
        while any(t.is_alive() for t in send_threads) and time.monotonic() < send_deadline:
            with send_lock:
                count = sum(len(v) for v in sent.values())
            if late_joined_at_count is None and count >= LATE_AFTER:
                late_joined_at_count = count
                apis[rng.randrange(WORKERS)].join(late.token, late_room)
            time.sleep(0.01)
        for t in send_threads:
            t.join(max(0.1, hard_deadline - time.monotonic()))
        send_wall = time.monotonic() - send_started

        # What each client must get, from the stream order (/messages?dir=f), before telling the
        # clients that the senders are done.
        order_events = {room: _stream_order(urls[0], users[ROOMS[r][0]]["access_token"], room)
                        for r, room in enumerate(room_ids)}
        order = {room: [e["event_id"] for e in evs if e["type"] == "m.room.message"]
                 for room, evs in order_events.items()}
        late_events = order_events[late_room]
        join_index = next((i for i, e in enumerate(late_events) if e["type"] == "m.room.member"
                           and e.get("state_key") == late.user_id and e["content"].get("membership") == "join"),
                          None)
        assert join_index is not None, "the late joiner's join is not in the room"
        after_join = [e["event_id"] for e in late_events[join_index + 1:] if e["type"] == "m.room.message"]
        for c in clients:
            wanted[c.index] = set(after_join) if c is late else {e for r in c.rooms for e in sent.get(r, ())}
        senders_done.set()
        for t in sync_threads:
            t.join(max(0.1, hard_deadline + LONG_POLL_MS / 1000 + 35 - time.monotonic()))
        catch_up_wall = time.monotonic() - send_started - send_wall
        logs = server.logs()

    total_sent = sum(len(v) for v in sent.values())
    polls = sum(c.polls for c in clients)
    print(f"soak: {total_sent} messages in {send_wall:.1f} s ({total_sent / send_wall:.0f}/s) from "
          f"{len(SENDERS)} senders; {len(clients)} clients made {polls} long-polls "
          f"({sum(c.nonempty for c in clients)} with messages); the late joiner joined after "
          f"{late_joined_at_count} messages, {len(after_join)} of its room's came after its join; caught up "
          f"{catch_up_wall:.1f} s after the last send; total {time.monotonic() - started:.1f} s")

    assert not send_errors, send_errors[:10]
    assert total_sent == len(SENDERS) * PER_SENDER
    assert all(t.is_alive() is False for t in sync_threads + send_threads), "a thread overran its bounds"
    problems = {c.user_id: c.errors for c in clients if c.errors}
    assert not problems, f"{problems}\n{logs[-5000:]}"

    for room, ids in order.items():  # /messages has exactly what was sent, each once
        assert Counter(ids) == Counter(sent[room]), f"/messages for {room} differs from what was sent"
    assert late_joined_at_count is not None and 0 < len(after_join) < len(order[late_room]), (
        "the late join didn't happen mid-stream", late_joined_at_count, len(after_join))

    for c in clients:
        who = f"client {c.index} ({c.user_id})"
        missing = wanted[c.index] - c.seen()
        assert c.caught_up, f"{who} didn't catch up in time: missing {len(missing)} of {len(wanted[c.index])}\n" + (
            logs[-3000:])
        assert c.backwards == [], (who, c.backwards)
        assert c.limited == [], (who, "limited timelines", c.limited)
        assert c.foreign == [], (who, "events it shouldn't have got", c.foreign[:10])
        late_join = (late_room, "m.room.member", late.user_id)
        if c is not late:  # the late joiner's join, once, in the rooms it joined; nothing else
            assert c.others == ([late_join] if late_room in c.rooms else []), (who, c.others)
        else:
            assert c.others.count(late_join) == 1, (who, c.others)
        assert c.final_extra == [], (who, "more after catching up", c.final_extra)
        assert set(c.received) <= c.rooms
        for room in c.rooms:
            got = c.received.get(room, [])
            dupes = [e for e, n in Counter(got).items() if n > 1]
            assert not dupes, (who, room, "received more than once", dupes[:5])
            if c is late:
                # Everything after the join, and before it at most a stretch of history right up to it.
                assert set(after_join) <= set(got), (who, "missing after its join", set(after_join) - set(got))
                expected_order = order[room][len(order[room]) - len(got):]
            else:
                assert set(got) == set(sent[room]), (who, room, "missing", set(sent[room]) - set(got),
                                                     "unexpected", set(got) - set(sent[room]))
                expected_order = order[room]
            assert got == expected_order, (who, room, "not in stream order", next(
                (i, a, b) for i, (a, b) in enumerate(zip(got, expected_order)) if a != b))
    assert time.monotonic() - started < 110
