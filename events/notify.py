"""Wake-ups for /sync waiters. The only place that publishes to the channel layer.

A wake-up is a hint: the woken /sync re-reads the database up to the committed stream head, so a
lost or duplicated message costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger("events.notify")


def user_group(user_pk: int) -> str:
    return f"sync.u.{user_pk}"  # channels: [A-Za-z0-9._-]+, under 100 characters


def notify_users_on_commit(user_pks: Iterable[int], *, pos: int) -> None:
    """After the current transaction commits, wake these users' /sync waiters for position ``pos``."""
    pks = sorted(set(user_pks))
    if pks:
        transaction.on_commit(lambda: _publish(pks, pos), robust=True)


def _publish(user_pks: list[int], pos: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "stream.advanced", "pos": pos}

    async def send_all() -> None:
        await asyncio.gather(*(layer.group_send(user_group(pk), message) for pk in user_pks))

    async_to_sync(send_all)()
