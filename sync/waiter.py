"""Long-poll wake-ups, one listener per worker process (Synapse's notifier model, fed by Channels).

Each process subscribes ONE channel to ``events.notify.WAKEUP_GROUP`` and dispatches every message
to the local /sync requests waiting for the users it names. A /sync request registers its waiter
*before* it reads the database, so a write that commits after the read started always wakes it.

Process-local state here is only "who is waiting on this process right now" (like open sockets),
never cached data: the database stays the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from channels.layers import get_channel_layer

from events.notify import WAKEUP_GROUP, remember_event_loop, set_local_listener
from matrixsrv import metrics
from sync import recent

logger = logging.getLogger("sync.waiter")

# Channel layers may forget group members after a while: re-join well before (``Notifier._rejoin``).
REJOIN_INTERVAL_S = 60.0
RETRY_INTERVAL_S = 1.0
# Room wake-ups remembered for a waiter between subscribing and learning its rooms (a few ms).
MAX_UNROUTED = 256


class Waiter:
    """One waiting /sync request: woken when a position newer than the one it read arrives."""

    __slots__ = ("_event", "_forced", "_unrouted", "pos", "rooms")

    def __init__(self) -> None:
        self.pos = 0
        self.rooms: frozenset[str] | None = None  # the user's joined rooms, once a read has told
        # Room wake-ups that arrived before the rooms were known: (rooms, pos), checked on routing.
        self._unrouted: list[tuple[list[str], int]] = []
        self._forced = False
        self._event = asyncio.Event()

    def force(self) -> None:
        """Wake regardless of position (the subscription broke: re-read rather than miss anything)."""
        self._forced = True
        self._event.set()

    def advance(self, pos: int) -> None:
        if pos > self.pos:
            self.pos = pos
            self._event.set()

    async def wait(self, *, after_pos: int, timeout_s: float) -> bool:
        """True once a wake-up for a position beyond ``after_pos`` arrived (or the subscription broke:
        re-read to be safe); False on timeout. A forced wake-up is consumed by the wait it ends, so
        the next wait waits again instead of returning at once (a re-read loop hammering the
        database until the timeout while the channel layer is down)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._forced:
                self._forced = False
                return True
            if self.pos > after_pos:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                pass


class Notifier:
    """The process's listener on the wake-up group and its registry of local waiters."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[Waiter]] = defaultdict(set)  # by user pk
        self._by_room: dict[str, set[Waiter]] = defaultdict(set)
        self._unrouted: set[Waiter] = set()  # waiters whose rooms aren't known yet
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.received = 0
        self.newest_pos = 0  # the newest position of any wake-up received (sync.views._quiet_result)
        self.channel: str | None = None  # the channel subscribed to the wake-up group (for tests)
        self._disabled = False  # no channel layer at all

    @property
    def waiting(self) -> int:  # noqa: D401 (a count, for tests and metrics)
        return sum(len(w) for w in self._waiters.values())

    async def start(self) -> None:
        if self._disabled:
            return
        remember_event_loop(asyncio.get_running_loop())
        if self._task is None or self._task.done():
            self._ready.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="matrixsrv-sync-notifier")
        await self._ready.wait()

    async def _run(self) -> None:
        layer = get_channel_layer()
        if layer is None:  # no channel layer configured: waits just run to their timeout
            logger.warning("no channel layer: /sync long-polls are not woken early")
            self._disabled = True
            self._ready.set()
            return
        recovering = False
        while True:
            channel: str | None = None
            try:
                channel = await layer.new_channel("sync.")
                await layer.group_add(WAKEUP_GROUP, channel)
                self.channel = channel
                self._ready.set()
                if recovering:  # wake-ups sent while unsubscribed are lost: everyone re-reads
                    self._wake_all()
                    recovering = False
                # A receive is never cancelled to rejoin: channels_redis's pub/sub layer drops a
                # channel whose receive is cancelled (and what comes for it until it resubscribes).
                rejoin = asyncio.get_running_loop().create_task(self._rejoin(layer, channel))
                try:
                    while True:
                        self._dispatch(await layer.receive(channel))
                finally:
                    rejoin.cancel()
            except asyncio.CancelledError:
                # The loop is shutting down: leave the group, so senders stop queueing for a channel
                # nobody reads (the in-memory layer keeps such queues; with Redis, unsubscribe).
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(layer.group_discard(WAKEUP_GROUP, channel), 2.0)
                raise
            except Exception:  # Redis went away, etc.: wake everyone (they re-read), then resubscribe
                logger.exception("sync notifier lost its channel layer subscription; retrying")
                recovering = True
                self._wake_all()
                self._ready.set()
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(layer.group_discard(WAKEUP_GROUP, channel), 2.0)
                await asyncio.sleep(RETRY_INTERVAL_S)

    @staticmethod
    async def _rejoin(layer: Any, channel: str) -> None:
        """Join the group again now and then: a layer may forget members after a while (the
        in-process layer after a day; the list-based Redis layer after its group expiry)."""
        while True:
            await asyncio.sleep(REJOIN_INTERVAL_S)
            try:
                await layer.group_add(WAKEUP_GROUP, channel)
            except Exception:  # the receive notices a lost layer; this one tries again later
                logger.warning("sync notifier could not rejoin the wake-up group", exc_info=True)

    def _dispatch(self, message: dict) -> None:
        self.received += 1
        metrics.WAKEUPS_RECEIVED.inc()
        self.wake(message)

    def wake(self, message: dict) -> None:
        """Wake the waiters a wake-up message names: from the group, or from a write of this worker
        (events.notify.set_local_listener), which sends the same message to the group too."""
        try:
            pos = int(message["pos"])
            users = list(message.get("users") or ())
            rooms = list(message.get("rooms") or ())
        except (KeyError, TypeError, ValueError):
            logger.warning("ignoring a malformed wake-up message: %r", message)
            return
        self.newest_pos = max(self.newest_pos, pos)
        if rooms and message.get("events"):
            recent.remember(pos, rooms)
        for user_pk in users:
            for waiter in self._waiters.get(user_pk, ()):
                waiter.advance(pos)
        for room_id in rooms:
            for waiter in self._by_room.get(room_id, ()):
                waiter.advance(pos)
        if rooms:
            for waiter in self._unrouted:
                if len(waiter._unrouted) < MAX_UNROUTED:
                    waiter._unrouted.append((rooms, pos))
                else:  # too much to remember: wake it, it re-reads
                    waiter.force()

    def route(self, waiter: Waiter, rooms: frozenset[str]) -> None:
        """Tell the notifier which rooms ``waiter``'s user is joined to (from the read it just made),
        and wake it for any of those rooms' wake-ups that came in before it knew."""
        if waiter.rooms is not None:
            for room_id in waiter.rooms - rooms:
                self._discard_room(room_id, waiter)
        for room_id in rooms:
            self._by_room[room_id].add(waiter)
        waiter.rooms = rooms
        self._unrouted.discard(waiter)
        for message_rooms, pos in waiter._unrouted:
            if not rooms.isdisjoint(message_rooms):
                waiter.advance(pos)
        waiter._unrouted.clear()

    def _discard_room(self, room_id: str, waiter: Waiter) -> None:
        waiters = self._by_room.get(room_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._by_room[room_id]

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.force()

    @asynccontextmanager
    async def listen(self, user_pk: int) -> AsyncIterator[Waiter]:
        await self.start()
        waiter = Waiter()
        self._waiters[user_pk].add(waiter)
        self._unrouted.add(waiter)
        metrics.SYNC_WAITERS.inc()
        try:
            yield waiter
        finally:
            metrics.SYNC_WAITERS.dec()
            self._unrouted.discard(waiter)
            for room_id in waiter.rooms or ():
                self._discard_room(room_id, waiter)
            waiters = self._waiters.get(user_pk)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[user_pk]


T = TypeVar("T")


class PerLoop(Generic[T]):
    """One ``T`` per running event loop (one per worker process in production; tests run several
    loops one after another), made on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, T] = WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            found = self._by_loop[loop] = self._factory()
        return found


get_notifier = PerLoop(Notifier).get  # the notifier of the running event loop


def _wake_here(message: dict) -> None:
    get_notifier().wake(message)


set_local_listener(_wake_here)
