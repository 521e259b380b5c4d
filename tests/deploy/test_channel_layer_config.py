"""The Redis channel layer's configuration (matrixsrv/settings.py): Redis pub/sub, whose wake-ups
reach every subscribed worker with one PUBLISH; an idle subscription keeps waiting (with redis-py 8's
default socket timeout of 5 s, the list-based layer's blocking pop broke every idle worker's
subscription every few seconds)."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer

from matrixsrv import config
from matrixsrv.settings import redis_channel_layer


def _url() -> str:
    return config.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def test_the_layer_is_redis_pub_sub_with_a_socket_timeout() -> None:
    settings = redis_channel_layer(_url())
    assert settings["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    RedisPubSubChannelLayer(**settings["CONFIG"])  # (a configuration it takes)
    [host] = settings["CONFIG"]["hosts"]
    assert host["socket_timeout"] > 1  # a dead Redis is still noticed; the reader polls every 0.1 s


@pytest.mark.slow
@pytest.mark.redis
def test_a_group_message_reaches_a_receive_that_waited_past_the_socket_timeout() -> None:
    """Against the real Redis: nothing arrives for longer than redis-py's default socket timeout
    (5 s); the receive just goes on waiting, and a group message then reaches it."""
    layer = RedisPubSubChannelLayer(**{**redis_channel_layer(_url())["CONFIG"], "prefix": "matrixsrv-test"})

    async def scenario() -> None:
        channel = await layer.new_channel("test.")
        await layer.group_add("test-group", channel)
        waiting = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(5.5)
        assert not waiting.done()
        await layer.group_send("test-group", {"type": "test.wakeup", "pos": 7})
        message = await asyncio.wait_for(waiting, 2)
        assert message == {"type": "test.wakeup", "pos": 7}
        await layer.flush()

    asyncio.run(scenario())
