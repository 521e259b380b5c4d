"""Wake-ups for /sync waiters: the only place that publishes to the channel layer.

One message per stream advance goes to one group that every worker process listens on
(``sync/waiter.py``), carrying the user pks to wake; each worker wakes its own waiters. That is one
channel-layer send per event whatever the room size (channels_redis: ~4 Redis round trips), where a
group per user would cost that much per member (DESIGN.md §4.5, option b).

A wake-up is a hint: the woken /sync re-reads the database up to the committed stream head, so a
lost or duplicated message costs latency, never correctness.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger("events.notify")

WAKEUP_GROUP = "matrixsrv.sync.wakeup"  # channels: [A-Za-z0-9._-]+, under 100 characters
MESSAGE_TYPE = "stream.advanced"


def notify_users_on_commit(user_pks: Iterable[int], *, pos: int) -> None:
    """After the current transaction commits, wake these users' /sync waiters for position ``pos``."""
    pks = sorted(set(user_pks))
    if pks:
        transaction.on_commit(lambda: _publish(pks, pos), robust=True)


def _publish(user_pks: list[int], pos: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(WAKEUP_GROUP, {"type": MESSAGE_TYPE, "pos": pos, "users": user_pks})
