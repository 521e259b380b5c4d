"""The Redis channel layer's configuration (matrixsrv/settings.py): its connections must not time out
while the wake-up listener blocks in BZPOPMIN, or an idle worker's subscription breaks every few
seconds (with redis-py 8's default socket timeout of 5 s, equal to channels_redis's block)."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

from matrixsrv import config
from matrixsrv.settings import redis_channel_layer


def _layer() -> RedisChannelLayer:
    url = config.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    return RedisChannelLayer(**redis_channel_layer(url)["CONFIG"])


def test_the_socket_timeout_outlasts_the_blocking_receive() -> None:
    layer = _layer()
    connection = layer.create_pool(0).make_connection()
    assert connection.socket_timeout is not None  # a dead Redis is still noticed
    assert connection.socket_timeout > layer.brpop_timeout


@pytest.mark.slow
@pytest.mark.redis
def test_an_idle_receive_keeps_waiting_past_one_blocking_pop() -> None:
    """Against the real Redis: nothing arrives for longer than one BZPOPMIN (5 s); the receive just
    goes on waiting (with redis-py 8's default socket timeout it raised redis' TimeoutError at 5 s)."""
    layer = _layer()

    async def scenario() -> None:
        channel = await layer.new_channel("test.")
        with pytest.raises(TimeoutError) as raised:
            await asyncio.wait_for(layer.receive(channel), layer.brpop_timeout + 1.5)
        assert type(raised.value) is TimeoutError  # asyncio's, from wait_for: still waiting
        await layer.flush()

    asyncio.run(scenario())
