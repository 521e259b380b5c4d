"""The stream-position invariant under concurrent writers in several OS processes (DESIGN.md §4.4).

    A reader that has seen position N never later finds a committed row at or below N it didn't see.

Writers are separate processes (multiprocessing "spawn": fresh interpreters with their own database
connections) sending through ``events.actions.send_message_event``, some into the same room (they
queue on the room lock), some spread over three rooms (they race for the stream head). Meanwhile
the test process reads the way /sync does: ``head = current_stream_position()``, then the rows with
``since < stream_pos <= head`` in position order, then ``since = head``. ``StreamReader`` checks
after every read that

* the positions it gets continue exactly where the previous read stopped: strictly increasing
  across reads and contiguous (the one-row StreamHead gives no gaps; a rollback gives its number
  back), and no event is seen twice;
* nothing appeared late: the number of committed rows at or below ``since`` equals what it saw.

When the writers are done the reader must have every event they sent, exactly once.

A negative control swaps the allocator in the writer processes for a bare sequence with a delay
before COMMIT and a ``max(stream_pos)`` horizon (the Synapse #7206/#14158 pattern) and expects the
same reader to catch late arrivals, so a green run means something.

The second test does the same through HTTP against two daphne workers (tests/live.py) sharing a
fresh PostgreSQL database, reading that database directly.

PostgreSQL only: SQLite serializes writers with its database lock, and the embedded server is one
process. Run with e.g.
``DATABASE_URL=postgres://root@127.0.0.1:5432/test MATRIX_TEST_DB_NAME=test_x pytest -m slow tests/multiprocess``.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import queue
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from accounts.actions import register_user
from accounts.models import User
from events.models import Event
from events.stream import current_stream_position
from rooms.actions import create_room, join_room
from tests.multiprocess._stream_writers import write_events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="multi-process stream ordering needs PostgreSQL (DATABASE_URL=postgres://...)",
    ),
]

WRITERS = 4
EVENTS_PER_WRITER = 150
TIME_LIMIT_S = 40.0  # every loop below stops by then at the latest


# -- the reader and its checks -------------------------------------------------------------------------

@dataclass
class StreamReader:
    """Reads the stream as /sync does and records every violation of the ordering invariant.

    ``read_head()`` -> the horizon; ``read_rows(since, head)`` -> ``[(pos, event_id)]`` ordered by
    position; ``count_upto(pos)`` -> committed rows with ``stream_pos <= pos``.
    """

    read_head: Callable[[], int]
    read_rows: Callable[[int, int], list[tuple[int, str]]]
    count_upto: Callable[[int], int]
    since: int = 0
    expect_contiguous: bool = True
    seen: dict[str, int] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    late_arrivals: int = 0
    reads: int = 0
    nonempty_reads: int = 0

    def __post_init__(self) -> None:
        self.baseline = self.count_upto(self.since)  # rows that were there before we started

    def poll(self) -> int:
        """One read; returns how many new rows it got."""
        head = self.read_head()
        self.reads += 1
        if head < self.since:
            self.violations.append(f"read {self.reads}: head went backwards {self.since} -> {head}")
            return 0
        rows = self.read_rows(self.since, head)
        got = [pos for pos, _ in rows]
        last = self.positions[-1] if self.positions else self.since
        if any(b <= a for a, b in zip([last, *got], got)):
            self.violations.append(f"read {self.reads}: positions not increasing after {last}: {got[:10]}")
        if self.expect_contiguous and got != list(range(self.since + 1, head + 1)):
            missing = sorted(set(range(self.since + 1, head + 1)) - set(got))
            self.violations.append(f"read {self.reads}: gap in ({self.since}, {head}]: missing {missing[:10]}")
        for pos, event_id in rows:
            if event_id in self.seen:
                self.violations.append(f"read {self.reads}: {event_id} seen twice ({self.seen[event_id]}, {pos})")
            self.seen[event_id] = pos
        self.positions.extend(got)
        self.since = head
        self.nonempty_reads += bool(rows)
        # Late arrival: a committed row at or below the horizon we already passed that we never saw.
        committed = self.count_upto(self.since)
        if committed != self.baseline + len(self.seen):
            self.late_arrivals += 1
            self.violations.append(
                f"read {self.reads}: late arrival: {committed - self.baseline - len(self.seen)} row(s) "
                f"at or below {self.since} committed after the reader had passed it"
            )
            self.baseline = committed - len(self.seen)  # report each late row once
        return len(rows)


def _orm_reader(since: int, *, head_sql: str | None = None, expect_contiguous: bool = True) -> StreamReader:
    def read_head() -> int:
        if head_sql is None:
            return current_stream_position()
        with connection.cursor() as cur:
            cur.execute(head_sql)
            return int(cur.fetchone()[0] or 0)

    def read_rows(since: int, head: int) -> list[tuple[int, str]]:
        return list(
            Event.objects.filter(stream_pos__gt=since, stream_pos__lte=head)
            .order_by("stream_pos")
            .values_list("stream_pos", "event_id")
        )

    def count_upto(pos: int) -> int:
        return Event.objects.filter(stream_pos__lte=pos).count()

    return StreamReader(read_head, read_rows, count_upto, since=since, expect_contiguous=expect_contiguous)


# -- the writer processes ------------------------------------------------------------------------------

def _test_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database, not DATABASE_URL's)."""
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{auth}{'@' if auth else ''}{host}{port}/{db['NAME']}"


def _ceiling() -> float:
    return time.time() + TIME_LIMIT_S


@dataclass
class WriterPool:
    """Spawned writer processes. ``go()`` releases them all at once; ``collect()`` moves finished
    writers' reports into ``results``: ``writer -> (event_ids, error or None)``."""

    ready: object
    start: object
    results_q: object
    procs: list
    results: dict[int, tuple[list[str], str | None]] = field(default_factory=dict)

    def go(self) -> None:
        """Wait (bounded) until every child has Django set up and a connection open, then start them
        together so that they really overlap."""
        ceiling = time.time() + 30
        for _ in self.procs:
            if not self.ready.acquire(timeout=max(0.1, ceiling - time.time())):
                break  # a child failed to start: it reports its error through results
        self.start.set()

    def collect(self) -> None:
        while True:
            try:
                writer, sent, error = self.results_q.get_nowait()
            except queue.Empty:
                return
            self.results[writer] = (sent, error)

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.procs)


@contextmanager
def _writer_processes(plans: list[tuple[int, list[str]]], *, count: int,
                      unordered_sequence: str | None = None) -> Iterator[WriterPool]:
    """One spawned process per ``(sender_pk, room_ids)`` plan, each sending ``count`` events. On the
    way out every child is joined, or else terminated by its pid."""
    ctx = multiprocessing.get_context("spawn")
    ready, start, results_q, deadline = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), _ceiling()
    procs = [
        ctx.Process(
            target=write_events,
            kwargs={
                "writer": i, "database_url": _test_database_url(), "sender_pk": pk, "room_ids": rooms,
                "count": count, "deadline": deadline, "ready": ready, "start": start, "results": results_q,
                "unordered_sequence": unordered_sequence,
            },
            name=f"stream-writer-{i}",
            daemon=True,
        )
        for i, (pk, rooms) in enumerate(plans)
    ]
    for p in procs:
        p.start()
    pool = WriterPool(ready, start, results_q, procs)
    try:
        yield pool
        pool.collect()
    finally:
        for p in procs:
            p.join(timeout=max(1.0, deadline + 5 - time.time()))
            if p.is_alive():  # only our own children, by pid
                p.terminate()
                p.join(5)
        results_q.close()


def _run_reader(reader: StreamReader, pool: WriterPool) -> None:
    """Poll until every writer reported (or time is up), then once more."""
    ceiling, polls = _ceiling(), 0
    while time.time() < ceiling and polls < 200_000:
        pool.collect()
        if pool.done:
            break
        reader.poll()
        polls += 1
        time.sleep(0.001)
    pool.collect()
    reader.poll()


def _setup_rooms(n_users: int, n_rooms: int) -> tuple[list[User], list[str]]:
    tag = secrets.token_hex(3)
    users = [
        register_user(localpart=f"w{tag}{i}", password=None, inhibit_login=True)[0] for i in range(n_users)
    ]
    rooms = [create_room(creator=users[0], visibility="public", name=f"room {i}")[0] for i in range(n_rooms)]
    for user in users[1:]:
        for room_id in rooms:
            join_room(user=user, room_id_or_alias=room_id)
    return users, rooms


def _interleavings(positions: Iterable[int], writer_of: dict[int, int]) -> int:
    owners = [writer_of[p] for p in positions if p in writer_of]
    return sum(1 for a, b in itertools.pairwise(owners) if a != b)


# -- the tests -------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_in_several_processes_keep_the_stream_ordered() -> None:
    users, rooms = _setup_rooms(WRITERS, 3)
    one_room = [rooms[0]]
    # Two writers share one room (they queue on its row lock); two spread over all three rooms
    # (they race the first two for the stream head).
    plans = [(users[0].pk, one_room), (users[1].pk, one_room), (users[2].pk, rooms), (users[3].pk, rooms)]
    started = time.monotonic()
    reader = _orm_reader(current_stream_position())
    since0 = reader.since

    with _writer_processes(plans, count=EVENTS_PER_WRITER) as pool:
        pool.go()
        _run_reader(reader, pool)
    results = pool.results

    errors = {w: err for w, (_, err) in results.items() if err}
    assert not errors, errors
    assert sorted(results) == list(range(len(plans))), f"writers that never reported: {results.keys()}"
    sent = {event_id: writer for writer, (ids, _) in results.items() for event_id in ids}
    assert len(sent) == WRITERS * EVENTS_PER_WRITER, "a writer stopped early (time limit?)"

    assert reader.violations == [], reader.violations[:20]
    assert set(reader.seen) == set(sent), "the reader missed events or saw foreign ones"
    assert reader.positions == list(range(since0 + 1, since0 + len(sent) + 1))
    assert current_stream_position() == reader.since == since0 + len(sent)
    assert Event.objects.filter(stream_pos__gt=since0).count() == len(sent)
    # The run really was concurrent: the reader caught the stream mid-flight many times, and the
    # processes' events interleave in position order.
    writer_of = {reader.seen[e]: w for e, w in sent.items()}
    print(f"ORM: {len(sent)} events, {reader.reads} reads ({reader.nonempty_reads} non-empty), "
          f"{_interleavings(reader.positions, writer_of)} writer switches in position order")
    assert reader.nonempty_reads >= 10, reader.nonempty_reads
    assert _interleavings(reader.positions, writer_of) >= 10
    assert time.monotonic() - started < TIME_LIMIT_S


@pytest.mark.django_db(transaction=True)
def test_negative_control_an_unordered_allocator_is_caught() -> None:
    """Same reader, writers allocating from a bare sequence with a delay before COMMIT, horizon
    ``max(stream_pos)``: the reader must report late arrivals. Each writer has its own room, so
    only the (missing) stream lock could have ordered them."""
    users, rooms = _setup_rooms(WRITERS, WRITERS)
    sequence = f"ordering_control_{secrets.token_hex(4)}"
    with connection.cursor() as cur:
        cur.execute(f"CREATE SEQUENCE {sequence}")
        cur.execute("SELECT setval(%s, (SELECT COALESCE(MAX(stream_pos), 0) + 1 FROM events_event))", [sequence])
    try:
        reader = _orm_reader(
            Event.objects.order_by("-stream_pos").values_list("stream_pos", flat=True).first() or 0,
            head_sql="SELECT MAX(stream_pos) FROM events_event",
            expect_contiguous=False,
        )
        plans = [(users[i].pk, [rooms[i]]) for i in range(WRITERS)]
        with _writer_processes(plans, count=60, unordered_sequence=sequence) as pool:
            pool.go()
            _run_reader(reader, pool)
        results = pool.results
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP SEQUENCE IF EXISTS {sequence}")

    assert not {w: err for w, (_, err) in results.items() if err}
    print(f"control: {reader.reads} reads, {reader.late_arrivals} late arrivals caught, "
          f"e.g. {reader.violations[:2]}")
    assert reader.late_arrivals > 0, "the reader failed to notice out-of-order commits"
    sent = {e for ids, _ in results.values() for e in ids}
    assert sent <= set(Event.objects.values_list("event_id", flat=True))


# -- the same through HTTP, two daphne workers -----------------------------------------------------------

def _http(method: str, url: str, body: dict | None = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url} -> {exc.code} {exc.read()[:300]!r}") from None


def test_concurrent_http_sends_on_two_workers_keep_the_stream_ordered() -> None:
    import os

    import psycopg

    from tests.live import live_server

    base = os.environ.get("DATABASE_URL", "")
    with live_server(workers=2, database_url=base) as server:
        api = [f"{u}/_matrix/client/v3" for u in server.urls]
        tag = secrets.token_hex(3)
        tokens = []
        for i in range(4):
            reg = _http("POST", f"{api[i % 2]}/register",
                        {"username": f"h{tag}{i}", "password": "pw pw pw", "auth": {"type": "m.login.dummy"}})
            tokens.append(reg["access_token"])
        rooms = [_http("POST", f"{api[0]}/createRoom", {"preset": "public_chat"}, tokens[0])["room_id"]
                 for _ in range(3)]
        for i, token in enumerate(tokens[1:], 1):
            for room_id in rooms:
                _http("POST", f"{api[i % 2]}/join/{quote(room_id, safe='')}", {}, token)

        conn = psycopg.connect(server.database_url, autocommit=True)
        try:
            def scalar(sql: str, *args: object) -> int:
                return int(conn.execute(sql, args).fetchone()[0] or 0)

            reader = StreamReader(
                lambda: scalar("SELECT pos FROM events_streamhead WHERE id = 1"),
                lambda since, head: [tuple(r) for r in conn.execute(
                    "SELECT stream_pos, event_id FROM events_event WHERE stream_pos > %s AND stream_pos <= %s "
                    "ORDER BY stream_pos", (since, head)).fetchall()],
                lambda pos: scalar("SELECT count(*) FROM events_event WHERE stream_pos <= %s", pos),
            )
            reader.since = scalar("SELECT pos FROM events_streamhead WHERE id = 1")
            reader.baseline = reader.count_upto(reader.since)
            since0 = reader.since

            # 6 sender threads, alternating workers; two pile into one room, the rest spread.
            per_thread, ceiling = 40, _ceiling()
            sent: dict[int, list[str]] = {}
            failures: list[str] = []

            def send(t: int) -> None:
                token = tokens[t % len(tokens)]
                targets = [rooms[0]] if t < 2 else rooms
                ids = []
                try:
                    for i in range(per_thread):
                        if time.time() > ceiling:
                            break
                        room = quote(targets[i % len(targets)], safe="")
                        ids.append(_http("PUT", f"{api[t % 2]}/rooms/{room}/send/m.room.message/t{t}-{i}",
                                         {"msgtype": "m.text", "body": f"{t}/{i}"}, token)["event_id"])
                except Exception as exc:  # noqa: BLE001 - any failure fails the test below
                    failures.append(repr(exc))
                sent[t] = ids

            threads = [threading.Thread(target=send, args=(t,), daemon=True) for t in range(6)]
            for th in threads:
                th.start()
            polls = 0
            while any(th.is_alive() for th in threads) and time.time() < ceiling and polls < 200_000:
                reader.poll()
                polls += 1
                time.sleep(0.001)
            for th in threads:
                th.join(max(0.1, ceiling - time.time()))
            reader.poll()
        finally:
            conn.close()

    print(f"HTTP: {reader.reads} reads ({reader.nonempty_reads} non-empty), {len(reader.seen)} events")
    assert not failures, failures
    all_sent = [e for ids in sent.values() for e in ids]
    assert len(all_sent) == len(set(all_sent)) == 6 * per_thread
    assert reader.violations == [], reader.violations[:20]
    assert set(reader.seen) == set(all_sent)
    assert reader.positions == list(range(since0 + 1, since0 + len(all_sent) + 1))
    assert reader.nonempty_reads >= 5
