#!/usr/bin/env python3
"""Client-Server API load benchmark for any Matrix homeserver (matrixsrv, Synapse, ...).

    python bench/matrix_bench.py --base-url http://127.0.0.1:8008 send
    python bench/matrix_bench.py --base-url http://127.0.0.1:8008 messages --events 1000
    python bench/matrix_bench.py --base-url http://127.0.0.1:8008 all --label matrixsrv-pg --json-out runs.jsonl
    python bench/matrix_bench.py --list

Every scenario registers its own users (random, unique names per run) through
``POST /register`` with ``m.login.dummy``, so the server needs open registration and rate limits
off (matrixsrv: MATRIX_RATE_LIMIT=off; Synapse: see bench/README.md). Everything is bounded:
request counts come from the options, each request has a timeout, and each scenario stops
starting new requests after ``--time-limit`` seconds.

Output per scenario: one JSON line (``{"scenario": ..., ...}``, also appended to ``--json-out``)
and a human-readable table. ``bench/summarize.py`` turns a JSONL file of runs into medians and
ratios.

Only aiohttp is needed (matrixsrv's test extras install it through matrix-nio).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import platform
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

CLIENT = "/_matrix/client/v3"
PASSWORD = "bench password 1234"


# -- measuring -------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_summary(ms: list[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "n": len(ms),
        "mean_ms": r(sum(ms) / len(ms)) if ms else None,
        "p50_ms": r(percentile(ms, 50)),
        "p90_ms": r(percentile(ms, 90)),
        "p99_ms": r(percentile(ms, 99)),
        "max_ms": r(max(ms)) if ms else None,
    }


class CpuProbe:
    """CPU seconds used by the given local pids (and, on Linux, by the whole machine) between
    ``start()`` and ``stop()``; read from /proc, so only for a server on this machine."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._t0: tuple[float, dict[int, float], tuple[float, float] | None] | None = None

    def _pid_cpu(self, pid: int) -> float:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        except (OSError, IndexError, ValueError):
            return float("nan")

    @staticmethod
    def _machine() -> tuple[float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                values = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return float(sum(values) - idle), float(sum(values))

    def start(self) -> None:
        self._t0 = (time.perf_counter(), {p: self._pid_cpu(p) for p in self.pids}, self._machine())

    def stop(self, requests: int) -> dict[str, Any] | None:
        if self._t0 is None or (not self.pids and self._t0[2] is None):
            return None
        wall0, cpu0, machine0 = self._t0
        wall = time.perf_counter() - wall0
        out: dict[str, Any] = {"wall_s": round(wall, 3)}
        if self.pids:
            used = sum(self._pid_cpu(p) - cpu0[p] for p in self.pids)
            out["server_cpu_s"] = round(used, 3)
            out["server_cores"] = round(used / wall, 2) if wall else None
            out["server_cpu_ms_per_request"] = round(1000 * used / requests, 2) if requests else None
        machine1 = self._machine()
        if machine0 and machine1 and machine1[1] > machine0[1]:
            out["machine_busy_pct"] = round(100 * (machine1[0] - machine0[0]) / (machine1[1] - machine0[1]), 1)
        return out


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:300]}")
        self.status, self.body = status, body


@dataclass
class Errors:
    """Failed requests by kind, with the first few messages kept as samples."""

    counts: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.samples) < 5:
            self.samples.append(message[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_kind": self.counts, "samples": self.samples}


# -- a tiny client ---------------------------------------------------------------------------------

@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str


def split_base_urls(value: str) -> list[str]:
    """``--base-url``: one URL, or several comma-separated (workers of one server, sharing its database)."""
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]


class Matrix:
    """Just the calls the scenarios need, over one aiohttp session (keep-alive connections).

    With several base URLs (the workers of one homeserver), requests go round-robin over them unless
    a call pins one with ``base=``.
    """

    def __init__(self, base_url: str | list[str], session: aiohttp.ClientSession, timeout: float,
                 cpu: CpuProbe | None = None) -> None:
        self.cpu = cpu or CpuProbe([])
        self.bases = split_base_urls(base_url) if isinstance(base_url, str) else [u.rstrip("/") for u in base_url]
        if not self.bases:
            raise ValueError("no base URL")
        self.base = self.bases[0]
        self._next = 0
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def pick(self) -> str:
        """The next base URL, round-robin."""
        base = self.bases[self._next % len(self.bases)]
        self._next += 1
        return base

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                      params: dict[str, str] | None = None, *, base: str | None = None,
                      timeout: aiohttp.ClientTimeout | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = (base or self.pick()) + path
        async with self.session.request(method, url, json=body, headers=headers, params=params,
                                        timeout=timeout or self.timeout) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise HttpError(method, path, resp.status, text)
            return json.loads(text) if text else {}

    async def register(self, username: str) -> User:
        body: dict[str, Any] = {
            "username": username, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
            "initial_device_display_name": "matrix_bench",
        }
        try:
            data = await self.request("POST", f"{CLIENT}/register", body)
        except HttpError as exc:  # servers that insist on a UIA session first: take it, retry once
            session = _json(exc.body).get("session") if exc.status == 401 else None
            if not session:
                raise
            body["auth"]["session"] = session
            data = await self.request("POST", f"{CLIENT}/register", body)
        return User(data["user_id"], data["access_token"], data.get("device_id", ""))

    async def create_room(self, user: User, **body: Any) -> str:
        return (await self.request("POST", f"{CLIENT}/createRoom", body, user.access_token))["room_id"]

    async def join(self, user: User, room_id: str) -> None:
        await self.request("POST", f"{CLIENT}/join/{quote(room_id, safe='')}", {}, user.access_token)

    async def send_text(self, user: User, room_id: str, txn_id: str, body: str, *, base: str | None = None) -> str:
        path = f"{CLIENT}/rooms/{quote(room_id, safe='')}/send/m.room.message/{quote(txn_id, safe='')}"
        data = await self.request("PUT", path, {"msgtype": "m.text", "body": body}, user.access_token, base=base)
        return data["event_id"]

    async def sync(self, user: User, *, since: str | None = None, timeout_ms: int | None = None,
                   filter: str | None = None, base: str | None = None) -> dict[str, Any]:
        """GET /sync; a long-poll gets ``timeout_ms`` plus the usual request timeout."""
        params: dict[str, str] = {}
        if since is not None:
            params["since"] = since
        if timeout_ms is not None:
            params["timeout"] = str(timeout_ms)
        if filter is not None:
            params["filter"] = filter
        timeout = None
        if timeout_ms:
            timeout = aiohttp.ClientTimeout(total=(self.timeout.total or 60) + timeout_ms / 1000)
        return await self.request("GET", f"{CLIENT}/sync", params=params, token=user.access_token, base=base,
                                  timeout=timeout)

    async def messages(self, user: User, room_id: str, *, limit: int, from_token: str | None) -> dict[str, Any]:
        params = {"dir": "b", "limit": str(limit)}
        if from_token is not None:
            params["from"] = from_token
        path = f"{CLIENT}/rooms/{quote(room_id, safe='')}/messages"
        return await self.request("GET", path, params=params, token=user.access_token)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def register_users(mx: Matrix, n: int, *, concurrency: int = 5) -> list[User]:
    """``n`` fresh users with names unique to this run (bench_<run>_<i>)."""
    run = secrets.token_hex(4)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> User:
        async with sem:
            return await mx.register(f"bench_{run}_{i}")

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def room_with_members(mx: Matrix, users: list[User], *, concurrency: int = 1) -> str:
    """users[0] creates a public room; everyone else joins it (``concurrency`` joins at a time)."""
    room_id = await mx.create_room(users[0], preset="public_chat", name="matrix_bench")
    sem = asyncio.Semaphore(concurrency)

    async def join(user: User) -> None:
        async with sem:
            await mx.join(user, room_id)

    await asyncio.gather(*(join(u) for u in users[1:]))
    return room_id


async def send_many(mx: Matrix, senders: list[User], room_id: str, per_sender: int, deadline: float,
                    errors: Errors, tag: str) -> tuple[list[float], float]:
    """Every sender sends ``per_sender`` messages one after another, all senders at once.
    Returns (latencies in ms of the successful sends, wall time in s)."""
    latencies: list[float] = []

    async def sender(index: int, user: User) -> None:
        for i in range(per_sender):
            if time.monotonic() > deadline:
                errors.add("time_limit", f"sender {index} stopped after {i} sends: --time-limit reached")
                return
            t0 = time.perf_counter()
            try:
                await mx.send_text(user, room_id, f"{tag}.{index}.{i}", f"bench message {i} from sender {index}")
            except HttpError as exc:
                errors.add(f"http_{exc.status}", str(exc))
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.add(type(exc).__name__, repr(exc))
                continue
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(sender(i, u) for i, u in enumerate(senders)))
    return latencies, time.perf_counter() - t0


# -- scenarios -------------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    help: str
    run: Callable[[Matrix, argparse.Namespace], Awaitable[dict[str, Any]]]


SCENARIOS: dict[str, Scenario] = {}

# Scenarios to come, listed by --list (same shape: setup, a bounded timed phase, a JSON-able result).
PLANNED: dict[str, str] = {}


def scenario(name: str, help: str):
    def register(fn: Callable[[Matrix, argparse.Namespace], Awaitable[dict[str, Any]]]):
        SCENARIOS[name] = Scenario(name, help, fn)
        return fn

    return register


@scenario("send", "N users in one public room, all sending at once: events/s and send latency")
async def run_send(mx: Matrix, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.time_limit
    t0 = time.perf_counter()
    users = await register_users(mx, args.users)
    room_id = await room_with_members(mx, users)
    setup_s = time.perf_counter() - t0
    errors = Errors()
    mx.cpu.start()
    latencies, wall = await send_many(mx, users, room_id, args.per_sender, deadline, errors, secrets.token_hex(3))
    cpu = mx.cpu.stop(len(latencies))
    return {
        "cpu": cpu,
        "params": {"users": args.users, "per_sender": args.per_sender},
        "setup_s": round(setup_s, 2),
        "events_sent": len(latencies),
        "wall_s": round(wall, 3),
        "events_per_s": round(len(latencies) / wall, 1) if wall > 0 else None,
        "send": latency_summary(latencies),
        "errors": errors.as_dict(),
    }


@scenario("messages", "a room with E events, then GET /messages?dir=b&limit=L: newest page and full walk back")
async def run_messages(mx: Matrix, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.time_limit
    t0 = time.perf_counter()
    users = await register_users(mx, 2)
    room_id = await room_with_members(mx, users)
    # Fill the room: the two members, 5 concurrent sends each.
    errors = Errors()
    senders = users * 5
    per = math.ceil(args.events / len(senders))
    _, fill_wall = await send_many(mx, senders, room_id, per, deadline, errors, "fill")
    filled = len(senders) * per - errors.total
    setup_s = time.perf_counter() - t0
    reader = users[1]
    result: dict[str, Any] = {
        "params": {"events": args.events, "limit": args.limit, "repeats": args.repeats},
        "setup_s": round(setup_s, 2), "room_events_sent": filled,
        "fill_events_per_s": round(filled / fill_wall, 1) if fill_wall > 0 else None,
    }

    async def page(from_token: str | None) -> tuple[float, dict[str, Any]]:
        t = time.perf_counter()
        data = await mx.messages(reader, room_id, limit=args.limit, from_token=from_token)
        return (time.perf_counter() - t) * 1000, data

    # 1. The newest page, repeatedly (no ``from``: the spec's "from the end", v1.3+).
    newest: list[float] = []
    mx.cpu.start()
    try:
        for _ in range(args.repeats):
            if time.monotonic() > deadline:
                errors.add("time_limit", "newest-page loop stopped: --time-limit reached")
                break
            ms, data = await page(None)
            newest.append(ms)
        newest_chunk = len(data.get("chunk", [])) if newest else 0
    except HttpError as exc:
        # Report the failure clearly (e.g. a server without /messages answers 404 M_UNRECOGNIZED).
        errors.add(f"http_{exc.status}", str(exc))
        result.update({"status": "failed", "failure": str(exc), "errors": errors.as_dict()})
        return result

    # 2. The whole room, newest to oldest, following ``end``.
    walk: list[float] = []
    events_seen, token, pages, reached_start = 0, None, 0, False
    max_pages = math.ceil((filled + 50) / args.limit) + 5
    try:
        while pages < max_pages and time.monotonic() <= deadline:
            ms, data = await page(token)
            walk.append(ms)
            pages += 1
            chunk = data.get("chunk", [])
            events_seen += len(chunk)
            token = data.get("end")
            if not chunk or not token:  # the spec: no ``end`` once there is nothing older
                reached_start = True
                break
    except HttpError as exc:
        errors.add(f"http_{exc.status}", str(exc))
    result.update({
        "cpu": mx.cpu.stop(len(newest) + len(walk)),
        "newest_page": {**latency_summary(newest), "chunk": newest_chunk},
        "walk": {**latency_summary(walk), "pages": pages, "events": events_seen,
                 "reached_start": reached_start},
        "page": latency_summary(newest + walk),
        "errors": errors.as_dict(),
    })
    return result


# -- /sync scenarios -------------------------------------------------------------------------------

LIMIT1_FILTER = json.dumps({"room": {"timeline": {"limit": 1}}}, separators=(",", ":"))


def _timeline(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = (((body.get("rooms") or {}).get("join") or {}).get(room_id)) or {}
    return (room.get("timeline") or {}).get("events") or []


@scenario("sync_fanout", "N users long-poll /sync in one room, one sends: time until the LAST waiter has the event")
async def run_sync_fanout(mx: Matrix, args: argparse.Namespace) -> dict[str, Any]:
    """Waiter ``i`` talks to base URL ``i mod len(bases)`` (half on each of two workers), the sender to
    the first. Each round: wait until every waiter has re-issued its long-poll, give the server
    ``--fanout-settle`` seconds to park them, send one message, and record for each waiter the
    time from the send's start until its /sync answer carrying that message arrived."""
    deadline = time.monotonic() + args.time_limit
    t0 = time.perf_counter()
    n = args.fanout_users
    users = await register_users(mx, n + 1)
    sender, waiters = users[0], users[1:]
    room_id = await room_with_members(mx, users, concurrency=5)
    home = [mx.bases[i % len(mx.bases)] for i in range(n)]
    sender_base = mx.bases[0]
    tag = secrets.token_hex(4)
    errors = Errors()

    # Starting tokens, taken once everyone has joined (so no join wakes anybody later).
    sem = asyncio.Semaphore(10)

    async def first_token(i: int) -> str:
        async with sem:
            return (await mx.sync(waiters[i], filter=LIMIT1_FILTER, base=home[i]))["next_batch"]

    tokens = list(await asyncio.gather(*(first_token(i) for i in range(n))))
    setup_s = time.perf_counter() - t0

    rounds = args.fanout_rounds
    arrivals: list[dict[int, float]] = [{} for _ in range(rounds)]  # round -> waiter -> perf_counter
    polling: set[int] = set()  # waiters with a long-poll in flight
    prefix = f"fanout {tag} "

    async def waiter_loop(i: int) -> None:
        since, user = tokens[i], waiters[i]
        while time.monotonic() < deadline:
            polling.add(i)
            try:
                body = await mx.sync(user, since=since, timeout_ms=args.fanout_timeout, base=home[i])
            except HttpError as exc:
                errors.add(f"http_{exc.status}", str(exc))
                await asyncio.sleep(0.5)
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.add(type(exc).__name__, repr(exc))
                await asyncio.sleep(0.5)
                continue
            finally:
                polling.discard(i)
            now = time.perf_counter()
            since = body.get("next_batch", since)
            for event in _timeline(body, room_id):
                text = (event.get("content") or {}).get("body")
                if isinstance(text, str) and text.startswith(prefix):
                    k = int(text[len(prefix):])
                    if 0 <= k < rounds:
                        arrivals[k].setdefault(i, now)

    async def all_ready(k: int, limit: float) -> bool:
        """Every waiter got round k-1 (if any) and has its next long-poll in flight."""
        while time.monotonic() < limit:
            if len(polling) == n and (k == 0 or len(arrivals[k - 1]) == n):
                return True
            await asyncio.sleep(0.005)
        return False

    tasks = [asyncio.create_task(waiter_loop(i)) for i in range(n)]
    last_ms: list[float] = []
    first_ms: list[float] = []
    each_ms: list[float] = []
    send_ms: list[float] = []
    incomplete = 0
    mx.cpu.start()
    try:
        for k in range(rounds):
            round_limit = min(deadline, time.monotonic() + args.fanout_round_timeout)
            if not await all_ready(k, round_limit):
                errors.add("not_ready", f"round {k}: only {len(polling)}/{n} waiters polling")
                if time.monotonic() >= deadline:
                    break
            await asyncio.sleep(args.fanout_settle)
            sent_at = time.perf_counter()
            try:
                await mx.send_text(sender, room_id, f"{tag}.{k}", f"{prefix}{k}", base=sender_base)
            except (HttpError, TimeoutError, aiohttp.ClientError) as exc:
                errors.add("send", repr(exc))
                continue
            send_ms.append((time.perf_counter() - sent_at) * 1000)
            while len(arrivals[k]) < n and time.monotonic() < round_limit:
                await asyncio.sleep(0.002)
            got = [(t - sent_at) * 1000 for t in arrivals[k].values()]
            each_ms += got
            if len(got) < n:
                incomplete += 1
                errors.add("missed", f"round {k}: {n - len(got)} of {n} waiters never got the message")
                continue
            last_ms.append(max(got))
            first_ms.append(min(got))
    finally:
        cpu = mx.cpu.stop(rounds * (n + 1))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "cpu": cpu,
        "params": {"waiters": n, "rounds": rounds, "timeout_ms": args.fanout_timeout,
                   "settle_s": args.fanout_settle, "bases": len(mx.bases)},
        "setup_s": round(setup_s, 2),
        "rounds_complete": len(last_ms), "rounds_incomplete": incomplete,
        "last_waiter": latency_summary(last_ms),
        "first_waiter": latency_summary(first_ms),
        "every_waiter": latency_summary(each_ms),
        "send": latency_summary(send_ms),
        "errors": errors.as_dict(),
    }


@dataclass
class ManyRooms:
    user: User
    rooms: list[str]


_many_rooms: dict[tuple[Any, ...], ManyRooms] = {}


async def many_rooms_user(mx: Matrix, args: argparse.Namespace, deadline: float) -> ManyRooms:
    """One user in ``--rooms`` private rooms with ``--room-messages`` messages each (set up once per
    server and shared by initial_sync and incremental_sync in one invocation)."""
    key = (tuple(mx.bases), args.rooms, args.room_messages)
    if key in _many_rooms:
        return _many_rooms[key]
    user = (await register_users(mx, 1))[0]
    # The rooms one after another: in room v12 the room ID is the create event's hash, and one user's
    # identical createRoom requests within the same millisecond collide (Synapse retries with
    # another origin_server_ts; matrixsrv answered 400 "Room ID collision" when this was written).
    rooms = []
    for r in range(args.rooms):
        if time.monotonic() > deadline:
            raise TimeoutError("--time-limit reached while setting up rooms")
        rooms.append(await mx.create_room(user, preset="private_chat", name=f"matrix_bench {r}"))
    sem = asyncio.Semaphore(8)

    async def fill(r: int) -> None:
        async with sem:
            for m in range(args.room_messages):
                if time.monotonic() > deadline:
                    raise TimeoutError("--time-limit reached while filling rooms")
                await mx.send_text(user, rooms[r], f"fill.{r}.{m}", f"message {m} in room {r}")

    await asyncio.gather(*(fill(r) for r in range(args.rooms)))
    world = ManyRooms(user, rooms)
    _many_rooms[key] = world
    return world


@scenario("initial_sync", "one user in R rooms of E messages: GET /sync without since, full and timeline limit 1")
async def run_initial_sync(mx: Matrix, args: argparse.Namespace) -> dict[str, Any]:
    """Each repeat asks for the full initial sync (default filter) and then the one with filter
    ``{"room":{"timeline":{"limit":1}}}``. Every request carries a different ``timeout`` (ignored by an
    initial sync) so that Synapse's /sync response cache (keyed on it; 2 min by default) can't
    answer a repeat from memory."""
    deadline = time.monotonic() + args.time_limit
    t0 = time.perf_counter()
    world = await many_rooms_user(mx, args, deadline)
    setup_s = time.perf_counter() - t0
    errors = Errors()
    timed: dict[str, list[float]] = {"full": [], "limit1": []}
    shape: dict[str, dict[str, Any]] = {}
    mx.cpu.start()
    nonce = int(time.time()) % 100_000 * 100
    for i in range(args.sync_repeats):
        if time.monotonic() > deadline:
            errors.add("time_limit", f"stopped after {i} repeats: --time-limit reached")
            break
        for variant, flt in (("full", None), ("limit1", LIMIT1_FILTER)):
            nonce += 1
            t = time.perf_counter()
            try:
                body = await mx.sync(world.user, timeout_ms=nonce, filter=flt)
            except (HttpError, TimeoutError, aiohttp.ClientError) as exc:
                errors.add(type(exc).__name__, repr(exc))
                continue
            timed[variant].append((time.perf_counter() - t) * 1000)
            joined = (body.get("rooms") or {}).get("join") or {}
            shape[variant] = {
                "rooms": len(joined),
                "timeline_events": sum(len(_timeline(body, r)) for r in joined),
                "bytes": len(json.dumps(body)),
            }
            if len(joined) < args.rooms:
                errors.add("short", f"{variant}: {len(joined)} of {args.rooms} rooms")
    cpu = mx.cpu.stop(sum(len(v) for v in timed.values()))
    return {
        "cpu": cpu,
        "params": {"rooms": args.rooms, "room_messages": args.room_messages, "repeats": args.sync_repeats},
        "setup_s": round(setup_s, 2),
        "full": {**latency_summary(timed["full"]), **shape.get("full", {})},
        "limit1": {**latency_summary(timed["limit1"]), **shape.get("limit1", {})},
        "errors": errors.as_dict(),
    }


@scenario("incremental_sync", "the initial_sync user: one new message in one room, then GET /sync?since=&timeout=0")
async def run_incremental_sync(mx: Matrix, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.time_limit
    t0 = time.perf_counter()
    world = await many_rooms_user(mx, args, deadline)
    since = (await mx.sync(world.user, filter=LIMIT1_FILTER))["next_batch"]
    setup_s = time.perf_counter() - t0
    errors = Errors()
    timed: list[float] = []
    tag = secrets.token_hex(3)
    cpu_requests = 0
    mx.cpu.start()
    for i in range(args.incremental_repeats):
        if time.monotonic() > deadline:
            errors.add("time_limit", f"stopped after {i} repeats: --time-limit reached")
            break
        room_id = world.rooms[i % len(world.rooms)]
        try:
            event_id = await mx.send_text(world.user, room_id, f"inc.{tag}.{i}", f"incremental {i}")
            t = time.perf_counter()
            body = await mx.sync(world.user, since=since, timeout_ms=0)
            timed.append((time.perf_counter() - t) * 1000)
        except (HttpError, TimeoutError, aiohttp.ClientError) as exc:
            errors.add(type(exc).__name__, repr(exc))
            continue
        finally:
            cpu_requests += 2
        since = body.get("next_batch", since)
        if event_id not in [e.get("event_id") for e in _timeline(body, room_id)]:
            errors.add("missing", f"repeat {i}: the new event isn't in the incremental sync")
    cpu = mx.cpu.stop(cpu_requests)
    return {
        "cpu": cpu,
        "params": {"rooms": args.rooms, "room_messages": args.room_messages, "repeats": args.incremental_repeats},
        "setup_s": round(setup_s, 2),
        "sync": latency_summary(timed),
        "errors": errors.as_dict(),
    }


# -- output ----------------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if v >= 100 else f"{v:.2f}"
    return str(v)


def print_table(summary: dict[str, Any]) -> None:
    r = summary["result"]
    print(f"\n== {summary['scenario']} @ {summary['base_url']}  ({summary.get('label') or 'no label'}, "
          f"{summary['started']}, {summary['duration_s']} s)")
    rows: list[tuple[str, dict[str, Any]]] = []
    if r.get("status") == "failed" and "failure" in r and "room_events_sent" not in r:
        print(f"   FAILED: {r['failure']}")
    elif summary["scenario"] == "send":
        print(f"   {r['events_sent']} events from {r['params']['users']} concurrent senders in {r['wall_s']} s "
              f"=> {_fmt(r['events_per_s'])} events/s")
        rows.append(("PUT /send", r["send"]))
    elif summary["scenario"] == "messages":
        print(f"   room of {r['room_events_sent']} events (filled at {_fmt(r.get('fill_events_per_s'))} events/s)")
        if r.get("status") == "failed":
            print(f"   FAILED: {r['failure']}")
        else:
            w = r["walk"]
            rows += [("newest page", r["newest_page"]), ("walk page", w), ("all pages", r["page"])]
            print(f"   walk: {w['pages']} pages, {w['events']} events, reached start: {w['reached_start']}")
    elif summary["scenario"] == "sync_fanout":
        p = r["params"]
        print(f"   {p['waiters']} waiters over {p['bases']} base URL(s), {r['rounds_complete']} of {p['rounds']} "
              f"rounds complete; ms from the send's start until the waiter's /sync answer arrived")
        rows += [("last waiter", r["last_waiter"]), ("first waiter", r["first_waiter"]),
                 ("every waiter", r["every_waiter"]), ("PUT /send", r["send"])]
    elif summary["scenario"] == "initial_sync":
        p = r["params"]
        print(f"   one user in {p['rooms']} rooms of {p['room_messages']} messages; "
              f"full: {r['full'].get('bytes')} bytes, limit 1: {r['limit1'].get('bytes')} bytes")
        rows += [("full", r["full"]), ("limit 1", r["limit1"])]
    elif summary["scenario"] == "incremental_sync":
        rows.append(("since, t=0", r["sync"]))
    cpu = r.get("cpu") or {}
    if cpu.get("server_cpu_s") is not None:
        print(f"   server CPU {cpu['server_cpu_s']} s ({cpu['server_cores']} cores) = "
              f"{cpu['server_cpu_ms_per_request']} ms/request; machine busy {cpu.get('machine_busy_pct')}%")
    elif cpu.get("machine_busy_pct") is not None:
        print(f"   machine busy {cpu['machine_busy_pct']}% during the timed phase")
    if rows:
        cols = ["n", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"]
        print("   " + f"{'':<14}" + "".join(f"{c:>10}" for c in cols))
        for name, row in rows:
            print("   " + f"{name:<14}" + "".join(f"{_fmt(row.get(c)):>10}" for c in cols))
    err = r.get("errors", {})
    if err.get("total"):
        print(f"   errors: {err['by_kind']}  e.g. {err['samples'][:2]}")


# -- main ------------------------------------------------------------------------------------------

def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", help="a scenario name, or 'all' (see --list)")
    p.add_argument("--base-url", default="http://127.0.0.1:8008",
                   help="the homeserver (default %(default)s); several comma-separated URLs (the workers of "
                        "one server) are used round-robin")
    p.add_argument("--label", default="", help="free text stored with the result, e.g. 'matrixsrv-pg'")
    p.add_argument("--json-out", help="append each scenario's JSON summary line to this file")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a base URL that isn't loopback (only against servers you own)")
    p.add_argument("--server-pid", type=int, action="append", default=[],
                   help="a local server process to measure CPU time of during the timed phase (repeatable)")
    p.add_argument("--time-limit", type=float, default=300.0,
                   help="seconds per scenario after which no new request starts (default %(default)s)")
    p.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request (default %(default)s)")
    g = p.add_argument_group("send")
    g.add_argument("--users", type=int, default=10, help="concurrent senders (default %(default)s)")
    g.add_argument("--per-sender", type=int, default=100, help="messages per sender (default %(default)s)")
    g = p.add_argument_group("messages")
    g.add_argument("--events", type=int, default=1000, help="events in the room (default %(default)s)")
    g.add_argument("--limit", type=int, default=100, help="events per page (default %(default)s)")
    g.add_argument("--repeats", type=int, default=20, help="times to fetch the newest page (default %(default)s)")
    g = p.add_argument_group("sync_fanout")
    g.add_argument("--fanout-users", type=int, default=100, help="long-polling waiters (default %(default)s)")
    g.add_argument("--fanout-rounds", type=int, default=20, help="messages sent, one per round (default %(default)s)")
    g.add_argument("--fanout-timeout", type=int, default=30000, help="/sync timeout in ms (default %(default)s)")
    g.add_argument("--fanout-settle", type=float, default=2.0,
                   help="seconds between every waiter re-issuing its long-poll and the send (default %(default)s)")
    g.add_argument("--fanout-round-timeout", type=float, default=30.0,
                   help="seconds a round may take before it counts as incomplete (default %(default)s)")
    g = p.add_argument_group("initial_sync and incremental_sync")
    g.add_argument("--rooms", type=int, default=50, help="rooms the user is in (default %(default)s)")
    g.add_argument("--room-messages", type=int, default=20, help="messages per room (default %(default)s)")
    g.add_argument("--sync-repeats", type=int, default=10,
                   help="initial syncs of each kind (default %(default)s)")
    g.add_argument("--incremental-repeats", type=int, default=20,
                   help="new message + incremental sync pairs (default %(default)s)")
    args = p.parse_args(argv)
    for name in ("users", "per_sender", "events", "limit", "repeats", "fanout_users", "fanout_rounds",
                 "rooms", "room_messages", "sync_repeats", "incremental_repeats"):
        if not 1 <= getattr(args, name) <= 100_000:
            p.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.list or not args.scenario:
        return args
    if args.scenario != "all" and args.scenario not in SCENARIOS:
        p.error(f"unknown scenario {args.scenario!r}; choose from {', '.join(SCENARIOS)} or all")
    if not 0 <= args.fanout_timeout <= 300_000 or not 0 <= args.fanout_settle <= 60:
        p.error("--fanout-timeout must be 0..300000 ms and --fanout-settle 0..60 s")
    bases = split_base_urls(args.base_url)
    if not bases:
        p.error("--base-url is empty")
    for base in bases:
        if not args.allow_remote and not _is_loopback(base):
            p.error(f"{base} is not a loopback address; pass --allow-remote for a server you own")
    return args


async def run(args: argparse.Namespace) -> int:
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    failed = 0
    # Enough connections for every concurrent request: the senders, or the long-polling waiters.
    connector = aiohttp.TCPConnector(limit=max(args.users, args.fanout_users, 10) + 20)
    async with aiohttp.ClientSession(connector=connector) as session:
        mx = Matrix(args.base_url, session, args.request_timeout, CpuProbe(args.server_pid))
        for base in mx.bases:
            try:
                versions = await mx.request("GET", "/_matrix/client/versions", base=base)
            except (TimeoutError, HttpError, aiohttp.ClientError) as exc:
                print(f"{base} doesn't answer /_matrix/client/versions: {exc!r}", file=sys.stderr)
                return 2
        server = (versions.get("server") or {}) if isinstance(versions, dict) else {}
        for name in names:
            started = time.time()
            t0 = time.perf_counter()
            try:
                result = await SCENARIOS[name].run(mx, args)
            except (TimeoutError, HttpError, aiohttp.ClientError, KeyError) as exc:
                result = {"status": "failed", "failure": f"{type(exc).__name__}: {exc}"}
            result.setdefault("status", "ok" if not result.get("errors", {}).get("total") else "errors")
            failed += result["status"] != "ok"
            summary = {
                "scenario": name, "label": args.label, "base_url": args.base_url,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "duration_s": round(time.perf_counter() - t0, 2),
                "host": {"node": platform.node(), "machine": platform.machine(), "python": platform.python_version()},
                "server": server, "result": result,
            }
            line = json.dumps(summary, sort_keys=True)
            print(line, flush=True)
            if args.json_out:
                with open(args.json_out, "a", encoding="utf-8") as f:  # noqa: ASYNC230 - one short line
                    f.write(line + "\n")
            print_table(summary)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list or not args.scenario:
        for s in SCENARIOS.values():
            print(f"{s.name:<18}{s.help}")
        for name, text in PLANNED.items():
            print(f"{name:<18}(planned) {text}")
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
