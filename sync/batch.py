"""Long-poll reads of one worker, made together (DESIGN.md §4.5).

A message in a room wakes every member's long-poll at once. Read one by one, each woken request
made its ten or so queries alone, six at a time (the thread pool), and the last of a hundred
waiters had its answer after ~800 ms, most of it spent waiting for the database. Here the reads
queue up: the first starts a batch on the next turn of the event loop, so every waiter woken by the
same message joins it, and ``build_sync_responses`` answers all of them with a few round trips in
one pooled thread. Reads that come while a batch runs form the next one. Each answer is still read
from the database up to the stream head (nothing is derived from another request's answer), so
batching changes the cost, not what a client is sent.

The long-polls' access tokens are read the same way (``get_auth_batcher``): the hundred clients a
message answered ask again at once, and each used to make its own thread hop and round trip for its
token while the last answers were still being written. So are the announcements of what the
woken long-polls found due (``get_announce_batcher``): a typing user's timeout, or presence that
changed by itself, is found by every long-poll of the room at once, and each announced it in a
transaction of its own, one after another under the stream lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from sync.waiter import PerLoop

# The most requests one batch answers (one statement per request and kind goes into each round trip;
# SQLite runs them one by one).
MAX_BATCH = 200

Q = TypeVar("Q")  # what one caller asks
R = TypeVar("R")  # its answer
Build = Callable[[Sequence[Q]], Awaitable[list[R | BaseException]]]


class ReadBatcher(Generic[Q, R]):
    """One event loop's queue of reads, answered a batch at a time by ``build`` (one call for the
    whole batch; each caller gets its own answer or exception)."""

    def __init__(self) -> None:
        self._queue: list[tuple[Q, asyncio.Future[R]]] = []
        self._running = False
        self.batches = 0  # for tests and the benchmark's notes

    async def read(self, request: Q, build: Build[Q, R]) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((request, future))
        if not self._running:
            self._running = True
            loop.create_task(self._drain(build))
        return await future

    async def _drain(self, build: Build[Q, R]) -> None:
        batch: list[tuple[Q, asyncio.Future[R]]] = []
        try:
            while self._queue:
                await asyncio.sleep(0)  # the other waiters woken by the same message queue up first
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                batch = [(request, future) for request, future in batch if not future.cancelled()]
                if not batch:
                    continue
                self.batches += 1
                try:
                    results = await build([request for request, _ in batch])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the whole batch failed (the database went away...)
                    results = [exc] * len(batch)
                # All answers at once: their responses are built in one turn of the loop and written
                # together. (Handed back a few per turn, the first ones left earlier, but the clients'
                # next long-polls then came in between and delayed the last answers: measured worse.)
                for (_, future), result in zip(batch, results):
                    if future.done():  # its client went away meanwhile
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        finally:
            self._running = False
            # Cancelled mid-drain (the loop is closing): nobody will answer these.
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.cancel()
            self._queue.clear()


# The running event loop's batchers: the long-polls' reads, their access tokens, and the changes
# they found due and announce (expired typing, presence changed by itself: sync/views.py).
get_batcher: Callable[[], ReadBatcher[Any, Any]] = PerLoop(ReadBatcher).get
get_auth_batcher: Callable[[], ReadBatcher[Any, Any]] = PerLoop(ReadBatcher).get
get_announce_batcher: Callable[[], ReadBatcher[Any, Any]] = PerLoop(ReadBatcher).get
