"""Wake-ups for /sync waiters: the only place that publishes to the channel layer.

One message per stream advance goes to one group that every worker process listens on
(``sync/waiter.py``). It names the room the event is in and any users to wake besides its members
(the target of a membership change); each worker wakes its own waiters, which know the rooms their
user is joined to. So sending costs no member lookup and one channel-layer send whatever the room
size (with Redis: one PUBLISH, matrixsrv/settings.py), where a group per user would cost that much
per member (DESIGN.md §4.5, option b).

A wake-up is a hint: the woken /sync re-reads the database up to the committed stream head, so a
lost or duplicated message costs latency, never correctness. That is why the worker that wrote also
wakes its own waiters at once (``set_local_listener``), before the group's message comes back to
it through Redis, a duplicate that changes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from matrixsrv import metrics

logger = logging.getLogger("events.notify")

WAKEUP_GROUP = "matrixsrv.sync.wakeup"  # channels: [A-Za-z0-9._-]+, under 100 characters
MESSAGE_TYPE = "stream.advanced"


_loop: asyncio.AbstractEventLoop | None = None
# This worker's own listener (sync.waiter registers it), called on the worker's loop with each message.
_local_listener: Callable[[dict[str, Any]], None] | None = None


def set_local_listener(listener: Callable[[dict[str, Any]], None]) -> None:
    global _local_listener
    _local_listener = listener


def remember_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The worker's main event loop (set by the ASGI app): publishing then never blocks a request."""
    global _loop
    _loop = loop


def notify_on_commit(*, pos: int, rooms: Iterable[str] = (), users: Iterable[int] = (), events: int = 0) -> None:
    """After the current transaction commits, wake the /sync waiters of everyone joined to ``rooms``
    and of the local ``users`` named (membership targets: an invitee, a kicked user...).

    ``events``: how many room events the transaction persisted (the events write path passes 1),
    counted in the metrics after the commit, so a rolled-back write never counts."""
    room_ids, user_pks = sorted(set(rooms)), sorted(set(users))
    if room_ids or user_pks or events:
        transaction.on_commit(lambda: _after_commit(pos, room_ids, user_pks, events), robust=True)


def _after_commit(pos: int, rooms: list[str], users: list[int], events: int) -> None:
    if events:
        metrics.EVENTS_PERSISTED.inc(events)
    if rooms or users:
        _publish(pos, rooms, users, events)


def _publish(pos: int, rooms: list[str], users: list[int], events: int = 0) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    # ``events``: the rooms got new room events (not only typing, receipts...): sync/recent.py
    message = {"type": MESSAGE_TYPE, "pos": pos, "rooms": rooms, "users": users, "events": events}
    metrics.WAKEUPS_SENT.inc()
    loop = _loop
    if loop is not None and loop.is_running() and not _on_loop_thread(loop):
        # This worker's waiters at once; then, fire and forget on the worker's loop, every worker's
        # (the request thread goes on at once).
        if _local_listener is not None:
            loop.call_soon_threadsafe(_local_listener, message)
        future = asyncio.run_coroutine_threadsafe(layer.group_send(WAKEUP_GROUP, message), loop)
        future.add_done_callback(_log_failure)
    else:  # no loop known (management commands, tests): send and wait
        async_to_sync(layer.group_send)(WAKEUP_GROUP, message)


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _log_failure(future: "concurrent.futures.Future[None]") -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("wake-up not sent (waiters will time out and re-read): %r", future.exception())
